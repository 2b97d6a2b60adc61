//! Calibration of predicted probabilities: Brier score, expected calibration error (ECE) and the
//! reliability curve.
//!
//! Bins are `n_bins` equal-width intervals of `[0, 1]`: bin `b` holds the probabilities in
//! `[b/n_bins, (b+1)/n_bins)`, the last bin also holding 1. `ECE = Σ_b (n_b / n)·|mean
//! probability in b − fraction positive in b|` over the non-empty bins.

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;
use crate::input::check_probs;
use crate::serde_nan::nan_as_null;

/// One bin of the reliability curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the bin.
    pub lower: f64,
    /// Upper edge of the bin.
    pub upper: f64,
    /// Number of cases in the bin.
    pub count: usize,
    /// Mean predicted probability in the bin (NaN, `null` in JSON, when empty).
    #[serde(with = "nan_as_null")]
    pub mean_prob: f64,
    /// Observed fraction of positives in the bin (NaN, `null` in JSON, when empty).
    #[serde(with = "nan_as_null")]
    pub frac_pos: f64,
}

/// Calibration summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Brier score: mean of `(p − y)²`.
    pub brier: f64,
    /// Expected calibration error over `bins`.
    pub ece: f64,
    /// All `n_bins` bins, empty ones included (the reliability curve uses the non-empty ones).
    pub bins: Vec<ReliabilityBin>,
}

/// Brier score, ECE with `n_bins` equal-width bins, and the reliability bins. One class only is
/// allowed.
///
/// # Errors
/// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`], [`MetricsError::NonFinite`],
/// [`MetricsError::NotAProbability`] for a value outside `[0, 1]`,
/// [`MetricsError::InvalidParameter`] for `n_bins == 0`.
pub fn calibration(
    labels: &[bool],
    probs: &[f64],
    n_bins: usize,
) -> Result<Calibration, MetricsError> {
    check_probs(labels, probs, "probs")?;
    if n_bins == 0 {
        return Err(MetricsError::invalid(
            "n_bins",
            n_bins,
            "at least one bin is needed",
        ));
    }
    let n = labels.len() as f64;
    let y = |l: bool| if l { 1.0 } else { 0.0 };
    let brier = labels
        .iter()
        .zip(probs)
        .map(|(&l, &p)| (p - y(l)).powi(2))
        .sum::<f64>()
        / n;

    let mut count = vec![0usize; n_bins];
    let mut sum_p = vec![0.0; n_bins];
    let mut sum_y = vec![0.0; n_bins];
    for (&l, &p) in labels.iter().zip(probs) {
        let b = ((p * n_bins as f64).floor() as usize).min(n_bins - 1);
        count[b] += 1;
        sum_p[b] += p;
        sum_y[b] += y(l);
    }
    let bins: Vec<ReliabilityBin> = (0..n_bins)
        .map(|b| {
            let (mean_prob, frac_pos) = if count[b] == 0 {
                (f64::NAN, f64::NAN)
            } else {
                (sum_p[b] / count[b] as f64, sum_y[b] / count[b] as f64)
            };
            ReliabilityBin {
                lower: b as f64 / n_bins as f64,
                upper: (b + 1) as f64 / n_bins as f64,
                count: count[b],
                mean_prob,
                frac_pos,
            }
        })
        .collect();
    let ece = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| b.count as f64 / n * (b.mean_prob - b.frac_pos).abs())
        .sum();
    Ok(Calibration { brier, ece, bins })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // probs 0.1 (neg), 0.3 (pos), 0.35 (neg), 0.8 (pos), 1.0 (pos); 2 bins.
        let labels = [false, true, false, true, true];
        let probs = [0.1, 0.3, 0.35, 0.8, 1.0];
        let c = calibration(&labels, &probs, 2).unwrap();
        // Brier: (.01 + .49 + .1225 + .04 + 0) / 5 = 0.1325
        assert!((c.brier - 0.1325).abs() < 1e-15);
        // bin 0: {.1, .3, .35}: mean .25, frac 1/3; bin 1: {.8, 1.0}: mean .9, frac 1.
        assert_eq!(c.bins.len(), 2);
        assert_eq!(c.bins[0].count, 3);
        assert!((c.bins[0].mean_prob - 0.25).abs() < 1e-15);
        assert!((c.bins[0].frac_pos - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(c.bins[1].count, 2);
        assert!((c.bins[1].mean_prob - 0.9).abs() < 1e-15);
        assert_eq!(c.bins[1].frac_pos, 1.0);
        // ECE = 3/5 |.25 - 1/3| + 2/5 |.9 - 1| = .05 + .04 = .09
        assert!((c.ece - 0.09).abs() < 1e-15);
    }

    #[test]
    fn empty_bins_and_edges() {
        let c = calibration(&[true, false], &[1.0, 0.0], 10).unwrap();
        assert_eq!(c.bins.len(), 10);
        assert_eq!(c.bins[0].count, 1);
        assert_eq!(c.bins[9].count, 1); // 1.0 goes into the last bin
        assert!(c.bins[5].mean_prob.is_nan());
        assert_eq!(c.ece, 0.0);
        assert_eq!(c.brier, 0.0);
        let json = serde_json::to_string(&c).unwrap();
        let back: Calibration = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bins[0], c.bins[0]);
        assert!(back.bins[5].frac_pos.is_nan());
    }

    #[test]
    fn perfectly_calibrated_bins() {
        // In each bin the mean probability equals the positive fraction.
        let labels = [true, false, false, false, true, true, true, false];
        let probs = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75];
        let c = calibration(&labels, &probs, 4).unwrap();
        assert!(c.ece.abs() < 1e-15);
        assert!((c.brier - 0.1875).abs() < 1e-15);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(calibration(&[], &[], 10), Err(MetricsError::Empty));
        assert!(matches!(
            calibration(&[true], &[0.5], 0),
            Err(MetricsError::InvalidParameter { .. })
        ));
        assert!(matches!(
            calibration(&[true], &[1.2], 10),
            Err(MetricsError::NotAProbability { .. })
        ));
        assert!(matches!(
            calibration(&[true], &[-0.1], 10),
            Err(MetricsError::NotAProbability { .. })
        ));
        assert!(matches!(
            calibration(&[true], &[f64::NAN], 10),
            Err(MetricsError::NonFinite { .. })
        ));
        assert!(matches!(
            calibration(&[true, false], &[0.5], 10),
            Err(MetricsError::LengthMismatch { .. })
        ));
    }
}
