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
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use sevit_metrics::io::write_atomic;
use sevit_metrics::pairing::pair_predictions;
use sevit_metrics::{
    delong_ci, delong_paired_level, read_predictions_csv, youden_threshold, AucCi, PairedTest,
    Predictions, ThresholdMetrics,
};

pub mod corpus;
pub mod gate;
pub mod layout;
mod markdown;
pub mod protocol;
pub mod runner;
mod sections;
pub use markdown::MarkdownOptions;
pub use protocol::{Criteria, Protocol};

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

/// The claim's decision by the declared success criteria: the mean over seeds of
/// AUC(T=k) − AUC(T=0) of DISTL at least `min_mean_gain`, and AUC(T=k) above AUC(T=0) with a
/// paired DeLong p below `alpha` in every seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimDecision {
    /// The declared least mean gain.
    pub min_mean_gain: f64,
    /// The declared significance level.
    pub alpha: f64,
    /// Mean over seeds of AUC(T=k) − AUC(T=0) (NaN before any step is scored).
    pub mean_gain: f64,
    /// Seeds in which AUC(T=k) > AUC(T=0) with p < `alpha`.
    pub seeds_above: usize,
    /// Seeds scored.
    pub seeds: usize,
    /// Both criteria hold over the seeds scored.
    pub met: bool,
    /// Seeds the protocol declares (the decision is final once all are scored); 0 if unknown.
    #[serde(default)]
    pub declared_seeds: usize,
}

impl ClaimDecision {
    fn of(seeds: usize, vs_initial_at_k: &[&PairedResult], criteria: &Criteria) -> Self {
        let gains: Vec<f64> = vs_initial_at_k.iter().map(|p| p.test.diff).collect();
        let mean_gain = MeanSd::of(&gains).mean;
        let seeds_above = vs_initial_at_k
            .iter()
            .filter(|p| p.test.diff > 0.0 && p.test.p_value < criteria.alpha)
            .count();
        ClaimDecision {
            min_mean_gain: criteria.min_mean_gain,
            alpha: criteria.alpha,
            mean_gain,
            seeds_above,
            seeds,
            met: seeds > 0
                && gains.len() == seeds
                && mean_gain >= criteria.min_mean_gain
                && seeds_above == seeds,
            declared_seeds: 0,
        }
    }
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
    /// The decision by the declared success criteria (absent from reports written before it).
    #[serde(default)]
    pub claim: Option<ClaimDecision>,
}

/// Computes the [`ExperimentResults`] of `entries` at confidence `level`.
///
/// # Errors
/// An unreadable predictions file; two models of one seed scored on different cases; a seed
/// without the initial model (`distl-T0`); degenerate scores (one class, NaN).
pub fn summarize(entries: &[Entry], level: f64) -> anyhow::Result<ExperimentResults> {
    summarize_with(entries, level, &Criteria::default())
}

/// [`summarize`] with the success criteria of a protocol.
///
/// # Errors
/// As [`summarize`].
pub fn summarize_with(
    entries: &[Entry],
    level: f64,
    criteria: &Criteria,
) -> anyhow::Result<ExperimentResults> {
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
    let targets = targets(&seeds, &models, &distl_vs_initial, criteria);
    let t_max = models.iter().map(|m| m.t).max().unwrap_or(0);
    let at_k: Vec<&PairedResult> = distl_vs_initial.iter().filter(|p| p.t == t_max).collect();
    let claim = Some(ClaimDecision::of(seeds.len(), &at_k, criteria));
    Ok(ExperimentResults {
        level,
        seeds: seeds.into_iter().collect(),
        models,
        distl_vs_supervised,
        distl_vs_initial,
        distl_vs_control,
        aggregate,
        targets,
        claim,
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
    criteria: &Criteria,
) -> Vec<TargetCheck> {
    let auc = |s: u64, arm: Arm, t: usize| {
        models
            .iter()
            .find(|m| m.seed == s && m.arm == arm && m.t == t)
            .map(|m| m.auc.auc)
    };
    let t_max = models.iter().map(|m| m.t).max().unwrap_or(0);
    let mut gain = 0;
    let mut above = 0;
    let mut distl_ge_sup = 0;
    let mut distl_ge_init = 0;
    for &s in seeds {
        if vs_initial.iter().any(|p| {
            p.seed == s
                && p.t == t_max
                && p.test.diff >= criteria.min_mean_gain
                && p.test.p_value < criteria.alpha
        }) {
            gain += 1;
        }
        if vs_initial.iter().any(|p| {
            p.seed == s && p.t == t_max && p.test.diff > 0.0 && p.test.p_value < criteria.alpha
        }) {
            above += 1;
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
            target: format!(
                "AUC(T={t_max}) - AUC(T=0) >= {} with paired DeLong p < {}",
                criteria.min_mean_gain, criteria.alpha
            ),
            met: gain,
            of,
        },
        TargetCheck {
            target: format!(
                "AUC(T={t_max}) > AUC(T=0) with paired DeLong p < {}",
                criteria.alpha
            ),
            met: above,
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
    /// Seeds the protocol declares, so a decision over fewer says it is provisional (0: unknown).
    pub declared_seeds: usize,
    /// Markdown files placed before the tables, in order.
    pub preamble: Vec<PathBuf>,
    /// Markdown files placed after the tables, in order.
    pub appendix: Vec<PathBuf>,
    /// Folder holding one sub-folder `T<t>` of attention PNGs per step (the same images).
    pub attention: Option<PathBuf>,
    /// Confidence level.
    pub level: f64,
    /// The success criteria the targets are checked against.
    pub criteria: Criteria,
}

/// Collects the experiment, computes its results and writes `spec.out` with the JSON, CSV and
/// plot in `spec.assets`; returns the results.
///
/// # Errors
/// As [`collect`] and [`summarize`]; an unreadable preamble/appendix file; I/O failures.
pub fn write_report(spec: &ReportSpec) -> anyhow::Result<ExperimentResults> {
    let mut results = summarize_with(&collect(&spec.exp)?, spec.level, &spec.criteria)?;
    if let Some(c) = &mut results.claim {
        c.declared_seeds = spec.declared_seeds;
    }
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
mod tests;
