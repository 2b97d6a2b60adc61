//! `sevit-distill`: the DISTL engine.
//!
//! Building blocks, each in its own module and tested on its own:
//! * [`loss`]: [`loss::dino_loss`] / [`loss::DinoLoss`] (centred, sharpened teacher; running
//!   centre; teacher-temperature warm-up), [`loss::self_training_loss`] (soft pseudo-label
//!   BCE), [`loss::correction_bce`] and [`loss::combine`] (λ, α(e), `distl.dino_epochs`).
//! * [`schedule`]: DINO's [`schedule::cosine_schedule`], α(e) and the per-stage
//!   [`schedule::Schedules`] (lr, weight decay, teacher momentum).
//! * [`ema`]: [`ema::update_momentum`], the teacher EMA by variable name.
//! * [`optim`]: [`optim::AdamW`] on tensors with DINO's parameter groups and a checkpointable
//!   state.
//! * [`clip`]: per-tensor gradient clipping and freezing of the feature head's last layer.
//! * [`precision`]: bf16 autocast of the forward passes (CUDA and CPU).
//!
//! Configuration: [`TrainConfig`] (TOML, unknown keys rejected, `key=value` overrides).
//!
//! Loops ([`loops`]), all working on a run directory ([`RunLayout`]):
//! * [`pretrain`]: the supervised initial model (BCE on global view 2 of the labeled set),
//!   from random weights or `--init`; with `label_folds = T` a supervised baseline.
//! * [`pretrain_self_supervised`]: DINO-only pretraining on an unlabeled pool.
//! * [`warm_up_dino_head`]: the optional DINO-head warm-up before step 1, backbone frozen.
//! * [`distill`]: one DISTL step T (DINO + α-weighted self-training, teacher EMA,
//!   correction passes over the labeled set per the [`sevit_correction`] policy).
//! * [`evolve`]: the initial model then T = 1..k, with test AUC (DeLong CI) per T in
//!   `summary.json` / `summary.csv`.
//!
//! Schedules (lr, weight decay, teacher momentum) are sized on the number of *unlabeled*
//! iterations of a stage (`epochs * iters_per_epoch`) and advance only on unlabeled
//! iterations; correction passes use the current values and do not advance them (the
//! reference sized them on the unlabeled loader too). Every epoch ends with an atomic
//! checkpoint (student, teacher, optimiser, DINO centre, epoch, iteration, config, seed);
//! a resumed run replays the same random numbers (data randomness is keyed by (seed, epoch,
//! index) in `sevit-data`, drop-path by a `tch::manual_seed` before each update) and reaches
//! the same weights on CPU.

pub mod audit;
pub mod clip;
pub mod config;
pub mod data;
pub mod distributed;
pub mod ema;
pub mod foreach;
pub mod init;
pub mod layout;
pub mod log;
pub mod loops;
pub mod loss;
pub mod optim;
pub mod precision;
pub mod schedule;
pub mod scoring;
pub mod stage_checkpoint;
pub mod trainer;

pub use config::{ModelSelection, TrainConfig, Weights};
pub use layout::{stage_name, RunLayout};
pub use loops::{
    continue_self_supervised, distill, distill_with, evolve, pretrain, pretrain_self_supervised,
    warm_up_dino_head, DistillInputs, EvolveOptions, PretrainOptions, SummaryRow,
};
pub use trainer::{RunOptions, StageOutcome};
