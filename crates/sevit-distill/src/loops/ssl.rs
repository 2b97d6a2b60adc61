//! DINO-only self-supervised pretraining of the backbone on a pool of unlabeled images.

use sevit_data::rng::{derive_seed, hash_str};
use sevit_data::Sample;

use crate::config::TrainConfig;
use crate::layout::{stage_name, RunLayout};
use crate::log::{LogRecord, StepKind};
use crate::trainer::{RunOptions, StageKind, StageOutcome, Trainer};

/// DINO self-distillation (teacher EMA, centre, multi-crop) on `pool`, no labels used.
/// Output: `RUN/ssl/`; start the initial model from it with
/// `pretrain --init RUN/ssl/checkpoint.safetensors --init-weights teacher`.
pub fn pretrain_self_supervised(
    run: &RunLayout,
    cfg: &TrainConfig,
    pool: &[Sample],
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    self_supervised_stage(run, cfg, pool, None, opts)
}

/// [`pretrain_self_supervised`] continued from an earlier self-supervised checkpoint `init`
/// (student from its `student.*`, teacher from its `teacher.*`; the DINO centre starts
/// afresh): more DINO pretraining on new images, e.g. a shared backbone adapted to a site's
/// unlabeled images.
pub fn continue_self_supervised(
    run: &RunLayout,
    cfg: &TrainConfig,
    pool: &[Sample],
    init: &std::path::Path,
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    self_supervised_stage(run, cfg, pool, Some(init), opts)
}

fn self_supervised_stage(
    run: &RunLayout,
    cfg: &TrainConfig,
    pool: &[Sample],
    init: Option<&std::path::Path>,
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    anyhow::ensure!(
        !pool.is_empty(),
        "self-supervised pretraining: the image pool is empty"
    );
    let stage = stage_name::SSL;
    let epochs = cfg.pretrain.self_supervised_epochs;
    anyhow::ensure!(
        epochs > 0,
        "pretrain.self_supervised_epochs must be at least 1"
    );
    let kind = StageKind::SelfSupervised;
    let mut tr = super::teacher_student::teacher_student_trainer(
        run,
        cfg,
        stage,
        kind,
        epochs,
        pool.len(),
        opts,
    )?;
    if let Some(init) = init {
        super::teacher_student::start_teacher_and_student(&mut tr, init, "teacher.")?;
    }
    let loader_seed = derive_seed(&[cfg.seed, hash_str(stage), hash_str("pool")]);
    tracing::info!(
        images = pool.len(),
        iters_per_epoch = tr.iters_per_epoch,
        epochs,
        "self-supervised (DINO) pretraining"
    );
    run_dino_only(&mut tr, pool, loader_seed, opts)
}

/// Runs the epochs of a DINO-only stage on `images`: per batch the DINO loss of teacher and
/// student, a student update and the teacher EMA; batches drawn with `loader_seed`. Shared by
/// self-supervised pretraining and the DINO-head warm-up.
pub(super) fn run_dino_only(
    tr: &mut Trainer,
    images: &[Sample],
    loader_seed: u64,
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    tr.run(opts, |tr, epoch, log, pb| {
        let views = tr.cfg.views.clone();
        for b in tr.batches(images, &views, loader_seed, epoch as u64)? {
            let b = b?;
            let it = tr.iteration;
            tr.seed_step(epoch, it, 0, 0);
            let (lr, wd, m) = tr.sched_at(it);
            let loss = super::teacher_student::forward(tr, &b, epoch)?.dino;
            let v = tr.read_scalars(&[&loss], b.len(), epoch, it)?;
            tr.update(&loss, b.len(), epoch, lr, wd)?;
            tr.ema(m)?;
            log.write(&LogRecord {
                dino: Some(v[0]),
                momentum: Some(m),
                ..LogRecord::new(&tr.stage, StepKind::SelfSupervised, epoch, it, v[0], lr, wd)
            })?;
            tr.iteration += 1;
            pb.inc(1);
        }
        Ok(())
    })
}
