//! DINO-head warm-up before the first DISTL step: the feature head learns the DINO loss on
//! the step's unlabeled images while the backbone and the class head stay frozen
//! (`distl.head_warmup_epochs`).

use std::path::Path;

use sevit_data::rng::{derive_seed, hash_str};
use sevit_data::Sample;

use crate::config::TrainConfig;
use crate::layout::{stage_name, RunLayout};
use crate::trainer::{RunOptions, StageKind, StageOutcome};

/// Prefix of the feature (DINO) head's variables, the only ones the warm-up trains.
const FEATURE_HEAD_PREFIX: &str = "head.";

/// Warms up the feature head of the model in `init` (its `student.*`, teacher and student
/// alike) on `unlabeled` for `distl.head_warmup_epochs` epochs. Output: `RUN/head-warmup/`,
/// whose student has `init`'s backbone and class head unchanged. Resumable like every stage.
pub fn warm_up_dino_head(
    run: &RunLayout,
    cfg: &TrainConfig,
    unlabeled: &[Sample],
    init: &Path,
    opts: &RunOptions,
) -> anyhow::Result<StageOutcome> {
    let stage = stage_name::HEAD_WARMUP;
    let epochs = cfg.distl.head_warmup_epochs;
    anyhow::ensure!(epochs > 0, "distl.head_warmup_epochs must be at least 1");
    anyhow::ensure!(!unlabeled.is_empty(), "stage {stage}: no unlabeled images");
    let kind = StageKind::HeadWarmup;
    let n = unlabeled.len();
    let mut tr =
        super::teacher_student::teacher_student_trainer(run, cfg, stage, kind, epochs, n, opts)?;
    tr.train_only(|name| name.starts_with(FEATURE_HEAD_PREFIX));
    super::teacher_student::start_teacher_and_student(&mut tr, init, "student.")?;
    let loader_seed = derive_seed(&[cfg.seed, hash_str(stage), hash_str("unlabeled")]);
    tracing::info!(
        stage,
        unlabeled = unlabeled.len(),
        iters_per_epoch = tr.iters_per_epoch,
        epochs,
        init = %init.display(),
        "DINO-head warm-up (backbone and class head frozen)"
    );
    super::ssl::run_dino_only(&mut tr, unlabeled, loader_seed, opts)
}
