//! Metrics of the binary decision `score >= threshold`, and the choice of threshold (Youden's J,
//! or a target sensitivity).

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;
use crate::input::{check_scores, split_two_class};
use crate::roc::roc_curve;
use crate::serde_nan::nan_as_null;

/// Confusion counts and derived rates of calling `score >= threshold` positive.
///
/// A ratio whose denominator is 0 (e.g. PPV when nothing is called positive) is NaN, written as
/// `null` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdMetrics {
    /// The threshold: a case is called positive when `score >= threshold`.
    pub threshold: f64,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives (`fn` in JSON; `fn_`, as earlier reports wrote it, is read too).
    #[serde(rename = "fn", alias = "fn_")]
    pub fn_: usize,
    /// `TP / (TP + FN)` (recall, true positive rate).
    #[serde(with = "nan_as_null")]
    pub sensitivity: f64,
    /// `TN / (TN + FP)`.
    #[serde(with = "nan_as_null")]
    pub specificity: f64,
    /// `TP / (TP + FP)` (precision).
    #[serde(with = "nan_as_null")]
    pub ppv: f64,
    /// `TN / (TN + FN)`.
    #[serde(with = "nan_as_null")]
    pub npv: f64,
    /// `(TP + TN) / n`.
    pub accuracy: f64,
    /// `2·TP / (2·TP + FP + FN)`.
    #[serde(with = "nan_as_null")]
    pub f1: f64,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        f64::NAN
    } else {
        num as f64 / den as f64
    }
}

impl ThresholdMetrics {
    /// Builds the metrics from confusion counts.
    pub fn from_counts(threshold: f64, tp: usize, fp: usize, tn: usize, fn_: usize) -> Self {
        ThresholdMetrics {
            threshold,
            tp,
            fp,
            tn,
            fn_,
            sensitivity: ratio(tp, tp + fn_),
            specificity: ratio(tn, tn + fp),
            ppv: ratio(tp, tp + fp),
            npv: ratio(tn, tn + fn_),
            accuracy: ratio(tp + tn, tp + fp + tn + fn_),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
        }
    }

    /// Youden's J = sensitivity + specificity − 1.
    pub fn youden_j(&self) -> f64 {
        self.sensitivity + self.specificity - 1.0
    }
}

/// Metrics of calling `score >= threshold` positive. One class only is allowed here (the rates
/// of the missing class are NaN).
///
/// # Errors
/// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`], [`MetricsError::NonFinite`] (also
/// for a NaN `threshold`, reported as `"threshold"[0]`).
pub fn at_threshold(
    labels: &[bool],
    scores: &[f64],
    threshold: f64,
) -> Result<ThresholdMetrics, MetricsError> {
    check_scores(labels, scores, "scores")?;
    if threshold.is_nan() {
        return Err(MetricsError::NonFinite {
            what: "threshold",
            index: 0,
            value: threshold,
        });
    }
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&l, &s) in labels.iter().zip(scores) {
        match (l, s >= threshold) {
            (true, true) => tp += 1,
            (true, false) => fn_ += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
        }
    }
    Ok(ThresholdMetrics::from_counts(threshold, tp, fp, tn, fn_))
}

/// The threshold maximising Youden's J (sensitivity + specificity − 1), among the observed
/// scores (decision `score >= threshold`); among equal J the highest threshold (the more
/// specific one) wins. pROC reports the midpoint between neighbouring scores instead; both
/// classify the sample identically.
///
/// # Errors
/// The input errors of [`crate::roc_auc`] (both classes are needed).
pub fn youden_threshold(labels: &[bool], scores: &[f64]) -> Result<ThresholdMetrics, MetricsError> {
    let curve = roc_curve(labels, scores)?;
    let mut best = &curve[1];
    for p in &curve[2..] {
        if p.tpr - p.fpr > best.tpr - best.fpr {
            best = p;
        }
    }
    at_threshold(labels, scores, best.threshold)
}

/// The highest observed-score threshold whose sensitivity is at least `target` (e.g. 0.9), i.e.
/// the most specific operating point meeting the target on this sample.
///
/// # Errors
/// The input errors of [`crate::roc_auc`]; [`MetricsError::InvalidParameter`] unless
/// `0 < target <= 1`.
pub fn threshold_for_sensitivity(
    labels: &[bool],
    scores: &[f64],
    target: f64,
) -> Result<ThresholdMetrics, MetricsError> {
    if !(target > 0.0 && target <= 1.0) {
        return Err(MetricsError::invalid(
            "target",
            target,
            "a target sensitivity in (0, 1] is required",
        ));
    }
    let split = split_two_class(labels, scores, "scores")?;
    let n_pos = split.pos.len() as f64;
    let curve = roc_curve(labels, scores)?;
    // tpr = tp / n_pos; compare counts so that e.g. 9/10 meets 0.9 despite rounding.
    let point = curve[1..]
        .iter()
        .find(|p| (p.tpr * n_pos).round() >= target * n_pos - 1e-9)
        .expect("the lowest threshold has sensitivity 1");
    at_threshold(labels, scores, point.threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    // labels/scores: pos {0.9, 0.8, 0.6, 0.3}, neg {0.7, 0.4, 0.2, 0.1, 0.05}.
    const L: [bool; 9] = [true, true, false, true, false, true, false, false, false];
    const S: [f64; 9] = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05];

    #[test]
    fn at_half() {
        // >= 0.5: 0.9 0.8 (TP) 0.7 (FP) 0.6 (TP); below: 0.4 (TN) 0.3 (FN) 0.2 0.1 0.05 (TN).
        let m = at_threshold(&L, &S, 0.5).unwrap();
        assert_eq!((m.tp, m.fp, m.tn, m.fn_), (3, 1, 4, 1));
        assert_eq!(m.sensitivity, 0.75);
        assert_eq!(m.specificity, 0.8);
        assert_eq!(m.ppv, 0.75);
        assert_eq!(m.npv, 0.8);
        assert_eq!(m.accuracy, 7.0 / 9.0);
        assert_eq!(m.f1, 0.75);
        assert!((m.youden_j() - 0.55).abs() < 1e-15);
    }

    #[test]
    fn threshold_is_inclusive() {
        let m = at_threshold(&L, &S, 0.6).unwrap();
        assert_eq!((m.tp, m.fp), (3, 1));
    }

    #[test]
    fn undefined_ratios_are_nan() {
        let m = at_threshold(&L, &S, 2.0).unwrap();
        assert_eq!((m.tp, m.fp, m.tn, m.fn_), (0, 0, 5, 4));
        assert!(m.ppv.is_nan());
        assert_eq!(m.f1, 0.0);
        assert_eq!(m.sensitivity, 0.0);
        // One class only: sensitivity undefined, the rest fine.
        let m = at_threshold(&[false, false], &[0.2, 0.7], 0.5).unwrap();
        assert!(m.sensitivity.is_nan());
        assert_eq!((m.ppv, m.npv), (0.0, 1.0));
        assert_eq!(m.f1, 0.0); // 2·0 / (0 + 1 FP + 0 FN)
        assert_eq!(m.specificity, 0.5);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"sensitivity\":null"), "{json}");
        let back: ThresholdMetrics = serde_json::from_str(&json).unwrap();
        assert!(back.sensitivity.is_nan() && back.specificity == 0.5);
    }

    #[test]
    fn youden() {
        // J by threshold: 0.9: .25-0=.25, 0.8: .5, 0.7: .5-.2=.3, 0.6: .75-.2=.55,
        // 0.4: .75-.4=.35, 0.3: 1-.4=.6, 0.2: .4, 0.1: .2, 0.05: 0. Best 0.3.
        let m = youden_threshold(&L, &S).unwrap();
        assert_eq!(m.threshold, 0.3);
        assert_eq!((m.tp, m.fp, m.tn, m.fn_), (4, 2, 3, 0));
    }

    #[test]
    fn youden_ties_take_the_higher_threshold() {
        // pos {0.9, 0.5}, neg {0.7, 0.1}: J(0.9) = .5, J(0.7) = 0, J(0.5) = .5, J(0.1) = 0.
        let m = youden_threshold(&[true, false, true, false], &[0.9, 0.7, 0.5, 0.1]).unwrap();
        assert_eq!(m.threshold, 0.9);
    }

    #[test]
    fn target_sensitivity() {
        // Sensitivity >= 0.75 first reached at 0.6 (3 of 4), = 1 at 0.3.
        assert_eq!(
            threshold_for_sensitivity(&L, &S, 0.75).unwrap().threshold,
            0.6
        );
        assert_eq!(
            threshold_for_sensitivity(&L, &S, 0.9).unwrap().threshold,
            0.3
        );
        assert_eq!(
            threshold_for_sensitivity(&L, &S, 1.0).unwrap().threshold,
            0.3
        );
        assert_eq!(
            threshold_for_sensitivity(&L, &S, 0.2).unwrap().threshold,
            0.9
        );
        // 9 of 10 positives meets 0.9 exactly.
        let labels: Vec<bool> = (0..20).map(|i| i < 10).collect();
        let scores: Vec<f64> = (0..20).map(|i| 1.0 - i as f64 / 20.0).collect();
        let m = threshold_for_sensitivity(&labels, &scores, 0.9).unwrap();
        assert_eq!((m.tp, m.fp), (9, 0));
    }

    #[test]
    fn degenerate_inputs() {
        assert!(matches!(
            threshold_for_sensitivity(&L, &S, 0.0),
            Err(MetricsError::InvalidParameter { name: "target", .. })
        ));
        assert!(matches!(
            threshold_for_sensitivity(&L, &S, 1.1),
            Err(MetricsError::InvalidParameter { .. })
        ));
        assert!(matches!(
            youden_threshold(&[true, true], &[0.1, 0.2]),
            Err(MetricsError::OneClass { .. })
        ));
        assert_eq!(at_threshold(&[], &[], 0.5), Err(MetricsError::Empty));
        assert!(matches!(
            at_threshold(&L, &S[..3], 0.5),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            at_threshold(&L, &S, f64::NAN),
            Err(MetricsError::NonFinite {
                what: "threshold",
                ..
            })
        ));
    }
}
