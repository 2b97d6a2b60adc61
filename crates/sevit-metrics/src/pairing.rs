//! Matching two models' predictions case by case (by id), for paired tests.

use std::collections::HashMap;

use anyhow::bail;

use crate::report::Predictions;

/// Two prediction sets matched case by case: `(ids, labels, scores_a, scores_b)`.
pub type PairedPredictions = (Vec<String>, Vec<bool>, Vec<f64>, Vec<f64>);

/// Cases of both sets, matched by id in the order of `a`: `(ids, labels, scores_a, scores_b)`.
///
/// # Errors
/// Case sets that differ (the message counts and lists up to 5 ids missing on each side) or a
/// label that differs between the two files (lists up to 5 such ids).
pub fn pair_predictions(
    a: &Predictions,
    b: &Predictions,
    name_a: &str,
    name_b: &str,
) -> anyhow::Result<PairedPredictions> {
    let index_b: HashMap<&str, usize> = b
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let index_a: HashMap<&str, usize> = a
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let only_a: Vec<&str> = a
        .ids
        .iter()
        .map(String::as_str)
        .filter(|id| !index_b.contains_key(id))
        .collect();
    let only_b: Vec<&str> = b
        .ids
        .iter()
        .map(String::as_str)
        .filter(|id| !index_a.contains_key(id))
        .collect();
    if !only_a.is_empty() || !only_b.is_empty() {
        let show = |v: &[&str]| {
            v.iter()
                .take(5)
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "the two prediction sets are not on the same cases: {} cases only in {name_a} ({}{}), {} only in {name_b} ({}{}); \
             evaluate both models on the same split and subset",
            only_a.len(),
            show(&only_a),
            if only_a.len() > 5 { ", ..." } else { "" },
            only_b.len(),
            show(&only_b),
            if only_b.len() > 5 { ", ..." } else { "" },
        );
    }
    let mut disagree = Vec::new();
    let mut labels = Vec::with_capacity(a.ids.len());
    let mut sb = Vec::with_capacity(a.ids.len());
    for (i, id) in a.ids.iter().enumerate() {
        let j = index_b[id.as_str()];
        if a.labels[i] != b.labels[j] {
            disagree.push(id.as_str());
        }
        labels.push(a.labels[i]);
        sb.push(b.scores[j]);
    }
    if !disagree.is_empty() {
        bail!(
            "{} cases have different labels in {name_a} and {name_b} (e.g. {}): the two files do not describe the same ground truth",
            disagree.len(),
            disagree.iter().take(5).map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok((a.ids.clone(), labels, a.scores.clone(), sb))
}
