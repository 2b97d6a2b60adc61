//! One module per `sevit` sub-command.
pub mod info;
pub mod import_weights;
