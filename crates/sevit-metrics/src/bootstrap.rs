//! Stratified percentile bootstrap CI of the AUC (pROC's `ci.auc(method = "bootstrap")` with
//! `boot.stratified = TRUE`).
//!
//! Each replicate resamples, with replacement, `m` of the `m` positive cases and `n` of the `n`
//! negative cases, so every replicate has both classes. The interval is given by the
//! `(1 − level)/2` and `(1 + level)/2` quantiles of the replicate AUCs (linear interpolation,
//! R's default `type = 7`); the variance is the sample variance of the replicate AUCs; the
//! point estimate is the AUC of the full sample.
//!
//! Determinism: the RNG is ChaCha8 seeded from `seed`, indices are drawn as `u64`, so the same
//! inputs and seed give the same interval on every platform. Each replicate costs `O(m + n)`
//! (the cases are sorted into tie groups once; a replicate only counts draws per group).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::delong::{AucCi, CiMethod};
use crate::error::MetricsError;
use crate::input::split_two_class;
use crate::normal::check_level;

/// Stratified percentile bootstrap CI of the AUC with `n_boot` replicates (at least 2;
/// pROC's default is 2000) at confidence `level`.
///
/// # Errors
/// The input errors of [`crate::roc_auc`]; [`MetricsError::InvalidParameter`] for `level` or
/// `n_boot < 2`.
pub fn bootstrap_ci(
    labels: &[bool],
    scores: &[f64],
    n_boot: usize,
    level: f64,
    seed: u64,
) -> Result<AucCi, MetricsError> {
    let split = split_two_class(labels, scores, "scores")?;
    check_level(level)?;
    if n_boot < 2 {
        return Err(MetricsError::invalid(
            "n_boot",
            n_boot,
            "at least 2 bootstrap replicates are needed",
        ));
    }
    let grouped = TieGroups::new(&split.pos, &split.neg);
    let (m, n) = (split.pos.len(), split.neg.len());
    let (mut cp, mut cn) = (vec![0u64; grouped.n_groups], vec![0u64; grouped.n_groups]);
    grouped.group_pos.iter().for_each(|&g| cp[g] += 1);
    grouped.group_neg.iter().for_each(|&g| cn[g] += 1);
    let auc = auc_from_group_counts(&cp, &cn);

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut aucs = Vec::with_capacity(n_boot);
    for _ in 0..n_boot {
        cp.iter_mut().for_each(|c| *c = 0);
        cn.iter_mut().for_each(|c| *c = 0);
        for _ in 0..m {
            cp[grouped.group_pos[rng.gen_range(0..m as u64) as usize]] += 1;
        }
        for _ in 0..n {
            cn[grouped.group_neg[rng.gen_range(0..n as u64) as usize]] += 1;
        }
        aucs.push(auc_from_group_counts(&cp, &cn));
    }
    let mean = aucs.iter().sum::<f64>() / n_boot as f64;
    let variance =
        aucs.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (n_boot as f64 - 1.0);
    aucs.sort_unstable_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Ok(AucCi {
        auc,
        variance,
        lower: quantile_sorted(&aucs, alpha),
        upper: quantile_sorted(&aucs, 1.0 - alpha),
        level,
        method: CiMethod::Bootstrap { n_boot, seed },
    })
}

/// R's type-7 quantile of an ascending, non-empty slice.
pub(crate) fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Cases grouped by tied score, groups in ascending score order.
struct TieGroups {
    /// Group index of each positive case.
    group_pos: Vec<usize>,
    /// Group index of each negative case.
    group_neg: Vec<usize>,
    n_groups: usize,
}

impl TieGroups {
    fn new(pos: &[f64], neg: &[f64]) -> Self {
        let mut all: Vec<(f64, bool, usize)> = pos
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, true, i))
            .chain(neg.iter().enumerate().map(|(j, &s)| (s, false, j)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut group_pos = vec![0; pos.len()];
        let mut group_neg = vec![0; neg.len()];
        let mut g = 0;
        for (k, &(s, is_pos, i)) in all.iter().enumerate() {
            if k > 0 && s != all[k - 1].0 {
                g += 1;
            }
            if is_pos {
                group_pos[i] = g
            } else {
                group_neg[i] = g
            }
        }
        TieGroups {
            group_pos,
            group_neg,
            n_groups: g + 1,
        }
    }
}

/// AUC of a sample given, per tie group in ascending score order, the number of positive
/// (`cp`) and negative (`cn`) cases; both totals must be positive.
fn auc_from_group_counts(cp: &[u64], cn: &[u64]) -> f64 {
    // Twice the U statistic, in integers: each pair above counts 2, each tie 1.
    let (mut neg_below, mut u2, mut m) = (0u64, 0u128, 0u64);
    for (&p, &q) in cp.iter().zip(cn) {
        u2 += p as u128 * (2 * neg_below + q) as u128;
        neg_below += q;
        m += p;
    }
    u2 as f64 / (2.0 * m as f64 * neg_below as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc::roc_auc;

    fn data() -> (Vec<bool>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let labels: Vec<bool> = (0..300).map(|i| i % 3 == 0).collect();
        let scores = labels
            .iter()
            .map(|&l| ((if l { 0.7 } else { 0.0 }) + rng.gen::<f64>() * 2.0).round() / 4.0)
            .collect();
        (labels, scores)
    }

    #[test]
    fn full_weight_auc_matches_roc_auc() {
        let (labels, scores) = data();
        let ci = bootstrap_ci(&labels, &scores, 50, 0.95, 1).unwrap();
        assert!((ci.auc - roc_auc(&labels, &scores).unwrap()).abs() < 1e-15);
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let (labels, scores) = data();
        let a = bootstrap_ci(&labels, &scores, 200, 0.95, 42).unwrap();
        let b = bootstrap_ci(&labels, &scores, 200, 0.95, 42).unwrap();
        let c = bootstrap_ci(&labels, &scores, 200, 0.95, 43).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.lower, c.lower);
        assert!(a.lower < a.auc && a.auc < a.upper);
        assert_eq!(
            a.method,
            CiMethod::Bootstrap {
                n_boot: 200,
                seed: 42
            }
        );
    }

    #[test]
    fn close_to_delong() {
        // With 300 cases and 2000 replicates the bootstrap variance is near the DeLong one.
        let (labels, scores) = data();
        let boot = bootstrap_ci(&labels, &scores, 2000, 0.95, 3).unwrap();
        let dl = crate::delong::delong_ci(&labels, &scores, 0.95).unwrap();
        let ratio = boot.variance / dl.variance;
        assert!(
            (0.8..1.25).contains(&ratio),
            "bootstrap/DeLong variance ratio {ratio}"
        );
        assert!((boot.lower - dl.lower).abs() < 0.02 && (boot.upper - dl.upper).abs() < 0.02);
    }

    #[test]
    fn quantile_type7() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&x, 0.0), 1.0);
        assert_eq!(quantile_sorted(&x, 1.0), 4.0);
        assert_eq!(quantile_sorted(&x, 0.5), 2.5);
        // R: quantile(1:4, 0.025) = 1.075
        assert!((quantile_sorted(&x, 0.025) - 1.075).abs() < 1e-12);
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn rejects_bad_parameters() {
        let (labels, scores) = data();
        assert!(matches!(
            bootstrap_ci(&labels, &scores, 1, 0.95, 0),
            Err(MetricsError::InvalidParameter { name: "n_boot", .. })
        ));
        assert!(matches!(
            bootstrap_ci(&labels, &scores, 100, 1.5, 0),
            Err(MetricsError::InvalidParameter { name: "level", .. })
        ));
        assert!(matches!(
            bootstrap_ci(&[true], &[0.5], 100, 0.95, 0),
            Err(MetricsError::OneClass { .. })
        ));
    }
}
