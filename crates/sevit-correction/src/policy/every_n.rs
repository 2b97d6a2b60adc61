//! Correction every N unlabeled iterations (the DISTL reference policy).

use super::{CorrectionPolicy, LoopState};

/// Fires when `iteration % every == 0`, counting global unlabeled iterations from 0, so the
/// first pass runs right after iteration 0 (as the reference's `if it % args.correct == 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EveryNIterations {
    /// Period in unlabeled iterations (> 0).
    pub every: usize,
}

impl EveryNIterations {
    /// The reference period: 500 iterations.
    pub const REFERENCE: usize = 500;

    /// A policy with period `every`; errors when `every` is 0.
    pub fn new(every: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(every > 0, "correction period `every` must be at least 1");
        Ok(Self { every })
    }
}

impl Default for EveryNIterations {
    fn default() -> Self {
        Self {
            every: Self::REFERENCE,
        }
    }
}

impl CorrectionPolicy for EveryNIterations {
    fn should_correct(&self, state: &LoopState) -> bool {
        state.iteration.is_multiple_of(self.every)
    }
    fn describe(&self) -> String {
        format!("every {} iterations (from iteration 0)", self.every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(p: &dyn CorrectionPolicy, total: usize, per_epoch: usize) -> Vec<usize> {
        (0..total)
            .filter(|&i| p.should_correct(&LoopState::at(i, per_epoch)))
            .collect()
    }

    #[test]
    fn fires_from_iteration_zero_every_n() {
        let p = EveryNIterations::new(500).unwrap();
        assert_eq!(fired(&p, 1600, 300), vec![0, 500, 1000, 1500]);
        let p = EveryNIterations::new(3).unwrap();
        assert_eq!(fired(&p, 10, 4), vec![0, 3, 6, 9]);
    }

    #[test]
    fn default_is_reference_and_zero_rejected() {
        assert_eq!(EveryNIterations::default().every, 500);
        assert!(EveryNIterations::new(0).is_err());
    }
}
