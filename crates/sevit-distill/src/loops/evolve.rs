//! The whole curriculum: the initial model, then DISTL steps T = 1..k, each evaluated on the
//! test split, with a per-T summary.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sevit_correction::Curriculum;
use sevit_data::{Split, Subset};

use super::distl::distill;
use super::supervised::{pretrain, PretrainOptions};
use crate::config::{TrainConfig, Weights};
use crate::layout::{stage_name, write_atomic, RunLayout};
use crate::scoring::test_auc;
use crate::trainer::{is_complete, RunOptions};

/// Options of [`evolve`].
#[derive(Debug, Clone, Default)]
pub struct EvolveOptions {
    /// How the initial model is trained when `RUN/pretrain/` is absent (its `run` field is
    /// replaced by [`EvolveOptions::run`]).
    pub pretrain: PretrainOptions,
    /// Resume / stop options, applied to every stage.
    pub run: RunOptions,
    /// Last step T to run (default: every fold, T = k).
    pub until: Option<usize>,
}

/// One row of `summary.json` / `summary.csv`: the test AUC after step T (T = 0 is the initial
/// model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Time step.
    pub t: usize,
    /// Stage directory.
    pub stage: String,
    /// Network evaluated (`student` / `teacher`).
    pub weights: Weights,
    /// Labeled images.
    pub n_labeled: usize,
    /// Unlabeled images used by the step.
    pub n_unlabeled: usize,
    /// Test images.
    pub n_test: usize,
    /// Test ROC AUC.
    pub auc: f64,
    /// Lower bound of the DeLong interval.
    pub auc_lower: f64,
    /// Upper bound of the DeLong interval.
    pub auc_upper: f64,
    /// DeLong variance of the AUC.
    pub auc_variance: f64,
    /// Confidence level of the interval.
    pub level: f64,
}

/// Runs (or finishes) the curriculum of run `run`: the initial model when `pretrain/` is not
/// complete, then T = 1..k (stages already complete are kept), evaluating each on the test
/// split and rewriting `summary.json` / `summary.csv` after each. Returns the summary rows.
/// Stops early (returning the rows so far) when a stage stops before its last epoch.
pub fn evolve(
    run: &RunLayout,
    cfg: &TrainConfig,
    opts: &EvolveOptions,
) -> anyhow::Result<Vec<SummaryRow>> {
    let split = Split::read_csv(&run.split_csv()).with_context(|| {
        format!(
            "reading the split of run {} (run `sevit split` first)",
            run.root.display()
        )
    })?;
    let k = split.num_folds();
    let until = opts.until.unwrap_or(k);
    anyhow::ensure!(until <= k, "--until {until} but the split has {k} folds");
    let curriculum = Curriculum::new(k)?;
    let test = split.samples(Subset::Test);
    anyhow::ensure!(
        !test.is_empty(),
        "the split of {} has no test images",
        run.root.display()
    );
    let n_labeled = split.samples(Subset::Labeled).len();
    let mut rows: Vec<SummaryRow> = read_summary(run)?;

    let mut stages = vec![(0usize, stage_name::PRETRAIN.to_string())];
    stages.extend(curriculum.steps().take(until).map(|s| (s.t, s.dir_name())));
    for (t, stage) in stages {
        let ck = run.checkpoint(&stage);
        if is_complete(&ck)? {
            tracing::info!(stage, "already complete, kept");
        } else {
            let outcome = if t == 0 {
                let mut p = opts.pretrain.clone();
                p.label_folds = 0;
                p.run = opts.run.clone();
                pretrain(run, cfg, &p)?
            } else {
                distill(run, cfg, t, &opts.run)?
            };
            if !outcome.complete {
                tracing::warn!(
                    stage,
                    epochs = outcome.epochs_done,
                    "stage stopped before its last epoch; evolve stops"
                );
                return Ok(rows);
            }
        }
        let ci = test_auc(&ck, cfg, &test)?;
        let row = SummaryRow {
            t,
            stage: stage.clone(),
            weights: cfg.eval.weights,
            n_labeled,
            n_unlabeled: if t == 0 {
                0
            } else {
                split.unlabeled_upto(t).len()
            },
            n_test: test.len(),
            auc: ci.auc,
            auc_lower: ci.lower,
            auc_upper: ci.upper,
            auc_variance: ci.variance,
            level: ci.level,
        };
        tracing::info!(
            t,
            auc = format!("{:.4}", row.auc),
            lower = format!("{:.4}", row.auc_lower),
            upper = format!("{:.4}", row.auc_upper),
            "test AUC"
        );
        rows.retain(|r| r.t != t);
        rows.push(row);
        rows.sort_by_key(|r| r.t);
        // Every rank evaluates (the same numbers; they stay in step), rank 0 writes.
        if opts.run.dist.as_ref().is_none_or(|d| d.is_main()) {
            write_summary(run, &rows)?;
        }
    }
    Ok(rows)
}

/// Reads `summary.json` (empty when absent).
pub fn read_summary(run: &RunLayout) -> anyhow::Result<Vec<SummaryRow>> {
    let p = run.summary_json();
    if !p.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Writes `summary.json` and `summary.csv` atomically.
pub fn write_summary(run: &RunLayout, rows: &[SummaryRow]) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(rows)?;
    write_atomic(&run.summary_json(), json.as_bytes())?;
    let mut csv = String::from(
        "t,stage,weights,n_labeled,n_unlabeled,n_test,auc,auc_lower,auc_upper,auc_variance,level\n",
    );
    for r in rows {
        let w = r.weights.name();
        csv.push_str(&format!(
            "{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.8},{}\n",
            r.t,
            r.stage,
            w,
            r.n_labeled,
            r.n_unlabeled,
            r.n_test,
            r.auc,
            r.auc_lower,
            r.auc_upper,
            r.auc_variance,
            r.level
        ));
    }
    write_atomic(&run.summary_csv(), csv.as_bytes())
}
