//! Correction once per epoch.

use super::{CorrectionPolicy, LoopState};

/// Fires after the last unlabeled iteration of every epoch, so each epoch's checkpoint holds a
/// freshly corrected student.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EveryEpoch;

impl CorrectionPolicy for EveryEpoch {
    fn should_correct(&self, state: &LoopState) -> bool {
        state.iter_in_epoch + 1 == state.iters_per_epoch
    }
    fn describe(&self) -> String {
        "after the last iteration of every epoch".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_epoch_ends() {
        let got: Vec<usize> = (0..12)
            .filter(|&i| EveryEpoch.should_correct(&LoopState::at(i, 4)))
            .collect();
        assert_eq!(got, vec![3, 7, 11]);
        assert!(EveryEpoch.should_correct(&LoopState::at(5, 1)));
    }
}
