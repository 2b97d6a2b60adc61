//! The checkpoint of a stage, written after every epoch and resumed from: the student and
//! teacher (`student.*`, `teacher.*`, PyTorch/DINO names), the optimiser state (`optim.*`),
//! the DINO centre (`dino.center`), the model and training configs (JSON metadata) and where
//! the stage stands ([`StageProgress`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use sevit_model::import::MODEL_CONFIG_KEY;
use sevit_model::Checkpoint;
use tch::{Device, Kind, Tensor};

use crate::config::TrainConfig;
use crate::trainer::Trainer;

/// Checkpoint metadata key of the training config (JSON).
pub const TRAIN_CONFIG_KEY: &str = "train_config";

/// Where a stage stands, as its checkpoint's metadata records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageProgress {
    /// Stage name (its directory).
    pub stage: String,
    /// Stage kind (`supervised`, `self_supervised`, `distl`, `head_warmup`).
    pub kind: String,
    /// Epochs done.
    pub epoch: usize,
    /// Epochs of the stage.
    pub epochs: usize,
    /// Next global unlabeled (schedule) iteration.
    pub iteration: usize,
    /// Iterations per epoch.
    pub iters_per_epoch: usize,
    /// Seed of the training config.
    pub seed: u64,
    /// The epoch (from 1) whose student weights model selection kept, when not the last.
    pub selected_epoch: Option<usize>,
}

impl StageProgress {
    /// Whether every epoch is done.
    pub fn complete(&self) -> bool {
        self.epoch >= self.epochs
    }

    fn write(&self, ck: &mut Checkpoint) {
        let m = &mut ck.metadata;
        m.insert("stage".into(), self.stage.clone());
        m.insert("kind".into(), self.kind.clone());
        m.insert("epoch".into(), self.epoch.to_string());
        m.insert("epochs".into(), self.epochs.to_string());
        m.insert("iteration".into(), self.iteration.to_string());
        m.insert("iters_per_epoch".into(), self.iters_per_epoch.to_string());
        m.insert("seed".into(), self.seed.to_string());
        m.insert("complete".into(), self.complete().to_string());
        if let Some(e) = self.selected_epoch {
            m.insert("selected_epoch".into(), e.to_string());
        }
    }

    /// Reads the progress recorded in `ck` (loaded from `origin`, named in errors).
    ///
    /// # Errors
    /// A key is missing or not a number.
    pub fn read(ck: &Checkpoint, origin: &Path) -> anyhow::Result<StageProgress> {
        let meta = |k: &str| -> anyhow::Result<String> {
            ck.metadata
                .get(k)
                .cloned()
                .with_context(|| format!("{}: no metadata `{k}`", origin.display()))
        };
        let num = |k: &str| -> anyhow::Result<usize> {
            meta(k)?
                .parse()
                .with_context(|| format!("{}: bad metadata `{k}`", origin.display()))
        };
        Ok(StageProgress {
            stage: meta("stage")?,
            kind: meta("kind")?,
            epoch: num("epoch")?,
            epochs: num("epochs")?,
            iteration: num("iteration")?,
            iters_per_epoch: num("iters_per_epoch")?,
            seed: num("seed")? as u64,
            selected_epoch: meta_usize(ck, "selected_epoch"),
        })
    }
}

impl Trainer {
    fn progress(&self) -> StageProgress {
        StageProgress {
            stage: self.stage.clone(),
            kind: self.kind.as_str().into(),
            epoch: self.epoch,
            epochs: self.epochs,
            iteration: self.iteration,
            iters_per_epoch: self.iters_per_epoch,
            seed: self.cfg.seed,
            selected_epoch: self.selected_epoch,
        }
    }

    /// Writes the epoch checkpoint atomically (rank 0 only in a data-parallel job).
    pub fn save(&self) -> anyhow::Result<()> {
        if !self.is_main() {
            return Ok(());
        }
        let mut ck = Checkpoint::new();
        ck.put_vars("student.", &self.student.vs);
        if let Some(t) = &self.teacher {
            ck.put_vars("teacher.", &t.vs);
        }
        for (k, v) in self.opt.state() {
            ck.tensors.insert(
                format!("optim.{k}"),
                v.detach().to_device(Device::Cpu).copy(),
            );
        }
        if let Some(d) = &self.dino {
            ck.tensors.insert(
                "dino.center".into(),
                d.center.detach().to_device(Device::Cpu).copy(),
            );
        }
        ck.put_json(MODEL_CONFIG_KEY, &self.model_cfg)?;
        ck.put_json(TRAIN_CONFIG_KEY, &self.cfg)?;
        self.progress().write(&mut ck);
        ck.save(&self.checkpoint_path())
    }

    /// Restores a checkpoint written by [`Trainer::save`] for this same stage and config.
    ///
    /// # Errors
    /// The checkpoint belongs to another stage, was trained with another config or on other
    /// data, or lacks a tensor.
    pub fn restore(&mut self, ck: &Checkpoint, origin: &Path) -> anyhow::Result<()> {
        let saved = StageProgress::read(ck, origin)?;
        let here = self.progress();
        if saved.kind != here.kind || saved.stage != here.stage {
            bail!(
                "{} belongs to stage {} ({}), not {}",
                origin.display(),
                saved.stage,
                saved.kind,
                here.stage
            );
        }
        let saved_cfg: TrainConfig = ck.get_json(TRAIN_CONFIG_KEY)?;
        if !same_training(&saved_cfg, &self.cfg) {
            bail!(
                "{}: the training config differs from the one the checkpoint was trained with; \
                 resume with the same config (device, threads and data settings may differ)",
                origin.display()
            );
        }
        if saved.iters_per_epoch != here.iters_per_epoch || saved.epochs != here.epochs {
            bail!(
                "{}: the checkpoint has {} iterations/epoch over {} epochs, this run {} over {} \
                 (different data?)",
                origin.display(),
                saved.iters_per_epoch,
                saved.epochs,
                here.iters_per_epoch,
                here.epochs
            );
        }
        ck.load_vars("student.", &mut self.student.vs)
            .with_context(|| format!("restoring the student from {}", origin.display()))?;
        if let Some(t) = &mut self.teacher {
            ck.load_vars("teacher.", &mut t.vs)
                .with_context(|| format!("restoring the teacher from {}", origin.display()))?;
        }
        let optim: BTreeMap<String, Tensor> = ck
            .tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("optim.")
                    .map(|n| (n.to_string(), v.shallow_clone()))
            })
            .collect();
        self.opt
            .load_state(&optim)
            .with_context(|| format!("restoring the optimiser from {}", origin.display()))?;
        if let Some(d) = &mut self.dino {
            d.center = ck
                .tensor("dino.center")?
                .to_device(self.device)
                .to_kind(Kind::Float);
        }
        self.epoch = saved.epoch;
        self.iteration = saved.iteration;
        Ok(())
    }
}

/// Whether two configs train identically (device, threads and data-loading settings aside).
fn same_training(a: &TrainConfig, b: &TrainConfig) -> bool {
    let norm = |c: &TrainConfig| {
        let mut c = c.clone();
        c.device = String::new();
        c.threads = 0;
        c.data = Default::default();
        c
    };
    norm(a) == norm(b)
}

/// Reads the metadata value `key` of a checkpoint as a number.
pub fn meta_usize(ck: &Checkpoint, key: &str) -> Option<usize> {
    ck.metadata.get(key).and_then(|s| s.parse().ok())
}

/// Whether the checkpoint at `path` exists and records a finished stage.
///
/// # Errors
/// The file exists but cannot be read as a checkpoint.
pub fn is_complete(path: &Path) -> anyhow::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let ck = Checkpoint::load(path)?;
    Ok(ck
        .metadata
        .get("complete")
        .map(|s| s == "true")
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_through_the_metadata() {
        let p = StageProgress {
            stage: "step2".into(),
            kind: "distl".into(),
            epoch: 3,
            epochs: 3,
            iteration: 69,
            iters_per_epoch: 23,
            seed: 7,
            selected_epoch: Some(2),
        };
        let mut ck = Checkpoint::new();
        p.write(&mut ck);
        assert_eq!(ck.metadata["complete"], "true");
        assert_eq!(StageProgress::read(&ck, Path::new("x")).unwrap(), p);
        ck.metadata.remove("iteration");
        let e = StageProgress::read(&ck, Path::new("x.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.safetensors") && e.contains("iteration"),
            "{e}"
        );
    }
}
