//! The training loops: the supervised initial model and baselines ([`pretrain`]), DINO-only
//! self-supervised pretraining ([`pretrain_self_supervised`]), the optional DINO-head warm-up
//! before step 1 ([`warm_up_dino_head`]), one DISTL step ([`distill`])
//! and the whole curriculum ([`evolve`]); a supervised stage may be trained several times
//! and keep its best restart on validation ([`restart_dir`]).

mod distl;
mod evolve;
mod head_warmup;
mod restarts;
mod selection;
mod ssl;
mod supervised;

pub use distl::{distill, distill_with, DistillInputs};
pub use evolve::{evolve, read_summary, write_summary, EvolveOptions, SummaryRow};
pub use head_warmup::warm_up_dino_head;
pub use restarts::{restart_dir, restart_seed, RESTARTS_CSV_FILE};
pub use ssl::pretrain_self_supervised;
pub use supervised::{pretrain, PretrainOptions};

/// Iterations per epoch of a stage training on `n_images` images: global batches of
/// `optim.batch_size` per process over the data-parallel group of `opts` (if any).
fn iters_per_epoch(cfg: &crate::TrainConfig, n_images: usize, opts: &crate::RunOptions) -> usize {
    let world = opts.dist.as_ref().map_or(1, |d| d.world_size());
    crate::data::iters_per_epoch_sharded(n_images, cfg.optim.batch_size, cfg.optim.drop_last, world)
}

/// The trainer of a teacher/student stage (EMA teacher and DINO head: DISTL steps, SSL
/// pretraining, the DINO-head warm-up) of `epochs` over `n_images` images, in `RUN/<stage>/`,
/// joined to the data-parallel group of `opts` (if any).
fn teacher_student_trainer(
    run: &crate::layout::RunLayout,
    cfg: &crate::TrainConfig,
    stage: &str,
    kind: crate::trainer::StageKind,
    epochs: usize,
    n_images: usize,
    opts: &crate::RunOptions,
) -> anyhow::Result<crate::trainer::Trainer> {
    let ipe = iters_per_epoch(cfg, n_images, opts);
    let dir = run.stage_dir(stage);
    let tr = crate::trainer::Trainer::new(cfg, stage, kind, &dir, epochs, ipe, true, true)?;
    Ok(tr.with_dist(opts.dist.clone()))
}
