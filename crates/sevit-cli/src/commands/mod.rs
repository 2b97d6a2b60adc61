//! One module per `sevit` sub-command.
pub mod info;
