//! One DISTL step T: self-training + DINO on the unlabeled folds `0..T`, with correction
//! passes over the labeled set.

use std::path::PathBuf;

use anyhow::Context;
use sevit_correction::{Curriculum, LoopState, StepInit};
use sevit_data::rng::{derive_seed, hash_str};
use sevit_data::{Sample, Split, Subset};
use tch::{Kind, Tensor};

use super::head_warmup::warm_up_dino_head;
use super::teacher_student::{forward, start_teacher_and_student, teacher_student_trainer};
use crate::audit::{append_epoch, audit_path, PseudoLabelAudit};
use crate::config::TrainConfig;
use crate::data::Batch;
use crate::layout::{stage_name, RunLayout};
use crate::log::{JsonlLog, LogRecord, StepKind};
use crate::loss::{combine, correction_bce, self_training_loss};
use crate::schedule::alpha_weight;
use crate::trainer::{is_complete, RunOptions, StageKind, StageOutcome, Trainer};

/// Everything one DISTL step needs besides the config.
#[derive(Debug, Clone)]
pub struct DistillInputs {
    /// Stage name (its directory in the run), `step{T}` in a curriculum.
    pub stage: String,
    /// Unlabeled images (labels, if any, are not used).
    pub unlabeled: Vec<Sample>,
    /// Labeled images for the correction passes.
    pub labeled: Vec<Sample>,
    /// Checkpoint the step starts from.
    pub init: PathBuf,
    /// `true`: teacher and student both start from the init's student (T = 1); `false`:
    /// from its teacher and student (T > 1).
    pub init_both_from_student: bool,
    /// The fold of each unlabeled image when their labels are true labels hidden from
    /// training (a split's folds): the step then audits its pseudo-labels against them
    /// (`STAGE/pseudo_labels.csv`, [`crate::audit`]). `None`: no labels to audit against.
    pub audit_folds: Option<Vec<usize>>,
}

/// DISTL step `t` of the curriculum of run `run`: unlabeled folds `0..t`, labeled set for
/// corrections, starting from `pretrain/` (t = 1) or `step{t-1}/`. Output: `RUN/step{t}/`.
/// With `distl.head_warmup_epochs > 0`, step 1 starts from `RUN/head-warmup/`, trained first
/// when not complete (an unfinished warm-up's outcome is returned as it stops).
pub fn distill(
    run: &RunLayout,
    cfg: &TrainConfig,
    t: usize,
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    let split = Split::read_csv(&run.split_csv()).with_context(|| {
        format!(
            "reading the split of run {} (run `sevit split` first)",
            run.root.display()
        )
    })?;
    let step = Curriculum::new(split.num_folds())?.step(t)?;
    let init = run.checkpoint(&step.init_dir_name());
    if !is_complete(&init)? {
        anyhow::bail!(
            "step T={t} starts from {}, which is missing or unfinished: run {} first",
            init.display(),
            if step.init == StepInit::Pretrain {
                "`sevit pretrain`".to_string()
            } else {
                format!("`sevit distill --step {}`", t - 1)
            }
        );
    }
    let unlabeled = split.unlabeled_upto(t);
    let audit_folds = split.unlabeled_folds_upto(t);
    let init_both_from_student = step.init == StepInit::Pretrain;
    let init = if init_both_from_student && cfg.distl.head_warmup_epochs > 0 {
        let warmed = run.checkpoint(stage_name::HEAD_WARMUP);
        if !is_complete(&warmed)? {
            let outcome = warm_up_dino_head(run, cfg, &unlabeled, &init, opts)?;
            if !outcome.complete {
                return Ok(outcome);
            }
        }
        warmed
    } else {
        init
    };
    let inputs = DistillInputs {
        stage: stage_name::step(t),
        unlabeled,
        labeled: split.samples(Subset::Labeled),
        init,
        init_both_from_student,
        audit_folds: Some(audit_folds),
    };
    distill_with(run, cfg, &inputs, opts)
}

/// One DISTL step on explicit inputs (see [`distill`]).
pub fn distill_with(
    run: &RunLayout,
    cfg: &TrainConfig,
    inputs: &DistillInputs,
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    let stage = inputs.stage.as_str();
    anyhow::ensure!(
        !inputs.unlabeled.is_empty(),
        "stage {stage}: no unlabeled images"
    );
    let epochs = cfg.optim.epochs;
    let kind = StageKind::Distl;
    let n = inputs.unlabeled.len();
    let mut tr = teacher_student_trainer(run, cfg, stage, kind, epochs, n, opts)?;
    let t_prefix = if inputs.init_both_from_student {
        "student."
    } else {
        "teacher."
    };
    start_teacher_and_student(&mut tr, &inputs.init, t_prefix)?;
    let policy = cfg.distl.correction.build()?;
    let unl_seed = derive_seed(&[cfg.seed, hash_str(stage), hash_str("unlabeled")]);
    let lab_seed = derive_seed(&[cfg.seed, hash_str(stage), hash_str("correction")]);
    tracing::info!(
        stage,
        unlabeled = inputs.unlabeled.len(),
        labeled = inputs.labeled.len(),
        iters_per_epoch = tr.iters_per_epoch,
        epochs,
        correction = %policy.describe(),
        "DISTL step"
    );
    let views = cfg.views.clone();
    let mut audit = match &inputs.audit_folds {
        Some(folds) => Some(PseudoLabelAudit::new(
            folds.clone(),
            inputs.unlabeled.iter().map(|s| s.target > 0.5).collect(),
        )?),
        None => None,
    };
    let audit_file = audit_path(&run.stage_dir(stage));
    tr.run(opts, |tr, epoch, log, pb| {
        for (i, b) in tr
            .batches(&inputs.unlabeled, &views, unl_seed, epoch as u64)?
            .enumerate()
        {
            let b = b?;
            let it = tr.iteration;
            let o = unlabeled_iteration(tr, &b, epoch)?;
            if let Some(a) = audit.as_mut() {
                let p = Vec::<f64>::try_from(
                    o.teacher_logit_v1
                        .detach()
                        .sigmoid()
                        .to_kind(Kind::Double)
                        .to_device(tch::Device::Cpu),
                )?;
                a.record(&b.indices, &p)?;
            }
            log.write(&LogRecord {
                dino: Some(o.dino),
                self_training: Some(o.bce),
                momentum: Some(o.momentum),
                agreement: Some(o.agreement),
                ..LogRecord::new(
                    &tr.stage,
                    StepKind::Unlabeled,
                    epoch,
                    it,
                    o.loss,
                    o.lr,
                    o.wd,
                )
            })?;
            let state = LoopState {
                epoch,
                iteration: it,
                iter_in_epoch: i,
                iters_per_epoch: tr.iters_per_epoch,
            };
            if policy.should_correct(&state) {
                correction_pass(tr, &inputs.labeled, lab_seed, epoch, it, log)?;
            }
            // The step's numbers on the progress line, as DINO's MetricLogger prints them.
            pb.set_message(format!(
                "epoch {}/{} loss {:.4} dino {:.4} self-training {:.4} agree {:.2} lr {:.2e}",
                epoch + 1,
                tr.epochs,
                o.loss,
                o.dino,
                o.bce,
                o.agreement,
                o.lr
            ));
            pb.inc(1);
        }
        if let Some(a) = audit.as_mut() {
            let rows = a.finish_epoch(epoch);
            if tr.is_main() {
                append_epoch(&audit_file, epoch, &rows)?;
            }
        }
        Ok(())
    })
}

/// Fraction of images whose thresholded (logit > 0) predictions agree.
fn agreement(a: &Tensor, b: &Tensor) -> Tensor {
    a.gt(0.0)
        .eq_tensor(&b.gt(0.0))
        .to_kind(Kind::Float)
        .mean(Kind::Float)
}

/// One full pass over the labeled set after unlabeled iteration `it`
/// ([`correction_iteration`] per batch).
fn correction_pass(
    tr: &mut Trainer,
    labeled: &[Sample],
    seed: u64,
    epoch: usize,
    it: usize,
    log: &mut JsonlLog,
) -> anyhow::Result<()> {
    if labeled.is_empty() {
        return Ok(());
    }
    let views = tr.cfg.views.clone();
    for (j, b) in tr.batches(labeled, &views, seed, it as u64)?.enumerate() {
        let o = correction_iteration(tr, &b?, epoch, it, j)?;
        log.write(&LogRecord {
            dino: Some(o.dino),
            correction: Some(o.bce),
            agreement: Some(o.agreement),
            batch: j,
            ..LogRecord::new(
                &tr.stage,
                StepKind::Correction,
                epoch,
                it,
                o.loss,
                o.lr,
                o.wd,
            )
        })?;
    }
    Ok(())
}

/// What one update of a DISTL step did: the values its log line records, and the teacher's
/// class logits on global view 1 (the pseudo-labels' logits).
#[derive(Debug)]
pub struct IterationOutcome {
    /// Total loss back-propagated.
    pub loss: f64,
    /// DINO loss.
    pub dino: f64,
    /// Self-training loss (unlabeled iteration) or BCE against true labels (correction).
    pub bce: f64,
    /// Share of images on which teacher (view 1) and student (view 2) agree at 0.5.
    pub agreement: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Weight decay used.
    pub wd: f64,
    /// Teacher EMA momentum applied (NaN for a correction batch: no EMA).
    pub momentum: f64,
    /// Teacher class logits on global view 1 `[B]`.
    pub teacher_logit_v1: Tensor,
}

impl IterationOutcome {
    /// From the scalars read back in the order (loss, DINO, BCE, agreement).
    fn read(v: &[f64], lr: f64, wd: f64, momentum: f64, teacher_logit_v1: Tensor) -> Self {
        IterationOutcome {
            loss: v[0],
            dino: v[1],
            bce: v[2],
            agreement: v[3],
            lr,
            wd,
            momentum,
            teacher_logit_v1,
        }
    }
}

/// One unlabeled DISTL iteration at the trainer's current schedule iteration: teacher on the
/// global views, student on every view, `λ·L_dino + (1−λ)·α(e)·L_st` (the DINO term only while
/// `epoch < distl.dino_epochs`), the student update (clipping, frozen last layer, AdamW at
/// the schedule's lr and wd) and the teacher EMA; the schedules then advance one iteration.
/// What [`distill_with`] runs for every batch; the benchmark times the same function.
///
/// # Errors
/// A non-finite loss, or a failed update.
pub fn unlabeled_iteration(
    tr: &mut Trainer,
    b: &Batch,
    epoch: usize,
) -> anyhow::Result<IterationOutcome> {
    let it = tr.iteration;
    tr.seed_step(epoch, it, 0, 0);
    let (lr, wd, m) = tr.sched_at(it);
    let f = forward(tr, b, epoch)?;
    let st = self_training_loss(&f.student_logit_v2, &f.teacher_logit_v1);
    let d = &tr.cfg.distl;
    let alpha = if !d.self_training {
        0.0
    } else if d.alpha {
        alpha_weight(epoch, tr.epochs)
    } else {
        1.0
    };
    let loss = combine(&f.dino, &st, alpha, d.lambda, epoch, tr.cfg.dino_epochs());
    let agree = agreement(&f.student_logit_v2, &f.teacher_logit_v1);
    let v = tr.read_scalars(&[&loss, &f.dino, &st, &agree], b.len(), epoch, it)?;
    tr.update(&loss, b.len(), epoch, lr, wd)?;
    tr.ema(m)?;
    tr.iteration += 1;
    Ok(IterationOutcome::read(&v, lr, wd, m, f.teacher_logit_v1))
}

/// Batch `j` of a correction pass after unlabeled iteration `it`: loss
/// `λ·L_dino + (1−λ)·BCE(student logit on global view 2, label)` (BCE only once
/// `epoch >= distl.dino_epochs`); the student is updated at the schedule values of `it`; the
/// teacher is not EMA-updated and the schedules do not advance.
///
/// # Errors
/// A non-finite loss, or a failed update.
pub fn correction_iteration(
    tr: &mut Trainer,
    b: &Batch,
    epoch: usize,
    it: usize,
    j: usize,
) -> anyhow::Result<IterationOutcome> {
    let (lr, wd, _) = tr.sched_at(it);
    tr.seed_step(epoch, it, 1, j);
    let f = forward(tr, b, epoch)?;
    let ce = correction_bce(&f.student_logit_v2, &b.targets);
    let loss = combine(
        &f.dino,
        &ce,
        1.0,
        tr.cfg.distl.lambda,
        epoch,
        tr.cfg.dino_epochs(),
    );
    let agree = agreement(&f.student_logit_v2, &f.teacher_logit_v1);
    let v = tr.read_scalars(&[&loss, &f.dino, &ce, &agree], b.len(), epoch, it)?;
    tr.update(&loss, b.len(), epoch, lr, wd)?;
    tr.correction_steps += 1;
    Ok(IterationOutcome::read(
        &v,
        lr,
        wd,
        f64::NAN,
        f.teacher_logit_v1,
    ))
}
