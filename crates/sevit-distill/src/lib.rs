//! `sevit-distill`: the DISTL engine.
//!
//! Building blocks, each in its own module and tested on its own:
//! * [`loss`]: [`loss::dino_loss`] / [`loss::DinoLoss`] (centred, sharpened teacher; running
//!   centre; teacher-temperature warm-up), [`loss::self_training_loss`] (soft pseudo-label
//!   BCE), [`loss::correction_bce`] and [`loss::combine`] (λ, α(e), `ssl_epochs`).
//! * [`schedule`]: DINO's [`schedule::cosine_schedule`], α(e) and the per-stage
//!   [`schedule::Schedules`] (lr, weight decay, teacher momentum).
//! * [`ema`]: [`ema::update_momentum`], the teacher EMA by variable name.
//! * [`optim`]: [`optim::AdamW`] on tensors with DINO's parameter groups and a checkpointable
//!   state.
//! * [`clip`]: per-tensor gradient clipping and freezing of the feature head's last layer.
//!
//! Schedules are sized on the number of *unlabeled* iterations of a stage and advance only on
//! unlabeled iterations; correction passes over the labeled set do not advance them (the
//! reference sized them on the unlabeled loader too).

pub mod clip;
pub mod ema;
pub mod loss;
pub mod optim;
pub mod schedule;
