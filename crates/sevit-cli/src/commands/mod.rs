//! One module per `sevit` sub-command.
pub mod info;
pub mod import_weights;
pub mod distill;
pub mod evolve;
pub mod pretrain;
pub mod split;
pub mod synth;
pub mod augment_preview;
pub mod eval;
pub mod compare;
pub mod visualize;
pub mod predict;
pub mod launch;
pub mod experiment_report;
