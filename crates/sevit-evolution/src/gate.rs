//! The promotion gate: a candidate replaces the model in service only when, on the locked
//! validation set, it is shown non-inferior.
//!
//! Rule: with the paired DeLong test of the two models' scores on the same cases, the lower
//! bound of the `level` confidence interval of `AUC(candidate) − AUC(current)` must be above
//! `−delta`. Optionally (`check_sensitivity`), the candidate's sensitivity at the deployed
//! threshold must not be lower than the current model's by more than `sensitivity_delta`
//! (default: `delta`). Non-finite scores reject the candidate. Everything else (a tie, a
//! wide interval) keeps the current model: the burden of proof is on the candidate.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use sevit_metrics::{at_threshold, delong_paired_level, PairedTest};

/// Settings of the gate (`[gate]` in `evolution.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Non-inferiority margin on the AUC.
    pub delta: f64,
    /// Confidence level of the two-sided interval of the AUC difference (0.95: the lower bound
    /// is a one-sided 97.5% bound).
    pub level: f64,
    /// Deployed decision threshold on the probability (positive when `p >= threshold`).
    pub threshold: f64,
    /// Also require the sensitivity at `threshold` not to drop by more than
    /// `sensitivity_delta`.
    pub check_sensitivity: bool,
    /// Largest accepted sensitivity drop (default: `delta`).
    pub sensitivity_delta: Option<f64>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            delta: 0.01,
            level: 0.95,
            threshold: 0.5,
            check_sensitivity: false,
            sensitivity_delta: None,
        }
    }
}

impl GateConfig {
    /// Checks value ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.delta.is_finite() && (0.0..1.0).contains(&self.delta)) {
            bail!("gate.delta must be in [0, 1), got {}", self.delta);
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            bail!("gate.level must be in (0, 1), got {}", self.level);
        }
        if !(self.threshold.is_finite() && (0.0..=1.0).contains(&self.threshold)) {
            bail!("gate.threshold must be in [0, 1], got {}", self.threshold);
        }
        if let Some(s) = self.sensitivity_delta {
            if !(s.is_finite() && (0.0..1.0).contains(&s)) {
                bail!("gate.sensitivity_delta must be in [0, 1), got {s}");
            }
        }
        Ok(())
    }
}

/// One check of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    /// `auc_non_inferior`, `sensitivity`, `finite_scores`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// The numbers, in words.
    pub detail: String,
}

/// What the gate decided and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    /// Whether the candidate is promoted.
    pub promote: bool,
    /// One line: why.
    pub reason: String,
    /// Validation cases (positive, negative).
    pub n_positive: usize,
    /// Negative validation cases.
    pub n_negative: usize,
    /// AUC of the model in service.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub auc_current: f64,
    /// AUC of the candidate (NaN when its scores are not finite).
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub auc_candidate: f64,
    /// `AUC(candidate) − AUC(current)`.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub diff: f64,
    /// Lower bound of the difference's interval.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub lower_bound: f64,
    /// Upper bound of the difference's interval.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub upper_bound: f64,
    /// Two-sided p-value of the paired DeLong test (`H0`: equal AUCs).
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub p_value: f64,
    /// Sensitivity of the model in service at the deployed threshold.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub sensitivity_current: f64,
    /// Sensitivity of the candidate at the deployed threshold.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub sensitivity_candidate: f64,
    /// Every check, passed or not.
    pub checks: Vec<GateCheck>,
    /// The settings the decision used.
    pub config: GateConfig,
}

/// Decides whether `candidate` (scores per validation case) may replace `current`; `labels`
/// are the validation labels (`true` = positive), in the same case order.
///
/// # Errors
/// Mismatched lengths, a validation set without two cases of each class, non-finite scores of
/// the *current* model (the candidate's reject it instead).
pub fn decide(
    labels: &[bool],
    current: &[f64],
    candidate: &[f64],
    cfg: &GateConfig,
) -> anyhow::Result<GateOutcome> {
    cfg.validate()?;
    if current.len() != labels.len() || candidate.len() != labels.len() {
        bail!(
            "the gate needs one score per validation case: {} labels, {} current, {} candidate",
            labels.len(),
            current.len(),
            candidate.len()
        );
    }
    let n_positive = labels.iter().filter(|&&l| l).count();
    let n_negative = labels.len() - n_positive;
    if let Some(i) = current.iter().position(|s| !s.is_finite()) {
        bail!(
            "the model in service gave a non-finite score ({}) on validation case {i}",
            current[i]
        );
    }
    let sens = |scores: &[f64]| -> anyhow::Result<f64> {
        Ok(at_threshold(labels, scores, cfg.threshold)?.sensitivity)
    };
    let sensitivity_current = sens(current)?;
    let bad = candidate.iter().filter(|s| !s.is_finite()).count();
    if bad > 0 {
        let auc_current = sevit_metrics::roc_auc(labels, current)?;
        let detail = format!(
            "{bad} of {} validation scores are not finite",
            candidate.len()
        );
        return Ok(GateOutcome {
            promote: false,
            reason: format!("rejected: {detail}"),
            n_positive,
            n_negative,
            auc_current,
            auc_candidate: f64::NAN,
            diff: f64::NAN,
            lower_bound: f64::NAN,
            upper_bound: f64::NAN,
            p_value: f64::NAN,
            sensitivity_current,
            sensitivity_candidate: f64::NAN,
            checks: vec![GateCheck {
                name: "finite_scores".into(),
                passed: false,
                detail,
            }],
            config: cfg.clone(),
        });
    }
    let t: PairedTest = delong_paired_level(labels, candidate, current, cfg.level)?;
    let (lower, upper) = t.ci_diff;
    let mut checks = vec![GateCheck {
        name: "auc_non_inferior".into(),
        passed: lower > -cfg.delta,
        detail: format!(
            "AUC {:.4} vs {:.4}: difference {:+.4}, {:.0}% CI [{:+.4}, {:+.4}], lower bound {} -{}",
            t.auc_a,
            t.auc_b,
            t.diff,
            cfg.level * 100.0,
            lower,
            upper,
            if lower > -cfg.delta { ">" } else { "<=" },
            cfg.delta
        ),
    }];
    let sensitivity_candidate = sens(candidate)?;
    if cfg.check_sensitivity {
        let margin = cfg.sensitivity_delta.unwrap_or(cfg.delta);
        let drop = sensitivity_current - sensitivity_candidate;
        checks.push(GateCheck {
            name: "sensitivity".into(),
            passed: drop <= margin,
            detail: format!(
                "sensitivity at threshold {}: {:.4} vs {:.4} (drop {:+.4}, allowed {margin})",
                cfg.threshold, sensitivity_candidate, sensitivity_current, drop
            ),
        });
    }
    let failed: Vec<&GateCheck> = checks.iter().filter(|c| !c.passed).collect();
    let promote = failed.is_empty();
    let reason = if promote {
        format!("promoted: non-inferior ({})", checks[0].detail)
    } else {
        format!(
            "rejected: {}",
            failed
                .iter()
                .map(|c| c.detail.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Ok(GateOutcome {
        promote,
        reason,
        n_positive,
        n_negative,
        auc_current: t.auc_b,
        auc_candidate: t.auc_a,
        diff: t.diff,
        lower_bound: lower,
        upper_bound: upper,
        p_value: t.p_value,
        sensitivity_current,
        sensitivity_candidate,
        checks,
        config: cfg.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels and scores of a model with the given separation (deterministic).
    fn cases(n: usize, shift: f64, noise_seed: u64) -> (Vec<bool>, Vec<f64>) {
        let mut labels = Vec::new();
        let mut scores = Vec::new();
        let mut x = noise_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let pos = i % 2 == 0;
            labels.push(pos);
            let z = u + if pos { shift } else { 0.0 };
            scores.push(1.0 / (1.0 + (-(z - 0.5 - shift / 2.0) * 4.0).exp()));
        }
        (labels, scores)
    }

    #[test]
    fn an_identical_model_is_non_inferior() {
        let (l, s) = cases(200, 0.4, 1);
        let o = decide(&l, &s, &s, &GateConfig::default()).unwrap();
        assert!(o.promote, "{}", o.reason);
        assert_eq!(o.diff, 0.0);
    }

    #[test]
    fn a_clearly_better_model_is_promoted_and_a_clearly_worse_one_rejected() {
        let (l, weak) = cases(400, 0.2, 2);
        // the strong model: the weak one's scores plus more signal (correlated, as in practice)
        let strong: Vec<f64> = weak
            .iter()
            .zip(&l)
            .map(|(s, &p)| if p { (s + 0.3).min(1.0) } else { s * 0.7 })
            .collect();
        let up = decide(&l, &weak, &strong, &GateConfig::default()).unwrap();
        assert!(up.promote, "{}", up.reason);
        assert!(up.diff > 0.05 && up.lower_bound > 0.0, "{up:?}");
        let down = decide(&l, &strong, &weak, &GateConfig::default()).unwrap();
        assert!(!down.promote, "{}", down.reason);
        assert!(down.reason.contains("lower bound"), "{}", down.reason);
    }

    #[test]
    fn an_equal_but_uncertain_model_is_kept_out() {
        // independent noise, same separation: no evidence of non-inferiority on 60 cases
        let (l, a) = cases(60, 0.3, 3);
        let (_, b) = cases(60, 0.3, 4);
        let o = decide(&l, &a, &b, &GateConfig::default()).unwrap();
        assert!(o.lower_bound < -0.01, "{o:?}");
        assert!(!o.promote);
        // a wide enough margin accepts it
        let wide = GateConfig {
            delta: 0.5,
            ..Default::default()
        };
        assert!(decide(&l, &a, &b, &wide).unwrap().promote);
    }

    #[test]
    fn non_finite_candidate_scores_reject() {
        let (l, s) = cases(50, 0.4, 5);
        let mut bad = s.clone();
        bad[3] = f64::NAN;
        let o = decide(&l, &s, &bad, &GateConfig::default()).unwrap();
        assert!(!o.promote);
        assert_eq!(o.checks[0].name, "finite_scores");
        assert!(decide(&l, &bad, &s, &GateConfig::default()).is_err());
    }

    #[test]
    fn the_sensitivity_check_catches_a_shifted_threshold() {
        let (l, s) = cases(300, 0.5, 6);
        // same ranking (same AUC), but every probability halved: sensitivity at 0.5 collapses
        let halved: Vec<f64> = s.iter().map(|p| p * 0.5).collect();
        let plain = decide(&l, &s, &halved, &GateConfig::default()).unwrap();
        assert!(
            plain.promote,
            "the AUC alone cannot see it: {}",
            plain.reason
        );
        let cfg = GateConfig {
            check_sensitivity: true,
            ..Default::default()
        };
        let o = decide(&l, &s, &halved, &cfg).unwrap();
        assert!(!o.promote);
        assert!(o.reason.contains("sensitivity"), "{}", o.reason);
    }

    #[test]
    fn invalid_settings_and_inputs_are_errors() {
        let (l, s) = cases(20, 0.4, 7);
        let bad = GateConfig {
            delta: -0.1,
            ..Default::default()
        };
        assert!(decide(&l, &s, &s, &bad).is_err());
        assert!(decide(&l, &s[..10], &s, &GateConfig::default()).is_err());
        let one_class = vec![true; 20];
        assert!(decide(&one_class, &s, &s, &GateConfig::default()).is_err());
    }
}
