//! DeLong variance of the AUC, its confidence interval, and the paired DeLong test.
//!
//! The structural components (placement values) are computed with the `O(n log n)` midrank
//! algorithm of Sun & Xu, "Fast implementation of DeLong's algorithm for comparing the areas
//! under correlated receiver operating characteristic curves", IEEE Signal Processing Letters
//! 21(11), 2014. For `m` positive cases `X_i` and `n` negative cases `Y_j`:
//!
//! * `V10(X_i) = (rank of X_i among all cases − rank of X_i among positives) / n`
//!   = the fraction of negatives scored below `X_i`, ties counted ½;
//! * `V01(Y_j) = 1 − (rank of Y_j among all cases − rank of Y_j among negatives) / m`
//!   = the fraction of positives scored above `Y_j`, ties counted ½;
//! * `AUC = mean(V10) = mean(V01)`, and (DeLong, DeLong & Clarke-Pearson, Biometrics 44, 1988)
//!   `Var(AUC) = S10 / m + S01 / n`, where `S10`, `S01` are the sample (co)variances
//!   (denominators `m − 1`, `n − 1`) of the components.
//!
//! This is what pROC's `var(roc, method = "delong")` computes. The confidence interval is, as in
//! pROC's `ci.auc(method = "delong")`, the **plain** normal interval `AUC ± z·sqrt(Var)` (no logit
//! transform), clipped to `[0, 1]`.

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;
use crate::input::{check_scores, class_counts, midranks};
use crate::normal::{check_level, two_sided_p, z_critical};

/// How a confidence interval was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CiMethod {
    /// DeLong variance, plain normal interval clipped to `[0, 1]`.
    Delong,
    /// Stratified percentile bootstrap.
    Bootstrap {
        /// Number of bootstrap replicates.
        n_boot: usize,
        /// RNG seed.
        seed: u64,
    },
}

/// An AUC with its variance and confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AucCi {
    /// The AUC of the full sample.
    pub auc: f64,
    /// The variance estimate (DeLong, or the bootstrap sample variance).
    pub variance: f64,
    /// Lower bound of the interval.
    pub lower: f64,
    /// Upper bound of the interval.
    pub upper: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// How the interval was computed.
    pub method: CiMethod,
}

/// The paired DeLong test of two models scored on the same cases (pROC's
/// `roc.test(method = "delong", paired = TRUE)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    /// AUC of model A.
    pub auc_a: f64,
    /// AUC of model B.
    pub auc_b: f64,
    /// `auc_a − auc_b`.
    pub diff: f64,
    /// DeLong variance of the difference: `Var(A) + Var(B) − 2·Cov(A, B)`.
    pub var_diff: f64,
    /// `diff / sqrt(var_diff)`; `0` when both the difference and its variance are 0 (identical
    /// predictions), `±inf` when only the variance is 0.
    pub z: f64,
    /// Two-sided p-value from the standard normal.
    pub p_value: f64,
    /// Confidence interval of the difference, `diff ± z_crit·sqrt(var_diff)` (not clipped).
    pub ci_diff: (f64, f64),
    /// Confidence level of `ci_diff`.
    pub level: f64,
}

/// DeLong structural components of one score vector.
#[derive(Debug, Clone)]
pub(crate) struct Components {
    /// `V10`, one per positive case (input order).
    pub v10: Vec<f64>,
    /// `V01`, one per negative case (input order).
    pub v01: Vec<f64>,
    pub auc: f64,
}

/// The scores of the positive cases and of the negative cases, each in input order.
fn split_by_class(labels: &[bool], scores: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let of = |class: bool| -> Vec<f64> {
        labels
            .iter()
            .zip(scores)
            .filter(|(&l, _)| l == class)
            .map(|(_, &s)| s)
            .collect()
    };
    (of(true), of(false))
}

/// Computes the placement values with midranks (Sun & Xu 2014). `labels`/`scores` are
/// validated, both classes present.
pub(crate) fn components(labels: &[bool], scores: &[f64]) -> Components {
    let (pos, neg) = split_by_class(labels, scores);
    let (m, n) = (pos.len(), neg.len());
    let tx = midranks(&pos);
    let ty = midranks(&neg);
    let mut all = pos;
    all.extend_from_slice(&neg);
    let tz = midranks(&all);
    let (mf, nf) = (m as f64, n as f64);
    let v10: Vec<f64> = (0..m).map(|i| (tz[i] - tx[i]) / nf).collect();
    let v01: Vec<f64> = (0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / mf).collect();
    let rank_sum: f64 = tz[..m].iter().sum();
    let auc = (rank_sum - mf * (mf + 1.0) / 2.0) / (mf * nf);
    Components { v10, v01, auc }
}

/// Sample covariance (denominator `len − 1`) of two equally long slices.
fn cov(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len() as f64;
    let ma = a.iter().sum::<f64>() / k;
    let mb = b.iter().sum::<f64>() / k;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (k - 1.0)
}

fn check_two_each(labels: &[bool]) -> Result<(usize, usize), MetricsError> {
    let (n_pos, n_neg) = class_counts(labels);
    if n_pos == 0 || n_neg == 0 {
        return Err(MetricsError::OneClass { n_pos, n_neg });
    }
    if n_pos < 2 || n_neg < 2 {
        return Err(MetricsError::TooFewCases {
            method: "the DeLong variance",
            n_pos,
            n_neg,
            need: 2,
        });
    }
    Ok((n_pos, n_neg))
}

/// DeLong variance of the AUC (pROC's `var(roc, method = "delong")`).
///
/// # Errors
/// The input errors of [`crate::roc_auc`], and [`MetricsError::TooFewCases`] with fewer than two
/// cases of a class.
pub fn delong_variance(labels: &[bool], scores: &[f64]) -> Result<f64, MetricsError> {
    Ok(delong_ci(labels, scores, 0.95)?.variance)
}

/// AUC with its DeLong variance and the plain normal confidence interval at `level` (e.g.
/// 0.95), clipped to `[0, 1]`.
///
/// # Errors
/// As [`delong_variance`], and [`MetricsError::InvalidParameter`] unless `0 < level < 1`.
pub fn delong_ci(labels: &[bool], scores: &[f64], level: f64) -> Result<AucCi, MetricsError> {
    check_scores(labels, scores, "scores")?;
    let (m, n) = check_two_each(labels)?;
    let z = z_critical(level)?;
    let c = components(labels, scores);
    let variance = cov(&c.v10, &c.v10) / m as f64 + cov(&c.v01, &c.v01) / n as f64;
    let half = z * variance.sqrt();
    Ok(AucCi {
        auc: c.auc,
        variance,
        lower: (c.auc - half).max(0.0),
        upper: (c.auc + half).min(1.0),
        level,
        method: CiMethod::Delong,
    })
}

/// The paired DeLong test of two models on the same cases at the 95% level; see
/// [`delong_paired_level`].
pub fn delong_paired(
    labels: &[bool],
    scores_a: &[f64],
    scores_b: &[f64],
) -> Result<PairedTest, MetricsError> {
    delong_paired_level(labels, scores_a, scores_b, 0.95)
}

/// The paired DeLong test (`H0: AUC_A = AUC_B`) of two score vectors for the same cases, with a
/// `level` confidence interval of the difference.
///
/// # Errors
/// The input errors of [`crate::roc_auc`] for either vector (`scores_b` is named `"scores_b"`),
/// [`MetricsError::TooFewCases`], [`MetricsError::InvalidParameter`] for `level`.
pub fn delong_paired_level(
    labels: &[bool],
    scores_a: &[f64],
    scores_b: &[f64],
    level: f64,
) -> Result<PairedTest, MetricsError> {
    check_scores(labels, scores_a, "scores_a")?;
    check_scores(labels, scores_b, "scores_b")?;
    let (m, n) = check_two_each(labels)?;
    check_level(level)?;
    let zc = z_critical(level)?;
    let a = components(labels, scores_a);
    let b = components(labels, scores_b);
    let (mf, nf) = (m as f64, n as f64);
    let var_a = cov(&a.v10, &a.v10) / mf + cov(&a.v01, &a.v01) / nf;
    let var_b = cov(&b.v10, &b.v10) / mf + cov(&b.v01, &b.v01) / nf;
    let cov_ab = cov(&a.v10, &b.v10) / mf + cov(&a.v01, &b.v01) / nf;
    let var_diff = (var_a + var_b - 2.0 * cov_ab).max(0.0);
    let diff = a.auc - b.auc;
    let sd = var_diff.sqrt();
    let z = if sd > 0.0 {
        diff / sd
    } else if diff == 0.0 {
        0.0
    } else {
        diff.signum() * f64::INFINITY
    };
    Ok(PairedTest {
        auc_a: a.auc,
        auc_b: b.auc,
        diff,
        var_diff,
        z,
        p_value: two_sided_p(z),
        ci_diff: (diff - zc * sd, diff + zc * sd),
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force O(m·n) placement values straight from DeLong et al. (1988).
    fn brute(labels: &[bool], scores: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (pos, neg) = split_by_class(labels, scores);
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let v10 = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / neg.len() as f64)
            .collect();
        let v01 = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / pos.len() as f64)
            .collect();
        (v10, v01)
    }

    #[test]
    fn components_match_brute_force_with_ties() {
        let labels = [true, false, true, true, false, false, true, false, false];
        let scores = [0.9, 0.9, 0.3, 0.5, 0.5, 0.1, 0.9, 0.3, 0.2];
        let c = components(&labels, &scores);
        let (v10, v01) = brute(&labels, &scores);
        for (a, b) in c.v10.iter().zip(&v10) {
            assert!((a - b).abs() < 1e-15);
        }
        for (a, b) in c.v01.iter().zip(&v01) {
            assert!((a - b).abs() < 1e-15);
        }
        let mean10 = v10.iter().sum::<f64>() / v10.len() as f64;
        assert!((c.auc - mean10).abs() < 1e-15);
    }

    #[test]
    fn ci_hand_computed() {
        // pos {0.8, 0.4}, neg {0.5, 0.1}: V10 = (1, 1/2), V01 = (1/2, 1).
        // S10 = var(1, .5) = 0.125, S01 = 0.125; Var = 0.125/2 + 0.125/2 = 0.125.
        let labels = [true, false, true, false];
        let scores = [0.8, 0.5, 0.4, 0.1];
        let ci = delong_ci(&labels, &scores, 0.95).unwrap();
        assert_eq!(ci.auc, 0.75);
        assert!((ci.variance - 0.125).abs() < 1e-15);
        let half = 1.959963984540054 * 0.125f64.sqrt();
        assert!((ci.lower - (0.75 - half)).abs() < 1e-12);
        assert_eq!(ci.upper, 1.0); // clipped
        assert_eq!(ci.method, CiMethod::Delong);
    }

    #[test]
    fn paired_identical_models() {
        let labels = [true, false, true, false, true];
        let s = [0.8, 0.5, 0.4, 0.1, 0.7];
        let t = delong_paired(&labels, &s, &s).unwrap();
        assert_eq!(t.diff, 0.0);
        assert_eq!(t.var_diff, 0.0);
        assert_eq!(t.z, 0.0);
        assert_eq!(t.p_value, 1.0);
    }

    #[test]
    fn paired_is_antisymmetric() {
        let labels = [true, false, true, false, true, false, false];
        let a = [0.8, 0.5, 0.4, 0.1, 0.7, 0.6, 0.2];
        let b = [0.3, 0.5, 0.9, 0.2, 0.6, 0.1, 0.4];
        let ab = delong_paired(&labels, &a, &b).unwrap();
        let ba = delong_paired(&labels, &b, &a).unwrap();
        assert!((ab.z + ba.z).abs() < 1e-12);
        assert!((ab.p_value - ba.p_value).abs() < 1e-12);
        assert!(ab.ci_diff.0 < ab.diff && ab.diff < ab.ci_diff.1);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(matches!(
            delong_ci(&[true, false, false], &[0.1, 0.2, 0.3], 0.95),
            Err(MetricsError::TooFewCases {
                n_pos: 1,
                n_neg: 2,
                ..
            })
        ));
        assert!(matches!(
            delong_ci(&[true, true], &[0.1, 0.2], 0.95),
            Err(MetricsError::OneClass { .. })
        ));
        assert!(matches!(
            delong_ci(&[true, true, false, false], &[0.1, 0.2, 0.3, 0.4], 1.0),
            Err(MetricsError::InvalidParameter { name: "level", .. })
        ));
        assert!(matches!(
            delong_paired(
                &[true, true, false, false],
                &[0.1, 0.2, 0.3, 0.4],
                &[0.1, 0.2, 0.3]
            ),
            Err(MetricsError::LengthMismatch {
                what: "scores_b",
                ..
            })
        ));
        assert!(matches!(
            delong_paired(
                &[true, true, false, false],
                &[0.1, 0.2, 0.3, 0.4],
                &[0.1, 0.2, f64::NAN, 0.3]
            ),
            Err(MetricsError::NonFinite {
                what: "scores_b",
                index: 2,
                ..
            })
        ));
        assert_eq!(delong_ci(&[], &[], 0.95), Err(MetricsError::Empty));
    }
}
