//! Evaluation reports: [`evaluate`] computes every metric at once into an [`EvalReport`]
//! (`report.json`, a plain-text table via `Display`); [`compare`] runs the paired DeLong test
//! into a [`ComparisonReport`]; [`write_predictions_csv`] / [`read_predictions_csv`] persist the
//! per-case scores (`predictions.csv`). Everything written to disk is written atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::bootstrap::bootstrap_ci;
use crate::calibration::{calibration, Calibration};
use crate::delong::{delong_ci, delong_paired_level, AucCi, CiMethod, PairedTest};
use crate::error::MetricsError;
use crate::input::{check_probs, class_counts};
use crate::io::write_atomic;
use crate::roc::{roc_curve, RocPoint};
use crate::threshold::{
    at_threshold, threshold_for_sensitivity, youden_threshold, ThresholdMetrics,
};

/// Bootstrap settings for [`EvalOptions::bootstrap`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    /// Number of replicates (pROC's default is 2000).
    pub n_boot: usize,
    /// RNG seed.
    pub seed: u64,
}

/// What [`evaluate`] computes, and the free-form description of what was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Confidence level of every interval (default 0.95).
    pub level: f64,
    /// The fixed decision threshold (default 0.5).
    pub threshold: f64,
    /// Also report the operating point reaching this sensitivity (default `Some(0.9)`).
    pub target_sensitivity: Option<f64>,
    /// Number of equal-width calibration bins (default 10).
    pub n_bins: usize,
    /// Also compute a stratified bootstrap CI (default `None`: DeLong only).
    pub bootstrap: Option<BootstrapOptions>,
    /// Model description (preset, checkpoint, step), copied into the report.
    pub model: String,
    /// Run description (run directory, split, dataset), copied into the report.
    pub run: String,
    /// Any further key/value information to keep with the report (numbers as JSON numbers).
    pub info: BTreeMap<String, serde_json::Value>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            level: 0.95,
            threshold: 0.5,
            target_sensitivity: Some(0.9),
            n_bins: 10,
            bootstrap: None,
            model: String::new(),
            run: String::new(),
            info: BTreeMap::new(),
        }
    }
}

/// The operating point chosen for a target sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetSensitivity {
    /// The requested sensitivity.
    pub target: f64,
    /// Metrics at the highest threshold reaching it.
    pub metrics: ThresholdMetrics,
}

/// Threshold metrics at the fixed, the Youden-optimal and the target-sensitivity thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdsBlock {
    /// At [`EvalOptions::threshold`].
    pub fixed: ThresholdMetrics,
    /// At the threshold maximising Youden's J.
    pub youden: ThresholdMetrics,
    /// At the target sensitivity, if one was asked for.
    pub target_sensitivity: Option<TargetSensitivity>,
}

/// Everything [`evaluate`] computes; serialised as `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Model description.
    pub model: String,
    /// Run description.
    pub run: String,
    /// Further information (numbers as JSON numbers).
    pub info: BTreeMap<String, serde_json::Value>,
    /// Number of cases.
    pub n: usize,
    /// Number of positive cases.
    pub n_pos: usize,
    /// Number of negative cases.
    pub n_neg: usize,
    /// ROC AUC.
    pub auc: f64,
    /// DeLong variance of the AUC.
    pub delong_variance: f64,
    /// DeLong confidence interval.
    pub ci: AucCi,
    /// Stratified bootstrap confidence interval, if asked for.
    pub bootstrap_ci: Option<AucCi>,
    /// Threshold metrics.
    pub thresholds: ThresholdsBlock,
    /// Brier score, ECE and reliability bins.
    pub calibration: Calibration,
    /// The empirical ROC curve.
    pub roc: Vec<RocPoint>,
}

/// Computes the AUC with DeLong CI (and bootstrap CI if asked), the threshold metrics and the
/// calibration of predicted probabilities `probs` (in `[0, 1]`, e.g. a sigmoid output).
///
/// # Errors
/// Any [`MetricsError`] of the parts: empty/mismatched/non-finite input, a value outside
/// `[0, 1]`, fewer than two cases of a class, invalid options.
pub fn evaluate(
    labels: &[bool],
    probs: &[f64],
    opts: &EvalOptions,
) -> Result<EvalReport, MetricsError> {
    check_probs(labels, probs, "probs")?;
    let ci = delong_ci(labels, probs, opts.level)?;
    let bootstrap_ci = match opts.bootstrap {
        Some(b) => Some(bootstrap_ci(labels, probs, b.n_boot, opts.level, b.seed)?),
        None => None,
    };
    let target_sensitivity = match opts.target_sensitivity {
        Some(target) => Some(TargetSensitivity {
            target,
            metrics: threshold_for_sensitivity(labels, probs, target)?,
        }),
        None => None,
    };
    let thresholds = ThresholdsBlock {
        fixed: at_threshold(labels, probs, opts.threshold)?,
        youden: youden_threshold(labels, probs)?,
        target_sensitivity,
    };
    let (n_pos, n_neg) = class_counts(labels);
    let report = EvalReport {
        model: opts.model.clone(),
        run: opts.run.clone(),
        info: opts.info.clone(),
        n: labels.len(),
        n_pos,
        n_neg,
        auc: ci.auc,
        delong_variance: ci.variance,
        ci,
        bootstrap_ci,
        thresholds,
        calibration: calibration(labels, probs, opts.n_bins)?,
        roc: roc_curve(labels, probs)?,
    };
    tracing::info!(
        n = report.n,
        n_pos,
        auc = report.auc,
        lower = ci.lower,
        upper = ci.upper,
        "evaluated"
    );
    Ok(report)
}

fn save_json<T: Serialize>(value: &T, path: &Path) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("serialising the report")?;
    text.push('\n');
    write_atomic(path, text.as_bytes()).with_context(|| format!("saving {}", path.display()))
}

fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

impl EvalReport {
    /// Writes the report as pretty JSON, atomically.
    pub fn save_json(&self, path: &Path) -> anyhow::Result<()> {
        save_json(self, path)
    }

    /// Reads a report written by [`EvalReport::save_json`].
    pub fn load_json(path: &Path) -> anyhow::Result<Self> {
        load_json(path)
    }
}

fn method_name(m: &CiMethod) -> String {
    match m {
        CiMethod::Delong => "DeLong".to_string(),
        CiMethod::Bootstrap { n_boot, seed } => {
            format!("stratified bootstrap, {n_boot} replicates, seed {seed}")
        }
    }
}

/// Formats a rate, `-` when undefined.
fn rate(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".to_string()
    }
}

fn threshold_row(f: &mut fmt::Formatter<'_>, name: &str, m: &ThresholdMetrics) -> fmt::Result {
    writeln!(
        f,
        "{:<16} {:>9.4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        name,
        m.threshold,
        m.tp,
        m.fp,
        m.tn,
        m.fn_,
        rate(m.sensitivity),
        rate(m.specificity),
        rate(m.ppv),
        rate(m.npv),
        rate(m.accuracy),
        rate(m.f1)
    )
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.model.is_empty() {
            writeln!(f, "model: {}", self.model)?;
        }
        if !self.run.is_empty() {
            writeln!(f, "run:   {}", self.run)?;
        }
        for (k, v) in &self.info {
            match v {
                serde_json::Value::String(s) => writeln!(f, "{k}: {s}")?,
                other => writeln!(f, "{k}: {other}")?,
            }
        }
        writeln!(
            f,
            "cases: {} ({} positive, {} negative)",
            self.n, self.n_pos, self.n_neg
        )?;
        let pct = self.ci.level * 100.0;
        writeln!(
            f,
            "AUC {:.4}  {pct:.0}% CI {:.4}-{:.4} ({}, variance {:.3e})",
            self.auc,
            self.ci.lower,
            self.ci.upper,
            method_name(&self.ci.method),
            self.delong_variance
        )?;
        if let Some(b) = &self.bootstrap_ci {
            writeln!(
                f,
                "    {pct:.0}% CI {:.4}-{:.4} ({})",
                b.lower,
                b.upper,
                method_name(&b.method)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<16} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
            "operating point",
            "threshold",
            "TP",
            "FP",
            "TN",
            "FN",
            "sens",
            "spec",
            "PPV",
            "NPV",
            "acc",
            "F1"
        )?;
        threshold_row(f, "fixed", &self.thresholds.fixed)?;
        threshold_row(f, "Youden", &self.thresholds.youden)?;
        if let Some(t) = &self.thresholds.target_sensitivity {
            threshold_row(f, &format!("sens >= {:.2}", t.target), &t.metrics)?;
        }
        writeln!(f)?;
        write!(
            f,
            "calibration: Brier {:.4}, ECE {:.4} ({} bins)",
            self.calibration.brier,
            self.calibration.ece,
            self.calibration.bins.len()
        )
    }
}

/// The paired DeLong comparison of two models on the same cases; serialised as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonReport {
    /// Name of model A.
    pub model_a: String,
    /// Name of model B.
    pub model_b: String,
    /// Number of cases.
    pub n: usize,
    /// Number of positive cases.
    pub n_pos: usize,
    /// Number of negative cases.
    pub n_neg: usize,
    /// DeLong CI of model A's AUC.
    pub ci_a: AucCi,
    /// DeLong CI of model B's AUC.
    pub ci_b: AucCi,
    /// The paired test of A against B.
    pub test: PairedTest,
}

/// Compares two models' scores on the same cases with the paired DeLong test at `level`.
///
/// # Errors
/// As [`crate::delong_paired_level`].
pub fn compare(
    labels: &[bool],
    scores_a: &[f64],
    scores_b: &[f64],
    model_a: &str,
    model_b: &str,
    level: f64,
) -> Result<ComparisonReport, MetricsError> {
    let test = delong_paired_level(labels, scores_a, scores_b, level)?;
    let (n_pos, n_neg) = class_counts(labels);
    Ok(ComparisonReport {
        model_a: model_a.to_string(),
        model_b: model_b.to_string(),
        n: labels.len(),
        n_pos,
        n_neg,
        ci_a: delong_ci(labels, scores_a, level)?,
        ci_b: delong_ci(labels, scores_b, level)?,
        test,
    })
}

impl ComparisonReport {
    /// Writes the comparison as pretty JSON, atomically.
    pub fn save_json(&self, path: &Path) -> anyhow::Result<()> {
        save_json(self, path)
    }

    /// Reads a comparison written by [`ComparisonReport::save_json`].
    pub fn load_json(path: &Path) -> anyhow::Result<Self> {
        load_json(path)
    }
}

impl fmt::Display for ComparisonReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.test;
        let pct = t.level * 100.0;
        writeln!(
            f,
            "paired DeLong test, {} cases ({} positive, {} negative)",
            self.n, self.n_pos, self.n_neg
        )?;
        let width = self.model_a.len().max(self.model_b.len()).max(5);
        for (name, ci) in [(&self.model_a, &self.ci_a), (&self.model_b, &self.ci_b)] {
            writeln!(
                f,
                "  {name:<width$}  AUC {:.4}  {pct:.0}% CI {:.4}-{:.4}",
                ci.auc, ci.lower, ci.upper
            )?;
        }
        writeln!(
            f,
            "  difference (A - B) {:+.4}  {pct:.0}% CI {:+.4} to {:+.4}",
            t.diff, t.ci_diff.0, t.ci_diff.1
        )?;
        write!(f, "  z = {:.3}, two-sided p = {:.4}", t.z, t.p_value)
    }
}

/// Per-case predictions as read back from `predictions.csv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predictions {
    /// Case identifiers (file names or ids).
    pub ids: Vec<String>,
    /// True labels.
    pub labels: Vec<bool>,
    /// Scores (probabilities).
    pub scores: Vec<f64>,
}

/// The score column of a predictions CSV: `p_<positive label>` (e.g. `p_pneumonia`), so the
/// file says which class the probability is of.
pub fn probability_column(positive: &str) -> String {
    format!("p_{positive}")
}

/// Writes `predictions.csv` atomically, in the one schema every sevit tool writes:
/// `id,label,p_<positive>,predicted,threshold`: label 0/1 (empty where unknown, as in
/// `sevit predict`), the probability of the positive class with full round-trip precision,
/// and the call (0/1) at `threshold` (probability >= threshold is positive).
///
/// # Errors
/// Length mismatch between the three columns, non-finite scores, I/O failures.
pub fn write_predictions_csv<S: AsRef<str>>(
    path: &Path,
    ids: &[S],
    labels: &[bool],
    scores: &[f64],
    positive: &str,
    threshold: f64,
) -> anyhow::Result<()> {
    crate::input::check_scores(labels, scores, "scores")
        .with_context(|| format!("writing {}", path.display()))?;
    if ids.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            what: "ids",
            expected: labels.len(),
            got: ids.len(),
        })
        .with_context(|| format!("writing {}", path.display()));
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let p = probability_column(positive);
    w.write_record(["id", "label", p.as_str(), "predicted", "threshold"])?;
    for ((id, &l), &s) in ids.iter().zip(labels).zip(scores) {
        w.write_record([
            id.as_ref(),
            if l { "1" } else { "0" },
            &s.to_string(),
            if s >= threshold { "1" } else { "0" },
            &threshold.to_string(),
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("buffering CSV: {e}"))?;
    write_atomic(path, &bytes)
}

/// Reads a `predictions.csv` written by [`write_predictions_csv`] (columns found by header name,
/// so extra columns are allowed; the probability is the one `p_*` column, or `score` in files
/// of earlier sevit versions).
///
/// # Errors
/// Missing file or column, a label other than 0/1, an unparsable score; the message names the
/// file and line.
pub fn read_predictions_csv(path: &Path) -> anyhow::Result<Predictions> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers = r
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column {name:?} in header {headers:?}",
                path.display()
            )
        })
    };
    let probability = headers
        .iter()
        .position(|h| h.starts_with("p_"))
        .map(Ok)
        .unwrap_or_else(|| col("score"));
    let (ci, cl, cs) = (col("id")?, col("label")?, probability?);
    let mut out = Predictions::default();
    for (k, rec) in r.records().enumerate() {
        let line = k + 2;
        let rec =
            rec.with_context(|| format!("{}:{line}: malformed CSV record", path.display()))?;
        let field = |c: usize| rec.get(c).unwrap_or("");
        let label = match field(cl).trim() {
            "1" | "true" => true,
            "0" | "false" => false,
            other => anyhow::bail!("{}:{line}: label {other:?} is not 0 or 1", path.display()),
        };
        let score: f64 = field(cs).trim().parse().with_context(|| {
            format!(
                "{}:{line}: score {:?} is not a number",
                path.display(),
                field(cs)
            )
        })?;
        out.ids.push(field(ci).to_string());
        out.labels.push(label);
        out.scores.push(score);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<bool>, Vec<f64>) {
        let labels = vec![true, true, false, true, false, true, false, false, false];
        let probs = vec![0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05];
        (labels, probs)
    }

    #[test]
    fn evaluate_collects_everything() {
        let (labels, probs) = sample();
        let opts = EvalOptions {
            bootstrap: Some(BootstrapOptions {
                n_boot: 100,
                seed: 1,
            }),
            model: "micro step 2".into(),
            run: "runs/test".into(),
            ..EvalOptions::default()
        };
        let r = evaluate(&labels, &probs, &opts).unwrap();
        assert_eq!((r.n, r.n_pos, r.n_neg), (9, 4, 5));
        // pairs: 0.9, 0.8 beat all 5; 0.6 beats 4; 0.3 beats 3 -> 17/20.
        assert_eq!(r.auc, 0.85);
        assert_eq!(r.ci.auc, r.auc);
        assert_eq!(r.delong_variance, r.ci.variance);
        assert_eq!(r.thresholds.fixed.threshold, 0.5);
        assert_eq!(r.thresholds.youden.threshold, 0.3);
        assert_eq!(
            r.thresholds.target_sensitivity.unwrap().metrics.threshold,
            0.3
        );
        assert_eq!(r.calibration.bins.len(), 10);
        assert!(r.bootstrap_ci.is_some());
        assert_eq!(r.roc.len(), 10);

        let text = r.to_string();
        for needle in [
            "micro step 2",
            "AUC 0.8500",
            "Youden",
            "sens >= 0.90",
            "Brier",
            "bootstrap",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn report_json_round_trip() {
        let (labels, probs) = sample();
        let r = evaluate(&labels, &probs, &EvalOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval/report.json");
        r.save_json(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["auc"], 0.85);
        assert_eq!(v["ci"]["method"]["kind"], "delong");
        assert!(v["roc"][0]["threshold"].is_null());
        let back = EvalReport::load_json(&path).unwrap();
        assert_eq!(back.auc, r.auc);
        assert_eq!(back.thresholds, r.thresholds);
        assert_eq!(back.roc, r.roc);
        assert_eq!(back.calibration.brier, r.calibration.brier);
    }

    #[test]
    fn evaluate_rejects_bad_input() {
        let (labels, mut probs) = sample();
        probs[2] = 1.5;
        assert!(matches!(
            evaluate(&labels, &probs, &EvalOptions::default()),
            Err(MetricsError::NotAProbability { index: 2, .. })
        ));
        assert!(matches!(
            evaluate(
                &[true, false, false],
                &[0.2, 0.3, 0.1],
                &EvalOptions::default()
            ),
            Err(MetricsError::TooFewCases { .. })
        ));
    }

    #[test]
    fn comparison() {
        let (labels, a) = sample();
        let b = vec![0.5, 0.9, 0.6, 0.4, 0.5, 0.2, 0.3, 0.1, 0.2];
        let c = compare(&labels, &a, &b, "DISTL", "supervised", 0.95).unwrap();
        assert_eq!(c.test.auc_a, 0.85);
        assert_eq!(c.ci_a.auc, 0.85);
        assert_eq!(c.ci_b.auc, c.test.auc_b);
        let text = c.to_string();
        assert!(
            text.contains("DISTL") && text.contains("supervised") && text.contains("p ="),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("compare.json");
        c.save_json(&p).unwrap();
        assert_eq!(ComparisonReport::load_json(&p).unwrap(), c);
    }

    #[test]
    fn predictions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        let ids = ["a.png", "dir/b,with comma.png", "c"];
        let labels = [true, false, true];
        let scores = [0.1 + 0.2, 1e-17, 1.0];
        write_predictions_csv(&p, &ids, &labels, &scores, "pneumonia", 0.5).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("id,label,p_pneumonia,predicted,threshold\n"),
            "{text}"
        );
        let back = read_predictions_csv(&p).unwrap();
        assert_eq!(back.ids, ids);
        assert_eq!(back.labels, labels);
        assert_eq!(back.scores, scores); // bit-exact
    }

    #[test]
    fn predictions_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        let err =
            write_predictions_csv(&p, &["a"], &[true, false], &[0.1, 0.2], "x", 0.5).unwrap_err();
        assert!(format!("{err:#}").contains("ids has 1 entries"), "{err:#}");
        let err = write_predictions_csv(&p, &["a"], &[true], &[f64::NAN], "x", 0.5).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a finite number"),
            "{err:#}"
        );
        std::fs::write(&p, "id,label,score\na,1,0.5\nb,2,0.3\n").unwrap();
        let err = read_predictions_csv(&p).unwrap_err();
        assert!(
            format!("{err:#}").contains("predictions.csv:3: label \"2\""),
            "{err:#}"
        );
        std::fs::write(&p, "id,label,score\na,1,zero\n").unwrap();
        let err = read_predictions_csv(&p).unwrap_err();
        assert!(format!("{err:#}").contains(":2: score"), "{err:#}");
        std::fs::write(&p, "id,score\na,0.1\n").unwrap();
        assert!(
            format!("{:#}", read_predictions_csv(&p).unwrap_err()).contains("no column \"label\"")
        );
    }
}
