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
mod teacher_student;

pub use distl::{
    correction_iteration, distill, distill_with, unlabeled_iteration, DistillInputs,
    IterationOutcome,
};
pub use evolve::{evolve, read_summary, write_summary, EvolveOptions, SummaryRow};
pub use head_warmup::warm_up_dino_head;
pub use restarts::{restart_dir, restart_seed, RESTARTS_CSV_FILE};
pub use ssl::{continue_self_supervised, pretrain_self_supervised};
pub use supervised::{pretrain, PretrainOptions};

/// Iterations per epoch of a stage training on `n_images` images: global batches of
/// `optim.batch_size` per process over the data-parallel group of `opts` (if any).
fn iters_per_epoch(cfg: &crate::TrainConfig, n_images: usize, opts: &crate::RunOptions) -> usize {
    let world = opts.dist.as_ref().map_or(1, |d| d.world_size());
    crate::data::iters_per_epoch_sharded(n_images, cfg.optim.batch_size, cfg.optim.drop_last, world)
}
