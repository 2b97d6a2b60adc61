//! ROC AUC (Mann–Whitney with midranks) and the empirical ROC curve.
//!
//! Convention throughout the crate: a **higher score means "more likely positive"**, and a case
//! is called positive at threshold `t` when `score >= t`. Unlike pROC's `direction = "auto"`, the
//! direction is never flipped: a model worse than chance gets an AUC below 0.5.

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;
use crate::input::{midranks, split_two_class};
use crate::serde_nan;

/// One point of the empirical ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// False positive rate `FP / N` (= 1 − specificity) when calling `score >= threshold`
    /// positive.
    pub fpr: f64,
    /// True positive rate `TP / P` (sensitivity).
    pub tpr: f64,
    /// The threshold; the first point `(0, 0)` has `+inf` (stored as `null` in JSON).
    #[serde(with = "serde_nan::inf_as_null")]
    pub threshold: f64,
}

/// Area under the ROC curve: the Mann–Whitney U statistic divided by `P·N`, ties counted as ½
/// (midranks). Equals scikit-learn's `roc_auc_score` and pROC's AUC with
/// `direction = "<"`.
///
/// # Errors
/// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`], [`MetricsError::NonFinite`],
/// [`MetricsError::OneClass`].
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<f64, MetricsError> {
    let split = split_two_class(labels, scores, "scores")?;
    let (n1, n0) = (split.pos.len() as f64, split.neg.len() as f64);
    let ranks = midranks(scores);
    let rank_sum_pos: f64 = labels
        .iter()
        .zip(&ranks)
        .filter(|(&l, _)| l)
        .map(|(_, &r)| r)
        .sum();
    Ok((rank_sum_pos - n1 * (n1 + 1.0) / 2.0) / (n1 * n0))
}

/// The empirical ROC curve: one point per distinct score, from `(0, 0)` (threshold `+inf`) to
/// `(1, 1)` (threshold = the lowest score), thresholds decreasing. Tied scores move the curve
/// diagonally, which is what makes the trapezoidal area equal [`roc_auc`].
///
/// # Errors
/// As [`roc_auc`].
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Result<Vec<RocPoint>, MetricsError> {
    let split = split_two_class(labels, scores, "scores")?;
    let (n1, n0) = (split.pos.len() as f64, split.neg.len() as f64);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![RocPoint {
        fpr: 0.0,
        tpr: 0.0,
        threshold: f64::INFINITY,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let t = scores[order[i]];
        while i < order.len() && scores[order[i]] == t {
            if labels[order[i]] {
                tp += 1
            } else {
                fp += 1
            }
            i += 1;
        }
        points.push(RocPoint {
            fpr: fp as f64 / n0,
            tpr: tp as f64 / n1,
            threshold: t,
        });
    }
    Ok(points)
}

/// Trapezoidal area under a sequence of ROC points (sorted by increasing `fpr`, as
/// [`roc_curve`] returns them).
pub fn trapezoid_area(points: &[RocPoint]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_hand_computed() {
        // pos {0.8, 0.4}, neg {0.5, 0.1}: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1) -> 3/4.
        let labels = [true, false, true, false];
        let scores = [0.8, 0.5, 0.4, 0.1];
        assert_eq!(roc_auc(&labels, &scores).unwrap(), 0.75);
    }

    #[test]
    fn auc_with_ties() {
        // pos {0.5, 0.5}, neg {0.5, 0.2}: pairs 0.5 vs 0.5 tie twice (1/2 each), beat 0.2 twice.
        let labels = [true, true, false, false];
        let scores = [0.5, 0.5, 0.5, 0.2];
        assert_eq!(roc_auc(&labels, &scores).unwrap(), 0.75);
        // All tied: 1/2.
        assert_eq!(
            roc_auc(&[true, false, false], &[1.0, 1.0, 1.0]).unwrap(),
            0.5
        );
    }

    #[test]
    fn perfect_and_inverted() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&labels, &[0.1, 0.2, 0.3, 0.4]).unwrap(), 1.0);
        assert_eq!(roc_auc(&labels, &[0.4, 0.3, 0.2, 0.1]).unwrap(), 0.0);
    }

    #[test]
    fn curve_points_and_area() {
        let labels = [true, true, false, false];
        let scores = [0.5, 0.5, 0.5, 0.2];
        let c = roc_curve(&labels, &scores).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0],
            RocPoint {
                fpr: 0.0,
                tpr: 0.0,
                threshold: f64::INFINITY
            }
        );
        assert_eq!(
            c[1],
            RocPoint {
                fpr: 0.5,
                tpr: 1.0,
                threshold: 0.5
            }
        );
        assert_eq!(
            c[2],
            RocPoint {
                fpr: 1.0,
                tpr: 1.0,
                threshold: 0.2
            }
        );
        assert_eq!(trapezoid_area(&c), 0.75);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(roc_auc(&[], &[]), Err(MetricsError::Empty));
        assert!(matches!(
            roc_auc(&[true, false], &[0.1]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            roc_auc(&[true, true], &[0.1, 0.2]),
            Err(MetricsError::OneClass { .. })
        ));
        assert!(matches!(
            roc_auc(&[false, false], &[0.1, 0.2]),
            Err(MetricsError::OneClass { .. })
        ));
        assert!(matches!(
            roc_auc(&[true, false], &[f64::NAN, 0.2]),
            Err(MetricsError::NonFinite { index: 0, .. })
        ));
        assert!(matches!(
            roc_curve(&[true, false], &[0.3, f64::INFINITY]),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
    }
}
