//! The DISTL losses: DINO self-distillation ([`DinoLoss`]) and self-training
//! ([`self_training_loss`], [`correction_bce`]) and their combination ([`combine`]).

pub mod dino;
pub mod self_training;

pub use dino::{dino_loss, DinoLoss, DinoLossConfig};
pub use self_training::{combine, correction_bce, self_training_loss};
