//! The DISTL-versus-supervised experiment over several seeds: per-seed AUCs with DeLong CIs,
//! Youden operating points, paired DeLong tests (DISTL against the supervised model trained
//! with labels on the same images, and DISTL at `T` against its initial model), the mean and
//! standard deviation over seeds, and `results.md` / `results.json` / CSV / the AUC-vs-T plot.
//!
//! Layout read by [`collect`] (written by `scripts/experiment.sh`):
//!
//! ```text
//! EXP/seed-<s>/eval/distl-T<t>/predictions.csv       t = 0 is the initial model
//! EXP/seed-<s>/eval/supervised-T<t>/predictions.csv  t >= 1: labels on the labeled set + folds 1..t
//! EXP/seed-<s>/eval/control-T<t>/predictions.csv     t >= 1, optional: the labeled-only control
//! ```
//!
//! The supervised model at `T = 0` is the initial model itself (labels on the labeled set
//! only), so the arms share that point. The optional control arm is the initial model trained
//! further on the labeled set alone for as many updates as DISTL step `T`: it separates what
//! the unlabeled images bring from what more training brings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use sevit_metrics::io::write_atomic;
use sevit_metrics::pairing::pair_predictions;
use sevit_metrics::{
    delong_ci, delong_paired_level, read_predictions_csv, youden_threshold, AucCi, PairedTest,
    Predictions, ThresholdMetrics,
};
use sevit_render::plot::{auc_vs_t_png, Series, SeriesPoint};

/// The two kinds of model the experiment compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The DISTL curriculum: initial model (`T = 0`), then a DISTL step per unlabeled fold.
    Distl,
    /// Supervised with labels on the labeled set plus folds `1..T`.
    Supervised,
    /// The initial model trained further on the labeled set alone, as many updates as DISTL
    /// step `T` made (optional).
    Control,
}

impl Arm {
    /// The name used in directory names and tables.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Distl => "distl",
            Arm::Supervised => "supervised",
            Arm::Control => "control",
        }
    }
}

/// One model's test predictions in the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Seed of the split and of training.
    pub seed: u64,
    /// Which arm.
    pub arm: Arm,
    /// DISTL step (or number of labeled folds for the supervised arm).
    pub t: usize,
    /// Its `predictions.csv`.
    pub predictions: PathBuf,
}

/// Finds every `EXP/seed-<s>/eval/<arm>-T<t>/predictions.csv` (see the module docs).
///
/// # Errors
/// `exp` unreadable, or no predictions at all.
pub fn collect(exp: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(exp)
        .with_context(|| format!("reading the experiment directory {}", exp.display()))?;
    for seed_dir in rd {
        let seed_dir = seed_dir?.path();
        let Some(seed) = seed_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("seed-"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let eval = seed_dir.join("eval");
        let Ok(models) = std::fs::read_dir(&eval) else {
            continue;
        };
        for m in models {
            let m = m?.path();
            let Some(name) = m.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((arm, t)) = parse_model_dir(name) else {
                continue;
            };
            let predictions = m.join("predictions.csv");
            if predictions.is_file() {
                out.push(Entry {
                    seed,
                    arm,
                    t,
                    predictions,
                });
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no predictions under {}: expected seed-<s>/eval/<distl|supervised>-T<t>/predictions.csv (run `just experiment`)",
            exp.display()
        );
    }
    out.sort_by_key(|e| (e.seed, e.arm, e.t));
    Ok(out)
}

fn parse_model_dir(name: &str) -> Option<(Arm, usize)> {
    let (arm, t) = name.split_once("-T")?;
    let arm = match arm {
        "distl" => Arm::Distl,
        "supervised" => Arm::Supervised,
        "control" => Arm::Control,
        _ => return None,
    };
    Some((arm, t.parse().ok()?))
}

/// One model of one seed on the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// Seed.
    pub seed: u64,
    /// Arm.
    pub arm: Arm,
    /// Step `T`.
    pub t: usize,
    /// Test cases.
    pub n: usize,
    /// AUC with its DeLong CI.
    pub auc: AucCi,
    /// The Youden-optimal operating point on the test set.
    pub youden: ThresholdMetrics,
}

/// A paired DeLong test of two models of one seed on the same test cases (A − B).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedResult {
    /// Seed.
    pub seed: u64,
    /// Step `T` of model A.
    pub t: usize,
    /// What is compared, e.g. `"DISTL T=2 vs supervised T=2"`.
    pub label: String,
    /// The test.
    pub test: PairedTest,
}

/// Mean and sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`n − 1`); 0 for one value.
    pub sd: f64,
    /// Number of values.
    pub n: usize,
}

impl MeanSd {
    /// Mean and sample standard deviation of `v` (NaN mean when empty).
    pub fn of(v: &[f64]) -> Self {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        MeanSd { mean, sd, n }
    }
}

/// One row of the over-seeds table: an arm at one `T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateRow {
    /// Arm.
    pub arm: Arm,
    /// Step `T`.
    pub t: usize,
    /// AUC over seeds.
    pub auc: MeanSd,
    /// Sensitivity at the Youden threshold over seeds.
    pub sensitivity: MeanSd,
    /// Specificity at the Youden threshold over seeds.
    pub specificity: MeanSd,
}

/// One of the issue's acceptance targets, checked per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// The target in words.
    pub target: String,
    /// Seeds meeting it.
    pub met: usize,
    /// Seeds checked.
    pub of: usize,
}

/// Everything the experiment report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// Confidence level of every interval.
    pub level: f64,
    /// Seeds found.
    pub seeds: Vec<u64>,
    /// Per seed, arm and `T`.
    pub models: Vec<ModelResult>,
    /// DISTL at `T` against the supervised model with labels on the same images, per seed.
    pub distl_vs_supervised: Vec<PairedResult>,
    /// DISTL at `T` against the initial model (`T = 0`), per seed.
    pub distl_vs_initial: Vec<PairedResult>,
    /// DISTL at `T` against the labeled-only control at `T`, per seed (empty without one).
    #[serde(default)]
    pub distl_vs_control: Vec<PairedResult>,
    /// Mean ± sd over seeds per arm and `T`.
    pub aggregate: Vec<AggregateRow>,
    /// The acceptance targets.
    pub targets: Vec<TargetCheck>,
}

/// Computes the [`ExperimentResults`] of `entries` at confidence `level`.
///
/// # Errors
/// An unreadable predictions file; two models of one seed scored on different cases; a seed
/// without the initial model (`distl-T0`); degenerate scores (one class, NaN).
pub fn summarize(entries: &[Entry], level: f64) -> anyhow::Result<ExperimentResults> {
    let mut preds: BTreeMap<(u64, Arm, usize), Predictions> = BTreeMap::new();
    for e in entries {
        let p = read_predictions_csv(&e.predictions)?;
        preds.insert((e.seed, e.arm, e.t), p);
    }
    // The supervised arm (and the control, where there is one) at T = 0 is the initial model.
    let seeds: BTreeSet<u64> = entries.iter().map(|e| e.seed).collect();
    let with_control: BTreeSet<u64> = entries
        .iter()
        .filter(|e| e.arm == Arm::Control)
        .map(|e| e.seed)
        .collect();
    for &s in &seeds {
        let init = preds.get(&(s, Arm::Distl, 0)).cloned().with_context(|| {
            format!("seed {s}: no initial model predictions (eval/distl-T0/predictions.csv)")
        })?;
        if with_control.contains(&s) {
            preds.entry((s, Arm::Control, 0)).or_insert(init.clone());
        }
        preds.entry((s, Arm::Supervised, 0)).or_insert(init);
    }
    let mut models = Vec::new();
    for (&(seed, arm, t), p) in &preds {
        let ctx = || format!("seed {seed}, {} T={t}", arm.name());
        models.push(ModelResult {
            seed,
            arm,
            t,
            n: p.labels.len(),
            auc: delong_ci(&p.labels, &p.scores, level).with_context(ctx)?,
            youden: youden_threshold(&p.labels, &p.scores).with_context(ctx)?,
        });
    }
    let mut distl_vs_supervised = Vec::new();
    let mut distl_vs_initial = Vec::new();
    let mut distl_vs_control = Vec::new();
    for (&(seed, arm, t), p) in &preds {
        if arm != Arm::Distl || t == 0 {
            continue;
        }
        if let Some(sup) = preds.get(&(seed, Arm::Supervised, t)) {
            distl_vs_supervised.push(paired(
                seed,
                t,
                format!("DISTL T={t} vs supervised T={t}"),
                p,
                sup,
                level,
            )?);
        }
        if let Some(ctl) = preds.get(&(seed, Arm::Control, t)) {
            distl_vs_control.push(paired(
                seed,
                t,
                format!("DISTL T={t} vs control T={t}"),
                p,
                ctl,
                level,
            )?);
        }
        let init = &preds[&(seed, Arm::Distl, 0)];
        distl_vs_initial.push(paired(
            seed,
            t,
            format!("DISTL T={t} vs initial (T=0)"),
            p,
            init,
            level,
        )?);
    }
    let mut aggregate = Vec::new();
    let keys: BTreeSet<(Arm, usize)> = models.iter().map(|m| (m.arm, m.t)).collect();
    for (arm, t) in keys {
        let ms: Vec<&ModelResult> = models.iter().filter(|m| m.arm == arm && m.t == t).collect();
        let pick = |f: &dyn Fn(&ModelResult) -> f64| {
            MeanSd::of(&ms.iter().map(|m| f(m)).collect::<Vec<_>>())
        };
        aggregate.push(AggregateRow {
            arm,
            t,
            auc: pick(&|m| m.auc.auc),
            sensitivity: pick(&|m| m.youden.sensitivity),
            specificity: pick(&|m| m.youden.specificity),
        });
    }
    let targets = targets(&seeds, &models, &distl_vs_initial);
    Ok(ExperimentResults {
        level,
        seeds: seeds.into_iter().collect(),
        models,
        distl_vs_supervised,
        distl_vs_initial,
        distl_vs_control,
        aggregate,
        targets,
    })
}

fn paired(
    seed: u64,
    t: usize,
    label: String,
    a: &Predictions,
    b: &Predictions,
    level: f64,
) -> anyhow::Result<PairedResult> {
    let (_, labels, a_scores, b_scores) = pair_predictions(a, b, "model A", "model B")
        .with_context(|| format!("seed {seed}: {label}"))?;
    let test = delong_paired_level(&labels, &a_scores, &b_scores, level)
        .with_context(|| format!("seed {seed}: {label}"))?;
    Ok(PairedResult {
        seed,
        t,
        label,
        test,
    })
}

fn targets(
    seeds: &BTreeSet<u64>,
    models: &[ModelResult],
    vs_initial: &[PairedResult],
) -> Vec<TargetCheck> {
    let auc = |s: u64, arm: Arm, t: usize| {
        models
            .iter()
            .find(|m| m.seed == s && m.arm == arm && m.t == t)
            .map(|m| m.auc.auc)
    };
    let t_max = models.iter().map(|m| m.t).max().unwrap_or(0);
    let mut gain = 0;
    let mut distl_ge_sup = 0;
    let mut distl_ge_init = 0;
    for &s in seeds {
        if vs_initial
            .iter()
            .any(|p| p.seed == s && p.t == t_max && p.test.diff >= 0.03 && p.test.p_value < 0.05)
        {
            gain += 1;
        }
        let steps: Vec<usize> = (1..=t_max).collect();
        let all = |other: Arm, other_t: &dyn Fn(usize) -> usize| {
            steps.iter().all(
                |&t| match (auc(s, Arm::Distl, t), auc(s, other, other_t(t))) {
                    (Some(d), Some(o)) => d >= o,
                    _ => false,
                },
            )
        };
        if all(Arm::Supervised, &|t| t) {
            distl_ge_sup += 1;
        }
        if all(Arm::Distl, &|_| 0) {
            distl_ge_init += 1;
        }
    }
    let of = seeds.len();
    vec![
        TargetCheck {
            target: format!("AUC(T={t_max}) - AUC(T=0) >= 0.03 with paired DeLong p < 0.05"),
            met: gain,
            of,
        },
        TargetCheck {
            target: "DISTL >= supervised with the same labeled count (10%, the initial model) at every T >= 1".into(),
            met: distl_ge_init,
            of,
        },
        TargetCheck {
            target: "DISTL >= supervised with labels on the same images at every T >= 1".into(),
            met: distl_ge_sup,
            of,
        },
    ]
}

/// Extra content of `results.md` besides the generated tables.
#[derive(Debug, Clone, Default)]
pub struct MarkdownOptions {
    /// Title (first heading).
    pub title: String,
    /// Markdown placed before the tables (setup, commands, data).
    pub preamble: String,
    /// Path of the AUC-vs-T plot, relative to the markdown file.
    pub plot: Option<String>,
    /// Attention-map grids: (`T`, image path relative to the markdown file), shown in a table.
    pub attention: Vec<(usize, String)>,
    /// Markdown placed after the tables (discussion, what was tried).
    pub appendix: String,
}

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".into()
    }
}

fn pval(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

impl ExperimentResults {
    /// The experiment as Markdown: targets, the over-seeds table, per-seed AUCs with CIs and
    /// Youden points, the paired tests, the plot and attention maps.
    pub fn to_markdown(&self, opts: &MarkdownOptions) -> String {
        let pct = (self.level * 100.0).round();
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n", opts.title);
        s.push_str(
            "<!-- Generated by `just experiment` (sevit experiment-report); do not edit by hand. -->\n\n",
        );
        s.push_str(&self.verdict());
        if !opts.preamble.is_empty() {
            s.push_str(opts.preamble.trim_end());
            s.push_str("\n\n");
        }
        let _ = writeln!(
            s,
            "## Acceptance targets\n\n| target | seeds meeting it |\n|---|---|"
        );
        for t in &self.targets {
            let _ = writeln!(s, "| {} | {} of {} |", t.target, t.met, t.of);
        }
        let _ = writeln!(
            s,
            "\n## Test AUC over {} seed(s) (mean ± sd)\n",
            self.seeds.len()
        );
        let control = self.aggregate.iter().any(|r| r.arm == Arm::Control);
        let _ = writeln!(
            s,
            "| T | DISTL AUC | supervised AUC |{} DISTL sens / spec (Youden) | supervised sens / spec (Youden) |\n|---|---|---|{}---|---|",
            if control { " labeled-only control AUC |" } else { "" },
            if control { "---|" } else { "" }
        );
        let ts: BTreeSet<usize> = self.aggregate.iter().map(|r| r.t).collect();
        let row = |arm: Arm, t: usize| self.aggregate.iter().find(|r| r.arm == arm && r.t == t);
        let ms = |m: &MeanSd| format!("{} ± {}", f3(m.mean), f3(m.sd));
        for &t in &ts {
            let cell = |arm| row(arm, t).map_or("–".to_string(), |r| ms(&r.auc));
            let ss = |arm| {
                row(arm, t).map_or("–".to_string(), |r| {
                    format!("{} / {}", f3(r.sensitivity.mean), f3(r.specificity.mean))
                })
            };
            let control_cell = if control {
                format!(" {} |", cell(Arm::Control))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {t} | {} | {} |{control_cell} {} | {} |",
                cell(Arm::Distl),
                cell(Arm::Supervised),
                ss(Arm::Distl),
                ss(Arm::Supervised)
            );
        }
        s.push_str("\nAt T = 0 every arm is the initial model (labels on the labeled 10% only).");
        if control {
            s.push_str(
                " The labeled-only control at T is the initial model trained further on the \
                 labeled 10% alone, for as many updates as DISTL step T made.",
            );
        }
        s.push('\n');
        if let Some(p) = &opts.plot {
            let _ = writeln!(
                s,
                "\n![AUC against T: mean over seeds, error bars ± 1 sd]({p})\n"
            );
        }
        let _ = writeln!(
            s,
            "## Per seed: AUC with DeLong {pct:.0}% CI, Youden operating point\n\n| seed | model | T | AUC | {pct:.0}% CI | threshold | sensitivity | specificity |\n|---|---|---|---|---|---|---|---|"
        );
        for m in &self.models {
            if m.arm != Arm::Distl && m.t == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}–{} | {} | {} | {} |",
                m.seed,
                m.arm.name(),
                m.t,
                f3(m.auc.auc),
                f3(m.auc.lower),
                f3(m.auc.upper),
                f3(m.youden.threshold),
                f3(m.youden.sensitivity),
                f3(m.youden.specificity)
            );
        }
        for (title, rows) in [
            (
                "Paired DeLong test: DISTL vs supervised with labels on the same images",
                &self.distl_vs_supervised,
            ),
            (
                "Paired DeLong test: DISTL at T vs the initial model",
                &self.distl_vs_initial,
            ),
            (
                "Paired DeLong test: DISTL vs the labeled-only control",
                &self.distl_vs_control,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "\n## {title}\n\n| seed | comparison | AUC A | AUC B | A − B | {pct:.0}% CI of A − B | p |\n|---|---|---|---|---|---|---|"
            );
            for p in rows {
                let t = &p.test;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:+.3} | {:+.3} to {:+.3} | {} |",
                    p.seed,
                    p.label,
                    f3(t.auc_a),
                    f3(t.auc_b),
                    t.diff,
                    t.ci_diff.0,
                    t.ci_diff.1,
                    pval(t.p_value)
                );
            }
        }
        if !opts.attention.is_empty() {
            s.push_str("\n## Attention maps of the same test images at T = 0..3 (seed of the first run)\n\n");
            s.push_str("Last-layer CLS attention of the student, per head and averaged, over the inference view.\n\n");
            let steps: BTreeSet<usize> = opts.attention.iter().map(|(t, _)| *t).collect();
            for t in steps {
                let _ = write!(s, "**T = {t}**\n\n");
                for (_, path) in opts.attention.iter().filter(|(u, _)| *u == t) {
                    let _ = write!(s, "![attention T={t}]({path}) ");
                }
                s.push_str("\n\n");
            }
        }
        if !opts.appendix.is_empty() {
            s.push('\n');
            s.push_str(opts.appendix.trim_end());
            s.push('\n');
        }
        s
    }

    /// A short regenerated summary: the mean change of AUC from `T = 0` to the last step, and
    /// how often DISTL was at least the supervised model with labels on the same images (and
    /// the labeled-only control, when there is one).
    pub fn verdict(&self) -> String {
        let t_max = self.models.iter().map(|m| m.t).max().unwrap_or(0);
        let mut s = String::from("## Summary\n\n");
        let gains: Vec<f64> = self
            .distl_vs_initial
            .iter()
            .filter(|p| p.t == t_max)
            .map(|p| p.test.diff)
            .collect();
        if !gains.is_empty() {
            let m = MeanSd::of(&gains);
            let per_seed: Vec<String> = gains.iter().map(|g| format!("{g:+.3}")).collect();
            let _ = writeln!(
                s,
                "* AUC(T={t_max}) − AUC(T=0) of DISTL: {:+.3} ± {:.3} over {} seed(s) (per seed: {}).",
                m.mean,
                m.sd,
                m.n,
                per_seed.join(", ")
            );
        }
        for (rows, other) in [
            (
                &self.distl_vs_supervised,
                "the supervised model with labels on the same images",
            ),
            (
                &self.distl_vs_control,
                "the labeled-only control (as many more updates on the labeled images alone)",
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let significant = |p: &&PairedResult| p.test.p_value < 1.0 - self.level;
            let ge = rows.iter().filter(|p| p.test.diff >= 0.0).count();
            let better = rows
                .iter()
                .filter(|p| p.test.diff > 0.0)
                .filter(significant)
                .count();
            let worse = rows
                .iter()
                .filter(|p| p.test.diff < 0.0)
                .filter(significant)
                .count();
            let _ = writeln!(
                s,
                "* DISTL ≥ {other} in {ge} of {} (seed, T) comparisons; significantly better (paired DeLong p < {:.2}) in {better}, significantly worse in {worse}.",
                rows.len(),
                1.0 - self.level
            );
        }
        let met = self.targets.iter().all(|t| t.met == t.of && t.of > 0);
        let _ = writeln!(
            s,
            "* The claim is {} here (targets below).\n",
            if met { "reproduced" } else { "not reproduced" }
        );
        s
    }

    /// One CSV row per model: `seed,arm,t,n,auc,auc_lower,auc_upper,youden_threshold,sensitivity,specificity`.
    pub fn models_csv(&self) -> String {
        let mut s = String::from(
            "seed,arm,t,n,auc,auc_lower,auc_upper,youden_threshold,sensitivity,specificity\n",
        );
        for m in &self.models {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{}",
                m.seed,
                m.arm.name(),
                m.t,
                m.n,
                m.auc.auc,
                m.auc.lower,
                m.auc.upper,
                m.youden.threshold,
                m.youden.sensitivity,
                m.youden.specificity
            );
        }
        s
    }

    /// One CSV row per paired test: `seed,t,comparison,auc_a,auc_b,diff,ci_lower,ci_upper,z,p`.
    pub fn paired_csv(&self) -> String {
        let mut s = String::from("seed,t,comparison,auc_a,auc_b,diff,ci_lower,ci_upper,z,p\n");
        for p in self
            .distl_vs_supervised
            .iter()
            .chain(&self.distl_vs_initial)
            .chain(&self.distl_vs_control)
        {
            let t = &p.test;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{}",
                p.seed,
                p.t,
                p.label,
                t.auc_a,
                t.auc_b,
                t.diff,
                t.ci_diff.0,
                t.ci_diff.1,
                t.z,
                t.p_value
            );
        }
        s
    }

    /// The AUC-vs-T series: mean over seeds with ± 1 sd error bars (the DeLong CI when there
    /// is a single seed).
    pub fn auc_series(&self) -> Vec<Series> {
        [Arm::Distl, Arm::Supervised, Arm::Control]
            .into_iter()
            .filter_map(|arm| {
                let points: Vec<SeriesPoint> = self
                    .aggregate
                    .iter()
                    .filter(|r| r.arm == arm)
                    .map(|r| {
                        let (lo, hi) = if r.auc.n > 1 {
                            (r.auc.mean - r.auc.sd, r.auc.mean + r.auc.sd)
                        } else {
                            self.models
                                .iter()
                                .find(|m| m.arm == arm && m.t == r.t)
                                .map_or((r.auc.mean, r.auc.mean), |m| (m.auc.lower, m.auc.upper))
                        };
                        SeriesPoint {
                            x: r.t as f64,
                            y: r.auc.mean,
                            lower: Some(lo),
                            upper: Some(hi),
                        }
                    })
                    .collect();
                (!points.is_empty()).then(|| Series {
                    label: match arm {
                        Arm::Distl => "DISTL".into(),
                        Arm::Supervised => "supervised, labels on the same images".into(),
                        Arm::Control => "labeled-only control, as many updates".into(),
                    },
                    points,
                })
            })
            .collect()
    }

    /// Writes `results.json`, `models.csv`, `paired.csv` and `auc_vs_t.png` into `dir`
    /// (atomically).
    pub fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
        write_atomic(
            &dir.join("results.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        write_atomic(&dir.join("models.csv"), self.models_csv().as_bytes())?;
        write_atomic(&dir.join("paired.csv"), self.paired_csv().as_bytes())?;
        auc_vs_t_png(
            &dir.join("auc_vs_t.png"),
            &if self.seeds.len() == 1 {
                format!(
                    "Test AUC against T (DeLong {:.0}% CI, 1 seed)",
                    self.level * 100.0
                )
            } else {
                format!(
                    "Test AUC against T (mean ± sd over {} seeds)",
                    self.seeds.len()
                )
            },
            &self.auc_series(),
        )
    }
}

/// What [`write_report`] reads and writes.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// The experiment directory (see the module docs for its layout).
    pub exp: PathBuf,
    /// The Markdown file to write (e.g. `docs/results.md`).
    pub out: PathBuf,
    /// Folder for the JSON, CSV and plot (e.g. `docs/results`).
    pub assets: PathBuf,
    /// Title of the Markdown.
    pub title: String,
    /// Markdown files placed before the tables, in order.
    pub preamble: Vec<PathBuf>,
    /// Markdown files placed after the tables, in order.
    pub appendix: Vec<PathBuf>,
    /// Folder holding one sub-folder `T<t>` of attention PNGs per step (the same images).
    pub attention: Option<PathBuf>,
    /// Confidence level.
    pub level: f64,
}

/// Collects the experiment, computes its results and writes `spec.out` with the JSON, CSV and
/// plot in `spec.assets`; returns the results.
///
/// # Errors
/// As [`collect`] and [`summarize`]; an unreadable preamble/appendix file; I/O failures.
pub fn write_report(spec: &ReportSpec) -> anyhow::Result<ExperimentResults> {
    let results = summarize(&collect(&spec.exp)?, spec.level)?;
    results.write_files(&spec.assets)?;
    let base = spec
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let read_all = |files: &[PathBuf]| -> anyhow::Result<String> {
        let mut s = String::new();
        for f in files {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the report section {}", f.display()))?;
            s.push_str(text.trim_end());
            s.push_str("\n\n");
        }
        Ok(s)
    };
    let mut attention = Vec::new();
    if let Some(dir) = &spec.attention {
        let mut steps: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the attention folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let t = p.file_name()?.to_str()?.strip_prefix('T')?.parse().ok()?;
                Some((t, p))
            })
            .collect();
        steps.sort();
        for (t, d) in steps {
            let mut pngs: Vec<PathBuf> = std::fs::read_dir(&d)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "png"))
                .collect();
            pngs.sort();
            for p in pngs {
                attention.push((t, relative_to(&p, base)));
            }
        }
    }
    let opts = MarkdownOptions {
        title: spec.title.clone(),
        preamble: read_all(&spec.preamble)?,
        plot: Some(relative_to(&spec.assets.join("auc_vs_t.png"), base)),
        attention,
        appendix: read_all(&spec.appendix)?,
    };
    write_atomic(&spec.out, results.to_markdown(&opts).as_bytes())?;
    Ok(results)
}

/// `path` as a Markdown link from a file in `base`: relative (`../` where needed) when both
/// resolve on disk, else `path` as given.
fn relative_to(path: &Path, base: &Path) -> String {
    let rel = match (std::fs::canonicalize(path), std::fs::canonicalize(base)) {
        (Ok(p), Ok(b)) => {
            let (pc, bc): (Vec<_>, Vec<_>) = (p.components().collect(), b.components().collect());
            let common = pc.iter().zip(&bc).take_while(|(x, y)| x == y).count();
            let mut r = PathBuf::new();
            for _ in common..bc.len() {
                r.push("..");
            }
            r.extend(&pc[common..]);
            r
        }
        _ => path.to_path_buf(),
    };
    rel.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevit_metrics::write_predictions_csv;

    /// Scores that separate the classes better as `quality` grows.
    fn scores(labels: &[bool], quality: f64, salt: u64) -> Vec<f64> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let noise = (((i as u64 * 2654435761 + salt * 97) % 1000) as f64) / 1000.0;
                let v = quality * f64::from(u8::from(l)) + noise;
                v / (1.0 + quality)
            })
            .collect()
    }

    fn write_exp(dir: &Path, seeds: &[u64]) -> Vec<bool> {
        let labels: Vec<bool> = (0..80).map(|i| i % 3 != 0).collect();
        let ids: Vec<String> = (0..80).map(|i| format!("img{i}.png")).collect();
        for &s in seeds {
            for t in 0..=2usize {
                let q = 0.2 + 0.3 * t as f64;
                let p = dir.join(format!("seed-{s}/eval/distl-T{t}/predictions.csv"));
                write_predictions_csv(&p, &ids, &labels, &scores(&labels, q, s), "pos", 0.5)
                    .unwrap();
                if t > 0 {
                    let p = dir.join(format!("seed-{s}/eval/supervised-T{t}/predictions.csv"));
                    // reversed case order: the report must align by id
                    let mut idr = ids.clone();
                    let mut lr = labels.clone();
                    let mut sr = scores(&labels, q * 0.5, s + 11);
                    idr.reverse();
                    lr.reverse();
                    sr.reverse();
                    write_predictions_csv(&p, &idr, &lr, &sr, "pos", 0.5).unwrap();
                }
            }
        }
        labels
    }

    #[test]
    fn collects_summarizes_and_writes() {
        let d = tempfile::tempdir().unwrap();
        write_exp(d.path(), &[0, 1, 2]);
        std::fs::create_dir_all(d.path().join("seed-0/eval/other")).unwrap();
        let entries = collect(d.path()).unwrap();
        assert_eq!(entries.len(), 3 * 5);
        let r = summarize(&entries, 0.95).unwrap();
        assert_eq!(r.seeds, vec![0, 1, 2]);
        // supervised T=0 is the initial model
        let auc = |s, arm, t| {
            r.models
                .iter()
                .find(|m| m.seed == s && m.arm == arm && m.t == t)
                .unwrap()
                .auc
                .auc
        };
        assert_eq!(auc(1, Arm::Supervised, 0), auc(1, Arm::Distl, 0));
        assert_eq!(r.distl_vs_supervised.len(), 3 * 2);
        assert_eq!(r.distl_vs_initial.len(), 3 * 2);
        for p in &r.distl_vs_supervised {
            // aligned by id: the paired AUCs equal the separately computed ones
            assert!((p.test.auc_b - auc(p.seed, Arm::Supervised, p.t)).abs() < 1e-12);
            assert!((p.test.auc_a - auc(p.seed, Arm::Distl, p.t)).abs() < 1e-12);
        }
        let row = r
            .aggregate
            .iter()
            .find(|a| a.arm == Arm::Distl && a.t == 2)
            .unwrap();
        let v: Vec<f64> = (0..3).map(|s| auc(s, Arm::Distl, 2)).collect();
        assert!((row.auc.mean - v.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        assert_eq!(row.auc.n, 3);
        // DISTL improves with T and beats the weaker supervised scores here
        assert_eq!(r.targets[1].met, 3);
        assert_eq!(r.targets[2].met, 3);
        let md = r.to_markdown(&MarkdownOptions {
            title: "Results".into(),
            plot: Some("auc_vs_t.png".into()),
            ..Default::default()
        });
        assert!(md.contains("| 2 | 0.") && md.contains("DISTL T=2 vs supervised T=2"));
        assert!(
            md.contains("## Summary") && md.contains("in 6 of 6 (seed, T) comparisons"),
            "{md}"
        );
        assert!(md.contains("The claim is reproduced"), "{md}");
        assert!(!md.contains("labeled-only control") && r.distl_vs_control.is_empty());
        assert_eq!(r.auc_series().len(), 2);
        let out = d.path().join("out");
        r.write_files(&out).unwrap();
        for f in ["results.json", "models.csv", "paired.csv", "auc_vs_t.png"] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let back: ExperimentResults =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(back.models.len(), r.models.len());
        assert_eq!(r.models_csv().lines().count(), 1 + r.models.len());
    }

    #[test]
    fn the_labeled_only_control_is_an_optional_third_arm() {
        let d = tempfile::tempdir().unwrap();
        let labels = write_exp(d.path(), &[0, 1]);
        let ids: Vec<String> = (0..labels.len()).map(|i| format!("img{i}.png")).collect();
        for s in [0u64, 1] {
            for t in 1..=2usize {
                // a control that separates the classes better than DISTL at every T
                let p = d
                    .path()
                    .join(format!("seed-{s}/eval/control-T{t}/predictions.csv"));
                write_predictions_csv(&p, &ids, &labels, &scores(&labels, 3.0, s + 5), "pos", 0.5)
                    .unwrap();
            }
        }
        let r = summarize(&collect(d.path()).unwrap(), 0.95).unwrap();
        let auc = |s, arm, t| {
            r.models
                .iter()
                .find(|m| m.seed == s && m.arm == arm && m.t == t)
                .map(|m| m.auc.auc)
        };
        assert_eq!(auc(0, Arm::Control, 0), auc(0, Arm::Distl, 0));
        assert_eq!(r.distl_vs_control.len(), 2 * 2);
        for p in &r.distl_vs_control {
            assert!((p.test.auc_b - auc(p.seed, Arm::Control, p.t).unwrap()).abs() < 1e-12);
            assert!(p.test.diff < 0.0, "{p:?}");
        }
        let md = r.to_markdown(&MarkdownOptions::default());
        assert!(
            md.contains("| T | DISTL AUC | supervised AUC | labeled-only control AUC |"),
            "{md}"
        );
        assert!(md.contains("DISTL T=2 vs control T=2"), "{md}");
        assert!(
            md.contains(
                "labeled-only control (as many more updates on the labeled images alone) in 0 of 4"
            ),
            "{md}"
        );
        assert_eq!(r.auc_series().len(), 3);
        assert_eq!(r.paired_csv().lines().count(), 1 + 3 * 4);
        // the per-seed table lists the control from T = 1 on
        assert_eq!(md.lines().filter(|l| l.contains("| control |")).count(), 4);
    }

    #[test]
    fn errors_are_clear() {
        let d = tempfile::tempdir().unwrap();
        let e = collect(d.path()).unwrap_err().to_string();
        assert!(e.contains("no predictions"), "{e}");
        assert!(collect(&d.path().join("missing")).is_err());
        // a seed without its initial model
        write_predictions_csv(
            &d.path().join("seed-3/eval/distl-T1/predictions.csv"),
            &["a", "b", "x", "y"],
            &[true, false, true, false],
            &[0.9, 0.1, 0.6, 0.4],
            "pos",
            0.5,
        )
        .unwrap();
        let e = format!(
            "{:#}",
            summarize(&collect(d.path()).unwrap(), 0.95).unwrap_err()
        );
        assert!(e.contains("seed 3") && e.contains("distl-T0"), "{e}");
        // different cases in the two models
        write_predictions_csv(
            &d.path().join("seed-3/eval/distl-T0/predictions.csv"),
            &["a", "c", "x", "y"],
            &[true, false, true, false],
            &[0.9, 0.1, 0.3, 0.4],
            "pos",
            0.5,
        )
        .unwrap();
        let e = format!(
            "{:#}",
            summarize(&collect(d.path()).unwrap(), 0.95).unwrap_err()
        );
        assert!(e.contains("not on the same cases"), "{e}");
    }

    #[test]
    fn report_with_sections_and_attention() {
        let d = tempfile::tempdir().unwrap();
        let exp = d.path().join("exp");
        write_exp(&exp, &[4]);
        let docs = d.path().join("docs");
        for t in 0..=2 {
            let p = docs.join(format!("results/attention/T{t}/img1.png"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"png").unwrap();
        }
        std::fs::write(exp.join("setup.md"), "## Setup\n\nconfig here\n").unwrap();
        let r = write_report(&ReportSpec {
            exp: exp.clone(),
            out: docs.join("results.md"),
            assets: docs.join("results"),
            title: "DISTL on test data".into(),
            preamble: vec![exp.join("setup.md")],
            appendix: vec![],
            attention: Some(docs.join("results/attention")),
            level: 0.95,
        })
        .unwrap();
        assert_eq!(r.seeds, vec![4]);
        let md = std::fs::read_to_string(docs.join("results.md")).unwrap();
        assert!(md.starts_with("# DISTL on test data"));
        assert!(md.contains("## Setup"));
        assert!(md.contains("](results/auc_vs_t.png)"), "{md}");
        assert!(md.contains("](results/attention/T2/img1.png)"), "{md}");
        let e = write_report(&ReportSpec {
            preamble: vec![exp.join("nope.md")],
            exp,
            out: docs.join("r2.md"),
            assets: docs.join("r2"),
            title: "x".into(),
            appendix: vec![],
            attention: None,
            level: 0.95,
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("nope.md"));
    }

    #[test]
    fn links_are_relative_to_the_markdown() {
        let d = tempfile::tempdir().unwrap();
        let (docs, img) = (
            d.path().join("docs"),
            d.path().join("runs/exp/attention/T1/a.png"),
        );
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::create_dir_all(img.parent().unwrap()).unwrap();
        std::fs::write(&img, b"png").unwrap();
        assert_eq!(relative_to(&img, &docs), "../runs/exp/attention/T1/a.png");
        assert_eq!(
            relative_to(&docs.join("missing.png"), &docs),
            docs.join("missing.png").to_string_lossy()
        );
    }

    #[test]
    fn mean_sd() {
        let m = MeanSd::of(&[1.0, 2.0, 3.0]);
        assert_eq!((m.mean, m.sd, m.n), (2.0, 1.0, 3));
        assert_eq!(MeanSd::of(&[0.5]).sd, 0.0);
    }
}
