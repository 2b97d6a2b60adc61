//! The machinery every training stage shares: networks, optimiser, schedules, the update
//! step, per-step seeding, epoch checkpoints and resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sevit_data::rng::{derive_seed, hash_str};
use sevit_data::{MultiCropConfig, Sample};
use sevit_model::{Checkpoint, DistlNet, ModelConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::clip::{cancel_gradients_last_layer, clip_gradients};
use crate::config::TrainConfig;
use crate::data::Batch;
use crate::ema::{copy_weights, update_momentum};
use crate::log::{progress_bar, JsonlLog};
use crate::loss::{DinoLoss, DinoLossConfig};
use crate::optim::AdamW;
use crate::schedule::Schedules;
use sevit_dist::Dist;

/// A network and its variables.
pub struct Net {
    /// The variables (names as the PyTorch state dict).
    pub vs: VarStore,
    /// The network.
    pub net: DistlNet,
}

impl Net {
    /// Builds a freshly initialised network; initialisation is seeded with `seed`.
    pub fn build(cfg: &ModelConfig, device: Device, drop_path: f64, seed: u64) -> Self {
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let net = DistlNet::new(&vs.root(), cfg, drop_path);
        Net { vs, net }
    }
}

/// What a stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Supervised BCE on labeled images (the initial model, or a supervised baseline).
    Supervised,
    /// DINO-only self-supervised pretraining (teacher and student, no labels).
    SelfSupervised,
    /// One DISTL step.
    Distl,
    /// DINO-only training of the feature head, backbone and class head frozen (before the
    /// first DISTL step).
    HeadWarmup,
}

impl StageKind {
    /// Whether the stage trains a teacher/student pair with the DINO loss (every kind but
    /// [`StageKind::Supervised`]).
    pub fn has_teacher(&self) -> bool {
        !matches!(self, StageKind::Supervised)
    }

    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            StageKind::Supervised => "supervised",
            StageKind::SelfSupervised => "self_supervised",
            StageKind::Distl => "distl",
            StageKind::HeadWarmup => "head_warmup",
        }
    }
}

/// Options of one stage run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the stage's last epoch checkpoint (when it exists).
    pub resume: bool,
    /// Stop (as if killed) after this many finished epochs; the run can then be resumed.
    pub stop_after_epochs: Option<usize>,
    /// Show a progress bar (only ever drawn when stderr is a terminal).
    pub progress: bool,
    /// The data-parallel group when this process is one rank of several (`None`: a single
    /// process; see [`crate::distributed`]).
    pub dist: Option<Dist>,
}

impl RunOptions {
    /// Whether this process writes files and reports: a single process, or rank 0 of a
    /// data-parallel job.
    pub fn is_main(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.is_main())
    }
}

/// What a stage run produced.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    /// Stage name.
    pub stage: String,
    /// The stage's checkpoint (last finished epoch).
    pub checkpoint: PathBuf,
    /// The stage's JSONL log.
    pub log: PathBuf,
    /// Finished epochs.
    pub epochs_done: usize,
    /// Epochs of the stage.
    pub epochs: usize,
    /// Unlabeled (schedule) iterations done.
    pub iterations: usize,
    /// Whether every epoch is done.
    pub complete: bool,
    /// Teacher EMA updates done by this run (not counting resumed epochs).
    pub ema_updates: usize,
    /// Correction-pass optimiser steps done by this run.
    pub correction_steps: usize,
}

/// The state of a stage being trained: the networks, optimiser, DINO loss, schedules and
/// position of one stage, driven by the loops of [`crate::loops`]. Its fields are the
/// engine's own; other tools read it through the accessors below.
pub struct Trainer {
    /// The configuration.
    pub(crate) cfg: TrainConfig,
    /// The resolved model configuration.
    pub(crate) model_cfg: ModelConfig,
    /// Training device.
    pub(crate) device: Device,
    /// Stage name (its directory name).
    pub(crate) stage: String,
    /// Stage kind.
    pub(crate) kind: StageKind,
    /// The student (trained by gradient).
    pub(crate) student: Net,
    /// The EMA teacher, for stages that have one.
    pub(crate) teacher: Option<Net>,
    /// Optimiser of the student.
    pub(crate) opt: AdamW,
    names: Vec<String>,
    /// DINO loss and centre, for stages that use it.
    pub(crate) dino: Option<DinoLoss>,
    /// Per-iteration schedules.
    pub(crate) sched: Schedules,
    /// Epochs of the stage.
    pub(crate) epochs: usize,
    /// Unlabeled iterations per epoch (the schedules' unit).
    pub(crate) iters_per_epoch: usize,
    /// Next epoch to run.
    pub(crate) epoch: usize,
    /// Next global unlabeled iteration.
    pub(crate) iteration: usize,
    /// Number of global (teacher) views.
    pub(crate) n_global: usize,
    /// Teacher EMA updates done by this process.
    pub(crate) ema_updates: usize,
    /// Correction-pass optimiser steps done by this process.
    pub(crate) correction_steps: usize,
    /// When model selection put an earlier epoch's student weights back (counted from 1):
    /// recorded in the checkpoint as `selected_epoch`, since `epoch` counts epochs done.
    pub(crate) selected_epoch: Option<usize>,
    /// The data-parallel group (`None`: a single process).
    pub(crate) dist: Option<Dist>,
    /// Forward-pass precision (`precision` of the config).
    pub(crate) precision: crate::precision::Precision,
    dir: PathBuf,
}

impl Trainer {
    /// A fresh stage: student initialised from `seed`; for the kinds with a teacher (see
    /// [`StageKind::has_teacher`]) the teacher (copy of the student, no drop-path, frozen) and
    /// the DINO loss.
    pub fn new(
        cfg: &TrainConfig,
        stage: &str,
        kind: StageKind,
        dir: &Path,
        epochs: usize,
        iters_per_epoch: usize,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            iters_per_epoch > 0,
            "stage {stage}: no training batch (empty image set?)"
        );
        let model_cfg = cfg.model.model_config()?;
        let device = cfg.device()?;
        let init_seed = derive_seed(&[cfg.seed, hash_str("init")]);
        let student = Net::build(&model_cfg, device, cfg.model.drop_path, init_seed);
        let teacher = if kind.has_teacher() {
            let mut t = Net::build(&model_cfg, device, 0.0, init_seed);
            copy_weights(&t.vs, &student.vs)?;
            t.vs.freeze();
            Some(t)
        } else {
            None
        };
        let opt = AdamW::new(&student.vs, |_| true);
        let names = opt.names();
        let d = &cfg.distl;
        let n_global = 2;
        let dino = kind.has_teacher().then(|| {
            DinoLoss::new(
                &DinoLossConfig {
                    out_dim: model_cfg.head.out_dim,
                    n_global,
                    warmup_teacher_temp: d.warmup_teacher_temp,
                    teacher_temp: d.teacher_temp,
                    warmup_teacher_temp_epochs: d.warmup_teacher_temp_epochs,
                    epochs,
                    student_temp: d.student_temp,
                    center_momentum: d.center_momentum,
                },
                device,
            )
        });
        let sched = Schedules::for_stage(&cfg.optim, epochs, iters_per_epoch, 1);
        Ok(Self {
            cfg: cfg.clone(),
            model_cfg,
            device,
            stage: stage.to_string(),
            kind,
            student,
            teacher,
            opt,
            names,
            dino,
            sched,
            epochs,
            iters_per_epoch,
            epoch: 0,
            iteration: 0,
            n_global,
            ema_updates: 0,
            correction_steps: 0,
            selected_epoch: None,
            dist: None,
            precision: cfg.precision()?,
            dir: dir.to_path_buf(),
        })
    }

    /// Trains only the student variables whose names satisfy `train`; the others are frozen
    /// (no gradient is computed for them, the optimiser leaves them alone, and the EMA keeps
    /// the teacher's copies equal to them when teacher and student start equal). Call before
    /// the stage runs.
    pub fn train_only(&mut self, train: impl Fn(&str) -> bool) {
        for (name, var) in self.student.vs.variables() {
            if !train(&name) {
                let _ = var.set_requires_grad(false);
            }
        }
        self.opt = AdamW::new(&self.student.vs, |_| true);
        self.names = self.opt.names();
    }

    /// Makes this trainer one rank of a data-parallel job (`None` leaves it a single
    /// process). `optim.batch_size` is then the batch of each process: the learning rate
    /// follows the linear scaling rule on the global batch `batch_size * world_size`, and the
    /// iterations per epoch given to [`Trainer::new`] must count global batches
    /// ([`crate::data::iters_per_epoch_sharded`]).
    pub fn with_dist(mut self, dist: Option<Dist>) -> Self {
        if let Some(d) = &dist {
            self.sched = Schedules::for_stage(
                &self.cfg.optim,
                self.epochs,
                self.iters_per_epoch,
                d.world_size(),
            );
        }
        self.dist = dist;
        self
    }

    /// The student network.
    pub fn student(&self) -> &Net {
        &self.student
    }

    /// The EMA teacher, for stages that have one.
    pub fn teacher(&self) -> Option<&Net> {
        self.teacher.as_ref()
    }

    /// The next global unlabeled (schedule) iteration.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// Moves the schedules to `iteration` (for tools that drive iterations themselves, such
    /// as the step benchmark; a stage's own loop starts at 0 or where its checkpoint left off).
    pub fn set_iteration(&mut self, iteration: usize) {
        self.iteration = iteration;
    }

    /// Enters the configured autocast region for forward passes (a no-op for `f32`); the
    /// backward pass runs after the guard is dropped, as in PyTorch.
    pub fn autocast(&self) -> crate::precision::Autocast {
        crate::precision::Autocast::enter(self.device, self.precision)
    }

    /// Whether this process writes files: a single process, or rank 0.
    pub fn is_main(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.is_main())
    }

    /// Overwrites this rank's state (networks, optimiser, DINO centre, epoch and iteration)
    /// with rank 0's; nothing for a single process.
    pub fn sync_from_main(&mut self) -> anyhow::Result<()> {
        let Some(d) = self.dist.clone() else {
            return Ok(());
        };
        let sorted = |vs: &VarStore| -> Vec<Tensor> {
            let v: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
            v.into_values().collect()
        };
        let mut ts = sorted(&self.student.vs);
        if let Some(t) = &self.teacher {
            ts.extend(sorted(&t.vs));
        }
        let state = self.opt.state();
        ts.extend(state.values().map(|t| t.shallow_clone()));
        if let Some(dl) = &self.dino {
            ts.push(dl.center.shallow_clone());
        }
        let counters = Tensor::from_slice(&[self.epoch as i64, self.iteration as i64]);
        ts.push(counters.shallow_clone());
        d.broadcast_tensors(&ts)
            .with_context(|| format!("stage {}: broadcasting rank 0's state", self.stage))?;
        self.opt.load_state(&state)?;
        self.epoch = counters.int64_value(&[0]) as usize;
        self.iteration = counters.int64_value(&[1]) as usize;
        Ok(())
    }

    /// The shuffled, augmented batches of `samples` for `epoch`, drawn with `seed` (this
    /// process's shard of each global batch in a data-parallel job).
    pub fn batches<'a>(
        &self,
        samples: &'a [Sample],
        views: &'a MultiCropConfig,
        seed: u64,
        epoch: u64,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Batch>> + 'a> {
        crate::data::train_batches(
            samples,
            views,
            &self.cfg,
            seed,
            epoch,
            self.device,
            self.dist.as_ref(),
        )
    }

    /// The stage's directory (`RUN/STAGE`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stage's epoch checkpoint (`STAGE/checkpoint.safetensors`).
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(crate::layout::CHECKPOINT_FILE)
    }

    /// Path of the stage log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(crate::layout::LOG_FILE)
    }

    /// Seeds libtorch's generator for one update, from (seed, stage, epoch, iteration, phase,
    /// batch): drop-path draws are then identical in a resumed run.
    pub fn seed_step(&self, epoch: usize, iteration: usize, phase: u64, batch: usize) {
        let s = derive_seed(&[
            self.cfg.seed,
            hash_str(&self.stage),
            epoch as u64,
            iteration as u64,
            phase,
            batch as u64,
        ]);
        tch::manual_seed((s >> 1) as i64);
    }

    /// Schedule values (lr, wd, momentum) at unlabeled iteration `it` (clamped to the end).
    pub fn sched_at(&self, it: usize) -> (f64, f64, f64) {
        let i = it.min(self.sched.lr.len().saturating_sub(1));
        (self.sched.lr[i], self.sched.wd[i], self.sched.momentum[i])
    }

    /// Back-propagates `loss` (a mean over this process's `n_images` images) into the
    /// student, averages the gradients over the global batch in a data-parallel job, clips per
    /// tensor, drops the feature head's last-layer gradient during the first
    /// `freeze_last_layer` epochs, and steps AdamW.
    pub fn update(
        &mut self,
        loss: &Tensor,
        n_images: usize,
        epoch: usize,
        lr: f64,
        wd: f64,
    ) -> anyhow::Result<()> {
        let mut grads = self.opt.gradients(loss);
        if let Some(d) = &self.dist {
            d.average_gradients(&mut grads, n_images)
                .with_context(|| format!("stage {}: averaging gradients", self.stage))?;
        }
        clip_gradients(&mut grads, self.cfg.optim.clip_grad);
        cancel_gradients_last_layer(
            &self.names,
            &mut grads,
            epoch,
            self.cfg.optim.freeze_last_layer,
        );
        self.opt.step(&grads, lr, wd)
    }

    /// Teacher EMA update with momentum `m`.
    pub fn ema(&mut self, m: f64) -> anyhow::Result<()> {
        if let Some(t) = &self.teacher {
            update_momentum(&t.vs, &self.student.vs, m)?;
            self.ema_updates += 1;
        }
        Ok(())
    }

    /// Reads scalars (batch means over this process's `n_images` images) from the device in
    /// one transfer, averaged over the global batch in a data-parallel job; errors naming the
    /// stage, epoch and iteration when the first one (the loss) is not finite.
    pub fn read_scalars(
        &self,
        xs: &[&Tensor],
        n_images: usize,
        epoch: usize,
        iteration: usize,
    ) -> anyhow::Result<Vec<f64>> {
        let parts: Vec<Tensor> = xs
            .iter()
            .map(|t| t.detach().to_kind(Kind::Double).reshape([1]))
            .collect();
        let mut v: Vec<f64> = Vec::<f64>::try_from(Tensor::cat(&parts, 0).to_device(Device::Cpu))?;
        if let Some(d) = &self.dist {
            let n = n_images as f64;
            let mut w: Vec<f64> = v.iter().map(|x| x * n).collect();
            w.push(n);
            let mut t = Tensor::from_slice(&w);
            d.all_reduce_sum(&mut t)
                .with_context(|| format!("stage {}: averaging the logged losses", self.stage))?;
            let w: Vec<f64> = Vec::<f64>::try_from(&t)?;
            let total = w[w.len() - 1];
            v = w[..w.len() - 1].iter().map(|x| x / total).collect();
        }
        if !v[0].is_finite() {
            let kept = if self.checkpoint_path().is_file() {
                format!(
                    "the last good checkpoint {} (after {} epoch(s)) is kept",
                    self.checkpoint_path().display(),
                    self.epoch
                )
            } else {
                "no checkpoint of this stage had been written yet; check optim.lr and the data"
                    .into()
            };
            bail!(
                "non-finite loss ({}) in stage {} at epoch {epoch}, iteration {iteration}: training stopped; {kept}",
                v[0],
                self.stage,
            );
        }
        Ok(v)
    }

    /// Runs epochs `self.epoch..epochs` (or up to `stop_after_epochs`), calling `epoch_fn` for
    /// each and writing a checkpoint after each. Resumes from the stage checkpoint first when
    /// `opts.resume` and one exists; refuses to overwrite an existing checkpoint otherwise.
    pub fn run<F>(&mut self, opts: &RunOptions, mut epoch_fn: F) -> anyhow::Result<StageOutcome>
    where
        F: FnMut(&mut Trainer, usize, &mut JsonlLog, &indicatif::ProgressBar) -> anyhow::Result<()>,
    {
        let ck_path = self.checkpoint_path();
        let main = self.is_main();
        if ck_path.exists() {
            if opts.resume {
                // Other ranks receive rank 0's restored state below.
                if main {
                    let ck = Checkpoint::load(&ck_path)?;
                    self.restore(&ck, &ck_path)?;
                    tracing::info!(stage = %self.stage, epochs_done = self.epoch, iteration = self.iteration, "resumed from {}", ck_path.display());
                }
            } else {
                bail!(
                    "{} already exists: pass --resume to continue that run, or remove the directory {} to start over",
                    ck_path.display(),
                    self.dir.display()
                );
            }
        }
        let mut log = if main {
            std::fs::create_dir_all(&self.dir)
                .with_context(|| format!("creating {}", self.dir.display()))?;
            JsonlLog::open(&self.log_path(), self.epoch)?
        } else {
            JsonlLog::disabled()
        };
        self.sync_from_main()?;
        let last = opts
            .stop_after_epochs
            .map_or(self.epochs, |s| s.min(self.epochs));
        let total = (self.epochs * self.iters_per_epoch) as u64;
        let pb = progress_bar(total, &self.stage, opts.progress && main);
        pb.set_position((self.epoch * self.iters_per_epoch) as u64);
        for e in self.epoch..last {
            let start = std::time::Instant::now();
            epoch_fn(self, e, &mut log, &pb)?;
            self.epoch = e + 1;
            self.save()?;
            if let Some(d) = &self.dist {
                // Other ranks may read the checkpoint next (evaluation, the next stage).
                d.barrier()
                    .with_context(|| format!("stage {}: waiting for the checkpoint", self.stage))?;
            }
            // Messages and CSV files count epochs from 1 (log.jsonl records from 0).
            tracing::info!(
                stage = %self.stage,
                epoch = e + 1,
                of = self.epochs,
                iterations = self.iteration,
                secs = format!("{:.1}", start.elapsed().as_secs_f64()),
                "epoch done, checkpoint {}",
                ck_path.display()
            );
        }
        pb.finish_and_clear();
        Ok(StageOutcome {
            stage: self.stage.clone(),
            checkpoint: ck_path,
            log: self.log_path(),
            epochs_done: self.epoch,
            epochs: self.epochs,
            iterations: self.iteration,
            complete: self.epoch >= self.epochs,
            ema_updates: self.ema_updates,
            correction_steps: self.correction_steps,
        })
    }
}

pub use crate::stage_checkpoint::{is_complete, meta_usize, TRAIN_CONFIG_KEY};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_loss_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig::default_with_overrides(&[
            "device=\"cpu\"".into(),
            "model.preset=\"micro\"".into(),
            "model.out_dim=16".into(),
            "model.hidden_dim=16".into(),
            "model.bottleneck_dim=8".into(),
            "model.cls_hidden_dim=8".into(),
        ])
        .unwrap();
        let tr = Trainer::new(&cfg, "step1", StageKind::Distl, dir.path(), 2, 3).unwrap();
        let ok = tr
            .read_scalars(&[&Tensor::from(0.5f32), &Tensor::from(2.0f32)], 4, 0, 1)
            .unwrap();
        assert_eq!(ok, vec![0.5, 2.0]);
        let err = tr
            .read_scalars(&[&Tensor::from(f32::NAN)], 4, 1, 7)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("non-finite") && err.contains("iteration 7") && err.contains("checkpoint"),
            "{err}"
        );
    }
}
