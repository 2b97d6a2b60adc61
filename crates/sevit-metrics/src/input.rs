//! Input validation shared by all metrics, and the split of scores by class.

use crate::error::MetricsError;

/// Scores split by class, after validation: `pos` are the scores of the positive cases
/// (label `true`), `neg` those of the negative cases, each in input order.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    pub pos: Vec<f64>,
    pub neg: Vec<f64>,
}

/// Checks that `labels` and `values` are non-empty, of equal length, and that every value is
/// finite. `what` names `values` in the error.
pub(crate) fn check_scores(
    labels: &[bool],
    values: &[f64],
    what: &'static str,
) -> Result<(), MetricsError> {
    if labels.is_empty() && values.is_empty() {
        return Err(MetricsError::Empty);
    }
    if labels.len() != values.len() {
        return Err(MetricsError::LengthMismatch {
            what,
            expected: labels.len(),
            got: values.len(),
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricsError::NonFinite { what, index, value });
    }
    Ok(())
}

/// Like [`check_scores`], and additionally requires every value to lie in `[0, 1]`.
pub(crate) fn check_probs(
    labels: &[bool],
    probs: &[f64],
    what: &'static str,
) -> Result<(), MetricsError> {
    check_scores(labels, probs, what)?;
    if let Some((index, &value)) = probs
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(MetricsError::NotAProbability { what, index, value });
    }
    Ok(())
}

/// Counts of (positive, negative) labels.
pub(crate) fn class_counts(labels: &[bool]) -> (usize, usize) {
    let n_pos = labels.iter().filter(|&&l| l).count();
    (n_pos, labels.len() - n_pos)
}

/// Validates and splits scores by class; both classes must be present.
pub(crate) fn split_two_class(
    labels: &[bool],
    scores: &[f64],
    what: &'static str,
) -> Result<Split, MetricsError> {
    check_scores(labels, scores, what)?;
    let (n_pos, n_neg) = class_counts(labels);
    if n_pos == 0 || n_neg == 0 {
        return Err(MetricsError::OneClass { n_pos, n_neg });
    }
    let mut pos = Vec::with_capacity(n_pos);
    let mut neg = Vec::with_capacity(n_neg);
    for (&l, &s) in labels.iter().zip(scores) {
        if l {
            pos.push(s)
        } else {
            neg.push(s)
        }
    }
    Ok(Split { pos, neg })
}

/// Midranks (1-based; tied values share the mean of the ranks they span) of `values`, which
/// must be finite. `O(n log n)`.
pub(crate) fn midranks(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) hold equal values: ranks i+1..=j+1, mean (i+j)/2 + 1.
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midranks_with_ties() {
        let r = midranks(&[3.0, 1.0, 3.0, 2.0, 3.0]);
        assert_eq!(r, vec![4.0, 1.0, 4.0, 2.0, 4.0]);
        let r = midranks(&[0.5, 0.5]);
        assert_eq!(r, vec![1.5, 1.5]);
        assert!(midranks(&[]).is_empty());
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        // -0.0 == 0.0 must count as a tie even though total_cmp orders them.
        let r = midranks(&[0.0, -0.0, 1.0]);
        assert_eq!(r, vec![1.5, 1.5, 3.0]);
    }

    #[test]
    fn errors() {
        assert_eq!(check_scores(&[], &[], "scores"), Err(MetricsError::Empty));
        assert!(matches!(
            check_scores(&[true], &[0.1, 0.2], "scores"),
            Err(MetricsError::LengthMismatch {
                expected: 1,
                got: 2,
                ..
            })
        ));
        assert!(matches!(
            check_scores(&[true, false], &[0.1, f64::NAN], "scores"),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            check_probs(&[true, false], &[0.1, 1.5], "probs"),
            Err(MetricsError::NotAProbability { index: 1, .. })
        ));
        assert!(matches!(
            split_two_class(&[true, true], &[0.1, 0.2], "scores"),
            Err(MetricsError::OneClass { n_pos: 2, n_neg: 0 })
        ));
    }
}
