//! Which ingredient of DISTL fails: the backbone, the initial model DISTL starts from, the
//! teacher's pseudo-labels, the DINO objective inside the steps, and what the steps did to
//! the model. Each is judged by a stated rule on validation AUCs, the backbone gate, the
//! pseudo-label audit and the training logs, never on the test set, so the diagnosis cannot
//! be tuned on the numbers the claim is decided by.

use std::fmt::Write as _;

use sevit_data::Subset;

use super::{fmt, last_epoch_audit, last_epoch_mean, mean, read_gate, step_log, Report};

/// A self-training loss at least this share of ln 2 is the BCE of soft targets and
/// predictions that both sit near 0.5: the pseudo-labels then carry almost no confidence.
const FLAT_TARGET_RATIO: f64 = 0.99;

/// The DINO loss / ln K above which a DINO head counts as near uniform, when the protocol
/// declares no backbone gate of its own (the distl-claim protocol's gate declares 0.8).
const DEFAULT_MAX_LOSS_RATIO: f64 = 0.8;

/// What the diagnosis reads, as means over the seeds (and steps, and folds) run so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Evidence {
    /// Backbone gate: passed, DINO loss / ln K, probe gain over random weights.
    pub gate: Option<(bool, f64, f64)>,
    /// Validation AUC of the initial model (T = 0).
    pub initial_val: Option<f64>,
    /// Validation AUC of the labeled-only control at T = k minus the initial model's: what
    /// more updates on the labeled set alone give.
    pub control_room: Option<f64>,
    /// Mean change of the DISTL student's validation AUC made by step T, for T = 1..k.
    pub step_changes: Vec<Option<f64>>,
    /// The teacher's pseudo-label AUC on the folds, last epoch of each step.
    pub pseudo_auc: Option<f64>,
    /// The teacher's mean soft pseudo-label on the folds, last epoch of each step.
    pub pseudo_mean: Option<f64>,
    /// Self-training loss of each step's last epoch, over ln 2.
    pub self_training_ratio: Option<f64>,
    /// DINO loss of each step's last epoch, over ln K.
    pub dino_ratio: Option<f64>,
}

/// The thresholds the rules use: the protocol's own effect size and gate ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Thresholds {
    /// The smallest AUC difference the protocol calls a gain (its `min_mean_gain`).
    pub min_gain: f64,
    /// The backbone gate's DINO loss / ln K.
    pub max_loss_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Holds,
    Fails,
    NotYet,
}

/// One ingredient's evidence, rule and verdict (`docs/results/diagnosis.json` holds the list).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Finding {
    pub ingredient: &'static str,
    pub evidence: String,
    pub rule: String,
    pub verdict: Verdict,
}

fn verdict(fails: Option<bool>) -> Verdict {
    match fails {
        None => Verdict::NotYet,
        Some(true) => Verdict::Fails,
        Some(false) => Verdict::Holds,
    }
}

/// Judges each ingredient from `e`.
pub(super) fn judge(e: &Evidence, th: Thresholds) -> Vec<Finding> {
    let g = th.min_gain;
    let mut out = Vec::new();
    if let Some((passed, ratio, gain)) = e.gate {
        out.push(Finding {
            ingredient: "backbone",
            evidence: format!(
                "DINO loss {ratio:.2} ln K; k-NN probe {gain:+.3} AUC over random weights"
            ),
            rule: "the declared backbone gate".into(),
            verdict: verdict(Some(!passed)),
        });
    }
    let room = e.control_room;
    out.push(Finding {
        ingredient: "initial model (the first teacher)",
        evidence: format!(
            "validation AUC {}; the labeled-only control, on the same labels, changes it by {} by the last step",
            fmt(e.initial_val),
            room.map_or("-".into(), |r| format!("{r:+.3}"))
        ),
        rule: format!("fails when more updates on the labeled set alone gain at least {g} validation AUC: the teacher is under-trained"),
        verdict: verdict(room.map(|r| r >= g)),
    });
    let pseudo_fails = match (e.pseudo_auc, e.self_training_ratio) {
        (Some(a), Some(s)) => Some(a < 0.5 + g || s >= FLAT_TARGET_RATIO),
        (Some(a), None) => Some(a < 0.5 + g),
        _ => None,
    };
    out.push(Finding {
        ingredient: "pseudo-labels",
        evidence: format!(
            "AUC on the folds {}; mean soft label {}; self-training loss {} ln 2",
            fmt(e.pseudo_auc),
            fmt(e.pseudo_mean),
            e.self_training_ratio
                .map_or("-".into(), |s| format!("{s:.3}"))
        ),
        rule: format!("fails when they rank the folds below {:.2} AUC or the self-training loss is at least {FLAT_TARGET_RATIO} ln 2 (targets near 0.5)", 0.5 + g),
        verdict: verdict(pseudo_fails),
    });
    out.push(Finding {
        ingredient: "DINO in the steps",
        evidence: format!(
            "DINO loss {} ln K in the last epoch",
            e.dino_ratio.map_or("-".into(), |d| format!("{d:.2}"))
        ),
        rule: format!(
            "fails above {} ln K, the gate's bound: the teacher's output stays near uniform",
            th.max_loss_ratio
        ),
        verdict: verdict(e.dino_ratio.map(|d| d > th.max_loss_ratio)),
    });
    let complete = !e.step_changes.is_empty() && e.step_changes.iter().all(Option::is_some);
    let changes: Vec<f64> = e.step_changes.iter().flatten().copied().collect();
    let net: f64 = changes.iter().sum();
    let worst = changes.iter().copied().fold(f64::INFINITY, f64::min);
    out.push(Finding {
        ingredient: "the steps' drift",
        evidence: if changes.is_empty() {
            "no step scored yet".into()
        } else {
            format!(
                "student validation AUC change per step {}; net {net:+.3}",
                e.step_changes
                    .iter()
                    .map(|c| c.map_or("-".into(), |c| format!("{c:+.3}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        rule: format!("fails when a step loses at least {g} validation AUC or all steps together gain less than {g}"),
        verdict: verdict(complete.then_some(worst <= -g || net < g)),
    });
    out
}

/// Reads the evidence of the seeds run so far.
pub(super) fn gather(r: &Report) -> anyhow::Result<Evidence> {
    let p = r.protocol;
    let k = p.data.folds;
    let ln_k = (p.train_config(&[])?.model.out_dim as f64).ln();
    let val = |seed, name: &str| r.auc(seed, Subset::Val, name);
    let gate = read_gate(r)?;
    let over_seeds =
        |f: &dyn Fn(u64) -> Option<f64>| mean(&p.seeds.iter().map(|&s| f(s)).collect::<Vec<_>>());
    let mut e = Evidence {
        gate: gate.map(|g| (g.passed, g.loss_ratio, g.gain())),
        initial_val: over_seeds(&|s| val(s, "distl-T0")),
        control_room: if p.baselines.control {
            over_seeds(&|s| Some(val(s, &format!("control-T{k}"))? - val(s, "distl-T0")?))
        } else {
            None
        },
        ..Evidence::default()
    };
    e.step_changes = (1..=k)
        .map(|t| {
            over_seeds(&|s| {
                Some(val(s, &format!("distl-T{t}"))? - val(s, &format!("distl-T{}", t - 1))?)
            })
        })
        .collect();
    let (mut auc, mut soft, mut st, mut dino) = (vec![], vec![], vec![], vec![]);
    for &seed in &p.seeds {
        for t in 1..=k {
            for row in last_epoch_audit(r, seed, t) {
                auc.push(Some(row.auc));
                soft.push(Some(row.mean_pseudo_label));
            }
            if let Some(recs) = step_log(r, seed, t) {
                st.push(
                    last_epoch_mean(&recs, |x| x.self_training).map(|v| v / std::f64::consts::LN_2),
                );
                dino.push(last_epoch_mean(&recs, |x| x.dino).map(|v| v / ln_k));
            }
        }
    }
    e.pseudo_auc = mean(&auc);
    e.pseudo_mean = mean(&soft);
    e.self_training_ratio = mean(&st);
    e.dino_ratio = mean(&dino);
    Ok(e)
}

/// The section (one row per ingredient and the list of those that fail) and its findings.
pub(super) fn diagnosis(r: &Report) -> anyhow::Result<(String, Vec<Finding>)> {
    let th = Thresholds {
        min_gain: r.protocol.criteria.min_mean_gain,
        max_loss_ratio: r
            .protocol
            .backbone
            .as_ref()
            .map_or(DEFAULT_MAX_LOSS_RATIO, |b| b.gate.max_loss_ratio),
    };
    let findings = judge(&gather(r)?, th);
    let mut s = String::from("## Which ingredient fails\n\nEach ingredient judged by a stated rule on the validation split, the backbone gate, the\npseudo-label audit and the training logs (means over the seeds run so far); no test-set\nnumber enters. These rules are the report's reading of the evidence, not part of the\npre-registered success criteria.\n\n| ingredient | evidence | rule | verdict |\n|---|---|---|---|\n");
    for f in &findings {
        let v = match f.verdict {
            Verdict::Holds => "holds",
            Verdict::Fails => "**fails**",
            Verdict::NotYet => "not measured yet",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {v} |",
            f.ingredient, f.evidence, f.rule
        );
    }
    let failing: Vec<&str> = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fails)
        .map(|f| f.ingredient)
        .collect();
    let _ = writeln!(
        s,
        "\n{}",
        if failing.is_empty() {
            "No ingredient fails its rule on validation.".to_string()
        } else {
            format!("Failing: {}.", failing.join("; "))
        }
    );
    Ok((s, findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TH: Thresholds = Thresholds {
        min_gain: 0.03,
        max_loss_ratio: 0.8,
    };

    fn healthy() -> Evidence {
        Evidence {
            gate: Some((true, 0.6, 0.10)),
            initial_val: Some(0.90),
            control_room: Some(0.01),
            step_changes: vec![Some(0.02), Some(0.01), Some(0.01)],
            pseudo_auc: Some(0.90),
            pseudo_mean: Some(0.70),
            self_training_ratio: Some(0.70),
            dino_ratio: Some(0.5),
        }
    }

    fn failing(e: &Evidence) -> Vec<&'static str> {
        judge(e, TH)
            .into_iter()
            .filter(|f| f.verdict == Verdict::Fails)
            .map(|f| f.ingredient)
            .collect()
    }

    #[test]
    fn a_healthy_run_fails_nothing() {
        assert!(failing(&healthy()).is_empty());
    }

    #[test]
    fn each_rule_names_its_own_ingredient() {
        let mut e = healthy();
        e.gate = Some((false, 0.93, 0.014));
        assert_eq!(failing(&e), ["backbone"]);
        let mut e = healthy();
        e.control_room = Some(0.05);
        assert_eq!(failing(&e), ["initial model (the first teacher)"]);
        let mut e = healthy();
        e.self_training_ratio = Some(0.999);
        assert_eq!(failing(&e), ["pseudo-labels"]);
        let mut e = healthy();
        e.pseudo_auc = Some(0.52);
        assert_eq!(failing(&e), ["pseudo-labels"]);
        let mut e = healthy();
        e.dino_ratio = Some(0.96);
        assert_eq!(failing(&e), ["DINO in the steps"]);
        let mut e = healthy();
        e.step_changes = vec![Some(0.05), Some(-0.04), Some(0.03)];
        assert_eq!(failing(&e), ["the steps' drift"]);
        let mut e = healthy();
        e.step_changes = vec![Some(0.01), Some(0.0), Some(0.01)];
        assert_eq!(failing(&e), ["the steps' drift"]);
    }

    #[test]
    fn missing_evidence_is_not_yet_measured_never_a_verdict() {
        let e = Evidence {
            step_changes: vec![Some(-0.2), None, None],
            ..Evidence::default()
        };
        let findings = judge(&e, TH);
        assert!(findings.iter().all(|f| f.verdict == Verdict::NotYet));
        assert!(!findings.iter().any(|f| f.ingredient == "backbone"));
    }
}
