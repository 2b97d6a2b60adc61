//! Supervised training: the initial model (T = 0) and supervised baselines.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sevit_data::rng::{derive_seed, hash_str};
use sevit_data::{Sample, Split, Subset};
use sevit_model::Checkpoint;

use super::restarts::train_with_restarts;
use super::selection::BestOnVal;
use crate::config::{ModelSelection, TrainConfig, Weights};
use crate::data::views_without_locals;
use crate::init::load_matching;
use crate::layout::{stage_name, RunLayout};
use crate::log::{LogRecord, StepKind};
use crate::loss::correction_bce;
use crate::trainer::{RunOptions, StageKind, StageOutcome, Trainer};

/// Options of [`pretrain`].
#[derive(Debug, Clone, Default)]
pub struct PretrainOptions {
    /// Start from this checkpoint instead of random weights (an imported checkpoint, a
    /// self-supervised run, ...). The backbone must fit; heads that do not keep their
    /// initialisation.
    pub init: Option<PathBuf>,
    /// Which network of `init` to start from (`student` by default).
    pub init_weights: Option<Weights>,
    /// Supervised baseline with labels on the labeled set plus folds `0..T` (stage
    /// `supervised{T}`); 0 = the initial model on the labeled set only (stage `pretrain`).
    pub label_folds: usize,
    /// Resume / stop options.
    pub run: RunOptions,
}

/// Trains a classifier with BCE on global view 2 of the multi-crop (locals are not
/// generated) of the labeled split (`RUN/split.csv`), plus folds `0..label_folds` for a
/// supervised baseline. Output: `RUN/pretrain/` (or `RUN/supervised{T}/`). With
/// `pretrain.select = "best_val"` the stage ends with the weights of its epoch with the best
/// AUC on the validation split (see `STAGE/val.csv`); with `pretrain.restarts = K` the stage
/// is trained K times and keeps the restart with the best of those AUCs (`STAGE/restarts.csv`).
pub fn pretrain(
    run: &RunLayout,
    cfg: &TrainConfig,
    opts: &PretrainOptions,
) -> anyhow::Result<StageOutcome> {
    let split = Split::read_csv(&run.split_csv()).with_context(|| {
        format!(
            "reading the split of run {} (run `sevit split` first)",
            run.root.display()
        )
    })?;
    let mut samples: Vec<Sample> = split.samples(Subset::Labeled);
    if opts.label_folds > 0 {
        anyhow::ensure!(
            opts.label_folds <= split.num_folds(),
            "--label-folds {} but the split has {} folds",
            opts.label_folds,
            split.num_folds()
        );
        samples.extend(split.unlabeled_upto(opts.label_folds));
    }
    let stage = if opts.label_folds == 0 {
        stage_name::PRETRAIN.to_string()
    } else {
        stage_name::supervised(opts.label_folds)
    };
    let val = match cfg.pretrain.select {
        ModelSelection::Last => None,
        ModelSelection::BestVal => Some(split.samples(Subset::Val)),
    };
    train_with_restarts(&run.stage_dir(&stage), cfg, &opts.run, |cfg, dir| {
        train_supervised(cfg, &stage, dir, &samples, val.clone(), opts)
    })
}

fn train_supervised(
    cfg: &TrainConfig,
    stage: &str,
    dir: &Path,
    samples: &[Sample],
    val: Option<Vec<Sample>>,
    opts: &PretrainOptions,
) -> anyhow::Result<StageOutcome> {
    anyhow::ensure!(!samples.is_empty(), "stage {stage}: no labeled images");
    let epochs = cfg.pretrain.epochs;
    let ipe = super::iters_per_epoch(cfg, samples.len(), &opts.run);
    let mut tr = Trainer::new(cfg, stage, StageKind::Supervised, dir, epochs, ipe)?
        .with_dist(opts.run.dist.clone());
    // Other ranks receive rank 0's weights when the stage starts.
    let fresh = !tr.checkpoint_path().exists() && tr.is_main();
    if let (Some(init), true) = (&opts.init, fresh) {
        let ck = sevit_model::import::load_init(init, &tr.model_cfg.vit)?;
        let prefix = pick_prefix(&ck, opts.init_weights);
        load_matching(&ck, &prefix, &mut tr.student.vs, init)?;
        tracing::info!("{stage}: initialised from {} ({prefix}*)", init.display());
    }
    let mut selection = val.map(|v| BestOnVal::open(&tr, v)).transpose()?;
    let views = views_without_locals(&cfg.views);
    let loader_seed = derive_seed(&[cfg.seed, hash_str(stage), hash_str("labeled")]);
    tracing::info!(
        stage,
        images = samples.len(),
        iters_per_epoch = ipe,
        epochs,
        "supervised training"
    );
    tr.run(&opts.run, |tr, epoch, log, pb| {
        for b in tr.batches(samples, &views, loader_seed, epoch as u64)? {
            let b = b?;
            let it = tr.iteration;
            tr.seed_step(epoch, it, 0, 0);
            let (lr, wd, _) = tr.sched_at(it);
            let loss = {
                let _autocast = tr.autocast();
                let logits = tr.student.net.classify(&b.views[1], true);
                correction_bce(&logits.to_kind(tch::Kind::Float), &b.targets)
            };
            let v = tr.read_scalars(&[&loss], b.len(), epoch, it)?;
            tr.update(&loss, b.len(), epoch, lr, wd)?;
            log.write(&LogRecord {
                correction: Some(v[0]),
                ..LogRecord::new(&tr.stage, StepKind::Supervised, epoch, it, v[0], lr, wd)
            })?;
            tr.iteration += 1;
            pb.inc(1);
        }
        if let Some(sel) = selection.as_mut() {
            sel.after_epoch(tr, epoch, epochs, log)?;
        }
        Ok(())
    })
}

/// `student.` / `teacher.` as asked, else `student.` when present, else no prefix.
pub(crate) fn pick_prefix(ck: &Checkpoint, w: Option<Weights>) -> String {
    match w {
        Some(w) => w.prefix().to_string(),
        None if !ck.keys_under("student.").is_empty() => "student.".into(),
        None => String::new(),
    }
}
