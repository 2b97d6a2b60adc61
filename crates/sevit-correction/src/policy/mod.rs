//! The [`CorrectionPolicy`] trait and the state it is asked about.

mod every_epoch;
mod every_n;
mod off;

pub use every_epoch::EveryEpoch;
pub use every_n::EveryNIterations;
pub use off::Off;

/// Where the training loop stands right after an unlabeled (self-training) iteration.
///
/// Iterations count *unlabeled* steps only; correction passes do not advance them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopState {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Global unlabeled iteration, from 0 (`epoch * iters_per_epoch + iter_in_epoch`).
    pub iteration: usize,
    /// Iteration inside the current epoch, from 0.
    pub iter_in_epoch: usize,
    /// Unlabeled iterations per epoch.
    pub iters_per_epoch: usize,
}

impl LoopState {
    /// The state of global iteration `iteration` for a loop of `iters_per_epoch` per epoch.
    ///
    /// # Panics
    /// When `iters_per_epoch` is 0.
    pub fn at(iteration: usize, iters_per_epoch: usize) -> Self {
        assert!(iters_per_epoch > 0, "iters_per_epoch must be positive");
        Self {
            epoch: iteration / iters_per_epoch,
            iteration,
            iter_in_epoch: iteration % iters_per_epoch,
            iters_per_epoch,
        }
    }
}

/// Decides, after each unlabeled iteration, whether a correction pass over the labeled set
/// runs now.
pub trait CorrectionPolicy: std::fmt::Debug + Send + Sync {
    /// `true` when a correction pass runs right after the iteration described by `state`.
    fn should_correct(&self, state: &LoopState) -> bool;
    /// Short human-readable description (for logs).
    fn describe(&self) -> String;
}
