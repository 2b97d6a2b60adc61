//! One module per `sevit` sub-command.
pub mod augment_preview;
pub mod compare;
pub mod config;
pub mod distill;
pub mod eval;
pub mod evolve;
pub mod experiment_report;
pub mod import_weights;
pub mod inbox;
pub mod info;
pub mod launch;
pub mod models;
pub mod predict;
pub mod pretrain;
pub mod split;
pub mod synth;
pub mod visualize;
