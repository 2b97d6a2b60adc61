//! `sevit-correction`: pure planning for the DISTL engine.
//!
//! * [`CorrectionPolicy`]: given where the training loop stands ([`LoopState`]), decide whether
//!   a *correction pass* (one full pass of supervised training on the small labeled set) runs
//!   now. Policies: [`EveryNIterations`] (the reference: every 500 unlabeled iterations,
//!   counting from iteration 0), [`EveryEpoch`] and [`Off`]. [`CorrectionConfig`] is the serde
//!   form used in TOML (`correction = { policy = "every_n", every = 500 }`).
//! * [`Curriculum`]: the T = 1..k plan: which unlabeled folds step T uses, where its outputs
//!   go and which stage it starts from.
//!
//! There is no training code here: the engine (`sevit-distill`) depends on this crate.

mod config;
mod curriculum;
mod policy;

pub use config::CorrectionConfig;
pub use curriculum::{stage_dir, Curriculum, CurriculumStep, StepInit};
pub use policy::{CorrectionPolicy, EveryEpoch, EveryNIterations, LoopState, Off};
