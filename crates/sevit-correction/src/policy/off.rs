//! No correction at all (an ablation: pure self-training and self-supervision).

use super::{CorrectionPolicy, LoopState};

/// Never fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Off;

impl CorrectionPolicy for Off {
    fn should_correct(&self, _state: &LoopState) -> bool {
        false
    }
    fn describe(&self) -> String {
        "off".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_fires() {
        assert!((0..1000).all(|i| !Off.should_correct(&LoopState::at(i, 7))));
    }
}
