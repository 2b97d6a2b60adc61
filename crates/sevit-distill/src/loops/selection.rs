//! Model selection of a supervised stage on the validation split (`pretrain.select =
//! "best_val"`): the validation AUC after every `val_every` epochs goes to `STAGE/val.csv`, the
//! weights of the best epoch to `STAGE/best.safetensors` (both atomic, so an interrupted run
//! resumes with its best so far), and after the last epoch the student takes the best
//! weights, which the stage's final checkpoint then holds. The validation images are decoded
//! once, on the first scoring, and kept on the training device.

use std::path::PathBuf;

use anyhow::Context;
use sevit_data::Sample;
use sevit_metrics::roc_auc;
use sevit_model::Checkpoint;
use tch::Tensor;

use crate::data::eval_batches;
use crate::layout::write_atomic;
use crate::log::{JsonlLog, ValidationRecord, VALIDATION_KIND};
use crate::scoring::score_images;
use crate::trainer::Trainer;

/// File name of the best epoch's weights in a stage directory.
pub(crate) const BEST_FILE: &str = "best.safetensors";
/// File name of the validation curve in a stage directory.
pub(crate) const VAL_CSV_FILE: &str = "val.csv";
/// Metadata keys of `best.safetensors`.
const EPOCH_KEY: &str = "epoch";
const AUC_KEY: &str = "val_auc";

/// The best-validation-AUC tracker of one supervised stage.
pub(crate) struct BestOnVal {
    samples: Vec<Sample>,
    /// The validation images as inference batches, loaded on the first scoring.
    images: Option<Vec<Tensor>>,
    labels: Vec<bool>,
    every: usize,
    best_path: PathBuf,
    csv_path: PathBuf,
    /// (epoch number counted from 1, validation AUC) of the best epoch so far.
    best: Option<(usize, f64)>,
    rows: Vec<(usize, f64)>,
}

impl BestOnVal {
    /// The tracker for the stage whose directory is `tr.dir`, over the validation images
    /// `val`. State left by an earlier run is kept only when the stage has a checkpoint to
    /// resume (otherwise it belongs to a run that is being started over).
    pub(crate) fn open(tr: &Trainer, val: Vec<Sample>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !val.is_empty(),
            "pretrain.select = \"best_val\" needs a validation split, and the split of this run \
             has no `val` images: split with `sevit split --val-fraction 0.1`, or set \
             pretrain.select = \"last\""
        );
        let labels: Vec<bool> = val.iter().map(|s| s.target > 0.5).collect();
        anyhow::ensure!(
            labels.iter().any(|&l| l) && labels.iter().any(|&l| !l),
            "the validation split has only one class ({} images): it cannot rank models by AUC",
            labels.len()
        );
        let best_path = tr.dir().join(BEST_FILE);
        let csv_path = tr.dir().join(VAL_CSV_FILE);
        let mut me = Self {
            samples: val,
            images: None,
            labels,
            every: tr.cfg.pretrain.val_every,
            best_path,
            csv_path,
            best: None,
            rows: Vec::new(),
        };
        if tr.checkpoint_path().exists() {
            me.best = read_best(&me.best_path)?;
            me.rows = me.read_rows()?;
        }
        Ok(me)
    }

    fn read_rows(&self) -> anyhow::Result<Vec<(usize, f64)>> {
        if !self.csv_path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&self.csv_path)
            .with_context(|| format!("reading {}", self.csv_path.display()))?;
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (e, a) = l
                    .split_once(',')
                    .with_context(|| format!("{}: bad line {l:?}", self.csv_path.display()))?;
                Ok((e.parse()?, a.parse()?))
            })
            .collect()
    }

    /// The student's probabilities for the validation images, in sample order.
    fn score(&mut self, tr: &Trainer) -> anyhow::Result<Vec<f64>> {
        if self.images.is_none() {
            let cfg = &tr.cfg;
            let batches = eval_batches(
                &self.samples,
                cfg.eval_image_size(),
                cfg.eval.batch_size,
                cfg.views.inference_blur_radius,
                false,
                tr.device,
            )?
            .map(|b| b.map(|(images, _)| images))
            .collect::<anyhow::Result<Vec<Tensor>>>()?;
            self.images = Some(batches);
        }
        let mut scores = Vec::with_capacity(self.samples.len());
        for images in self.images.iter().flatten() {
            scores.extend(score_images(&tr.student.net, images)?);
        }
        anyhow::ensure!(
            scores.len() == self.samples.len(),
            "{} validation images scored out of {} (unreadable images?)",
            scores.len(),
            self.samples.len()
        );
        Ok(scores)
    }

    /// Called at the end of epoch `epoch` (0-based) of `epochs`: scores the validation split
    /// when due (a validation line in `log`), keeps the weights when they are the best so far,
    /// and after the last epoch loads the best weights into the student.
    pub(crate) fn after_epoch(
        &mut self,
        tr: &mut Trainer,
        epoch: usize,
        epochs: usize,
        log: &mut JsonlLog,
    ) -> anyhow::Result<()> {
        let done = epoch + 1;
        let last = done == epochs;
        if done.is_multiple_of(self.every) || last {
            let scores = self.score(tr)?;
            let auc = roc_auc(&self.labels, &scores)?;
            log.write(&ValidationRecord {
                stage: tr.stage.clone(),
                kind: VALIDATION_KIND.into(),
                epoch,
                iteration: tr.iteration,
                val_auc: auc,
                val_loss: mean_bce(&self.labels, &scores),
                images: scores.len(),
            })?;
            self.rows.retain(|r| r.0 < done);
            self.rows.push((done, auc));
            let better = self.best.is_none_or(|(_, b)| auc > b);
            // Epochs counted from 1, as in val.csv and the selection line below.
            tracing::info!(
                stage = %tr.stage,
                epoch = done,
                val_auc = format!("{auc:.4}"),
                best = better,
                "validation"
            );
            if tr.is_main() {
                let mut csv = String::from("epoch,val_auc\n");
                for (e, a) in &self.rows {
                    csv.push_str(&format!("{e},{a:.6}\n"));
                }
                write_atomic(&self.csv_path, csv.as_bytes())?;
                if better {
                    // Loadable on its own (predict, eval): the model and training configs.
                    let mut ck = Checkpoint::new();
                    ck.put_vars("student.", &tr.student.vs);
                    ck.put_json(sevit_model::import::MODEL_CONFIG_KEY, &tr.model_cfg)?;
                    ck.put_json(crate::trainer::TRAIN_CONFIG_KEY, &tr.cfg)?;
                    ck.metadata.insert(EPOCH_KEY.into(), done.to_string());
                    ck.metadata.insert(AUC_KEY.into(), auc.to_string());
                    ck.save(&self.best_path)?;
                }
            }
            if better {
                self.best = Some((done, auc));
            }
        }
        if last {
            if let Some(d) = &tr.dist {
                d.barrier()
                    .context("waiting for the best validation checkpoint")?;
            }
            let (best_epoch, best_auc) = self.best.context("no validation AUC was recorded")?;
            let ck = Checkpoint::load(&self.best_path)?;
            ck.load_vars("student.", &mut tr.student.vs)
                .with_context(|| format!("loading {}", self.best_path.display()))?;
            tr.selected_epoch = Some(best_epoch);
            tracing::info!(
                stage = %tr.stage,
                epoch = best_epoch,
                val_auc = format!("{best_auc:.4}"),
                "selected the epoch with the best validation AUC"
            );
        }
        Ok(())
    }
}

/// Mean binary cross-entropy of probabilities `p` against `labels` (probabilities clamped to
/// [1e-7, 1 - 1e-7], as a log of 0 would be infinite).
fn mean_bce(labels: &[bool], p: &[f64]) -> f64 {
    let sum: f64 = labels
        .iter()
        .zip(p)
        .map(|(&y, &p)| {
            let p = p.clamp(1e-7, 1.0 - 1e-7);
            -if y { p.ln() } else { (1.0 - p).ln() }
        })
        .sum();
    sum / labels.len().max(1) as f64
}

/// (epoch counted from 1, validation AUC) recorded in a `best.safetensors`; `None` when the
/// file does not exist.
pub(crate) fn read_best(path: &std::path::Path) -> anyhow::Result<Option<(usize, f64)>> {
    if !path.exists() {
        return Ok(None);
    }
    let ck = Checkpoint::load(path)?;
    let get = |k: &str| {
        ck.metadata
            .get(k)
            .with_context(|| format!("{}: no metadata `{k}`", path.display()))
    };
    let epoch = get(EPOCH_KEY)?.parse().context("bad epoch")?;
    let auc = get(AUC_KEY)?.parse().context("bad val_auc")?;
    Ok(Some((epoch, auc)))
}
