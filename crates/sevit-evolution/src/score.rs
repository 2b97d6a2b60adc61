//! Scoring a model version on the locked validation set, and its recorded predictions.

use std::path::Path;

use anyhow::Context;
use sevit_distill::{TrainConfig, Weights};

use crate::locked::LockedRow;
use crate::registry::ValidationMetrics;
use crate::site::{write_atomic, Site};

/// File name of a version's validation predictions.
pub const PREDICTIONS_FILE: &str = "val_predictions.csv";

/// Probabilities of the `weights` network of `checkpoint` for the validation rows (in order),
/// with the inference settings of `cfg`.
pub fn score(
    checkpoint: &Path,
    weights: Weights,
    cfg: &TrainConfig,
    rows: &[LockedRow],
) -> anyhow::Result<Vec<f64>> {
    let samples: Vec<_> = rows.iter().map(LockedRow::sample).collect();
    let model_cfg = cfg.model.model_config()?;
    sevit_distill::scoring::predict(
        checkpoint,
        weights,
        &samples,
        cfg.eval_image_size(),
        cfg.eval.batch_size,
        cfg.views.inference_blur_radius,
        cfg.device()?,
        Some(&model_cfg),
    )
    .with_context(|| {
        format!(
            "scoring {} on the locked validation set",
            checkpoint.display()
        )
    })
}

/// Writes the predictions of a version into `dir/val_predictions.csv` and returns its metrics
/// (non-finite scores are written as they are; the AUC is then NaN).
pub fn record(
    site: &Site,
    dir: &Path,
    rows: &[LockedRow],
    scores: &[f64],
    level: f64,
    threshold: f64,
) -> anyhow::Result<ValidationMetrics> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["file", "label", "probability"])?;
    for (r, p) in rows.iter().zip(scores) {
        w.write_record([r.file.display().to_string(), r.label.clone(), p.to_string()])?;
    }
    let path = dir.join(PREDICTIONS_FILE);
    write_atomic(&path, &w.into_inner()?)?;
    let labels = labels(rows);
    let finite = scores.iter().all(|s| s.is_finite());
    let (auc, lower, upper) = if finite {
        let ci = sevit_metrics::delong_ci(&labels, scores, level)?;
        (ci.auc, ci.lower, ci.upper)
    } else {
        (f64::NAN, f64::NAN, f64::NAN)
    };
    let (sensitivity, specificity) = if finite {
        let t = sevit_metrics::at_threshold(&labels, scores, threshold)?;
        (t.sensitivity, t.specificity)
    } else {
        (f64::NAN, f64::NAN)
    };
    Ok(ValidationMetrics {
        n: rows.len(),
        n_positive: labels.iter().filter(|&&l| l).count(),
        auc,
        auc_lower: lower,
        auc_upper: upper,
        threshold,
        sensitivity,
        specificity,
        predictions: site.relative(&path),
    })
}

/// Reads back the probabilities of a predictions file written by [`record`], checking that
/// it lists exactly `rows` in order.
pub fn read(path: &Path, rows: &[LockedRow]) -> anyhow::Result<Vec<f64>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        let file = rec.get(0).unwrap_or_default();
        let expect = rows.get(i).map(|r| r.file.display().to_string());
        anyhow::ensure!(
            expect.as_deref() == Some(file),
            "{} does not match the locked validation set at row {}",
            path.display(),
            i + 2
        );
        let p: f64 = rec
            .get(2)
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("{}: row {}: probability", path.display(), i + 2))?;
        out.push(p);
    }
    anyhow::ensure!(
        out.len() == rows.len(),
        "{}: {} rows, expected {}",
        path.display(),
        out.len(),
        rows.len()
    );
    Ok(out)
}

/// Labels of the rows (`true` = positive).
pub fn labels(rows: &[LockedRow]) -> Vec<bool> {
    rows.iter().map(|r| r.target > 0.5).collect()
}
