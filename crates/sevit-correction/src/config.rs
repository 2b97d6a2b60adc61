//! Serde form of the correction policy, as written in TOML configs.

use serde::{Deserialize, Serialize};

use crate::policy::{CorrectionPolicy, EveryEpoch, EveryNIterations, Off};

/// Which correction policy to use.
///
/// TOML: `correction = { policy = "every_n", every = 500 }`, `{ policy = "every_epoch" }` or
/// `{ policy = "off" }`. The default is the reference: every 500 iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum CorrectionConfig {
    /// [`EveryNIterations`]: fires when `iteration % every == 0`.
    EveryN {
        /// Period in unlabeled iterations.
        every: usize,
    },
    /// [`EveryEpoch`]: fires after the last iteration of each epoch.
    EveryEpoch,
    /// [`Off`]: never fires.
    Off,
}

impl Default for CorrectionConfig {
    fn default() -> Self {
        CorrectionConfig::EveryN {
            every: EveryNIterations::REFERENCE,
        }
    }
}

impl CorrectionConfig {
    /// Builds the policy; errors on an invalid setting (period 0).
    pub fn build(&self) -> anyhow::Result<Box<dyn CorrectionPolicy>> {
        Ok(match *self {
            CorrectionConfig::EveryN { every } => Box::new(EveryNIterations::new(every)?),
            CorrectionConfig::EveryEpoch => Box::new(EveryEpoch),
            CorrectionConfig::Off => Box::new(Off),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoopState;

    #[derive(Deserialize, Serialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        #[serde(default)]
        correction: CorrectionConfig,
    }

    #[test]
    fn toml_forms() {
        let w: Wrapper =
            toml::from_str("correction = { policy = \"every_n\", every = 7 }").unwrap();
        assert_eq!(w.correction, CorrectionConfig::EveryN { every: 7 });
        let w: Wrapper = toml::from_str("correction = { policy = \"every_epoch\" }").unwrap();
        assert_eq!(w.correction, CorrectionConfig::EveryEpoch);
        let w: Wrapper = toml::from_str("correction = { policy = \"off\" }").unwrap();
        assert_eq!(w.correction, CorrectionConfig::Off);
        let w: Wrapper = toml::from_str("").unwrap();
        assert_eq!(w.correction, CorrectionConfig::EveryN { every: 500 });
        let back = toml::to_string(&w).unwrap();
        let again: Wrapper = toml::from_str(&back).unwrap();
        assert_eq!(again.correction, w.correction);
    }

    #[test]
    fn rejects_unknown_policy_and_fields() {
        assert!(toml::from_str::<Wrapper>("correction = { policy = \"sometimes\" }").is_err());
        assert!(toml::from_str::<Wrapper>(
            "correction = { policy = \"every_n\", every = 5, x = 1 }"
        )
        .is_err());
        assert!(toml::from_str::<Wrapper>("correction = { policy = \"every_n\" }").is_err());
    }

    #[test]
    fn build_matches_variant() {
        let p = CorrectionConfig::EveryN { every: 2 }.build().unwrap();
        assert!(p.should_correct(&LoopState::at(4, 10)));
        assert!(!p.should_correct(&LoopState::at(5, 10)));
        assert!(CorrectionConfig::EveryN { every: 0 }.build().is_err());
        let p = CorrectionConfig::Off.build().unwrap();
        assert!(!p.should_correct(&LoopState::at(0, 1)));
    }
}
