//! `sevit predict`: probabilities for new, unlabelled images (what a clinic runs), written as a
//! CSV `file,probability,predicted,threshold`. The decision threshold is given, or the Youden
//! threshold of an evaluation `report.json`. Unreadable images are an error, or, with
//! `skip_bad`, left out and counted.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sevit_metrics::EvalReport;

use super::images::load_all;
use super::model::InferenceModel;
use super::source::ImageList;
use sevit_distill::layout::write_atomic;

/// Options of [`predict_images`].
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOptions {
    /// `probability >= threshold` is predicted positive.
    pub threshold: f64,
    /// Skip unreadable images (counted, logged) instead of failing.
    pub skip_bad: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            threshold: 0.5,
            skip_bad: false,
        }
    }
}

/// One scored image.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    /// The image id (relative path).
    pub id: String,
    /// The image file.
    pub path: PathBuf,
    /// `sigmoid(logit)`.
    pub probability: f64,
    /// `probability >= threshold`.
    pub predicted: bool,
}

/// Scored and skipped images.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PredictOutcome {
    /// Scored images, in input order.
    pub rows: Vec<PredictionRow>,
    /// Unreadable images left out (id, error), with `skip_bad`.
    pub skipped: Vec<(String, String)>,
    /// The threshold used.
    pub threshold: f64,
}

/// The Youden-optimal threshold stored in an evaluation `report.json`.
pub fn youden_threshold_from_report(path: &Path) -> anyhow::Result<f64> {
    let r = EvalReport::load_json(path)?;
    let t = r.thresholds.youden.threshold;
    anyhow::ensure!(
        t.is_finite(),
        "{}: the Youden threshold is not finite ({t})",
        path.display()
    );
    Ok(t)
}

/// Scores every image of `list` with `model`, loading one batch at a time.
///
/// # Errors
/// An unreadable image (without `skip_bad`; the error names it), a threshold outside `[0, 1]`,
/// no readable image at all.
pub fn predict_images(
    model: &InferenceModel,
    list: &ImageList,
    opts: &PredictOptions,
) -> anyhow::Result<PredictOutcome> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&opts.threshold),
        "the decision threshold must be in [0, 1], got {}",
        opts.threshold
    );
    let mut out = PredictOutcome {
        threshold: opts.threshold,
        ..Default::default()
    };
    let bs = model.settings.batch_size.max(1);
    for (chunk_idx, chunk) in list.paths.chunks(bs).enumerate() {
        let first = chunk_idx * bs;
        let mut images = Vec::with_capacity(chunk.len());
        let mut kept = Vec::with_capacity(chunk.len());
        for (k, r) in load_all(chunk, model.settings.image_size)
            .into_iter()
            .enumerate()
        {
            let i = first + k;
            match r {
                Ok(img) => {
                    images.push(img);
                    kept.push(i);
                }
                Err(e) if opts.skip_bad => {
                    tracing::warn!(
                        "skipping unreadable image {}: {e:#}",
                        list.paths[i].display()
                    );
                    out.skipped.push((list.ids[i].clone(), format!("{e:#}")));
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "image {} is unreadable (use --skip-bad to leave such images out)",
                        list.paths[i].display()
                    )))
                }
            }
        }
        if images.is_empty() {
            continue;
        }
        let probs = model.score(&images)?;
        let bad: Vec<&str> = kept
            .iter()
            .zip(&probs)
            .filter(|(_, p)| !p.is_finite())
            .map(|(&i, _)| list.ids[i].as_str())
            .collect();
        if !bad.is_empty() {
            anyhow::bail!(
                "the model gave a non-finite probability (NaN or infinite) for {} of {} image(s) in this batch, e.g. {}; \
                 nothing was written. The checkpoint's weights are probably corrupt (a diverged run?): check them with `sevit info`",
                bad.len(),
                kept.len(),
                bad.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            );
        }
        for (i, p) in kept.into_iter().zip(probs) {
            out.rows.push(PredictionRow {
                id: list.ids[i].clone(),
                path: list.paths[i].clone(),
                probability: p,
                predicted: p >= opts.threshold,
            });
        }
    }
    anyhow::ensure!(
        !out.rows.is_empty(),
        "no readable image among {} given",
        list.paths.len()
    );
    if !out.skipped.is_empty() {
        tracing::warn!(
            skipped = out.skipped.len(),
            "unreadable images were skipped"
        );
    }
    Ok(out)
}

/// Quotes a CSV field when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl PredictOutcome {
    /// Writes the CSV `id,label,p_<positive>,predicted,threshold` (label empty, predicted
    /// 1/0), atomically: the schema of every sevit predictions file.
    pub fn write_csv(&self, path: &Path, positive: &str) -> anyhow::Result<()> {
        // The schema of every sevit predictions file (sevit_metrics::write_predictions_csv),
        // with the label column empty: these images have none.
        let mut text = format!(
            "id,label,{},predicted,threshold\n",
            csv_field(&sevit_metrics::probability_column(positive))
        );
        for r in &self.rows {
            text += &format!(
                "{},,{},{},{}\n",
                csv_field(&r.id),
                r.probability,
                if r.predicted { 1 } else { 0 },
                self.threshold
            );
        }
        write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing predictions {}", path.display()))
    }

    /// Number of images predicted positive.
    pub fn n_positive(&self) -> usize {
        self.rows.iter().filter(|r| r.predicted).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a.png"), "a.png");
        assert_eq!(csv_field("a,b.png"), "\"a,b.png\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn writes_one_row_per_image() {
        let o = PredictOutcome {
            rows: vec![
                PredictionRow {
                    id: "x,1.png".into(),
                    path: "x".into(),
                    probability: 0.75,
                    predicted: true,
                },
                PredictionRow {
                    id: "y.png".into(),
                    path: "y".into(),
                    probability: 0.25,
                    predicted: false,
                },
            ],
            skipped: vec![],
            threshold: 0.5,
        };
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.csv");
        o.write_csv(&p, "pneumonia").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "id,label,p_pneumonia,predicted,threshold\n\"x,1.png\",,0.75,1,0.5\ny.png,,0.25,0,0.5\n"
        );
        assert_eq!(o.n_positive(), 1);
    }
}
