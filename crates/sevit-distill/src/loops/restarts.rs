//! Restarts of a supervised stage (`pretrain.restarts = K`): the stage is trained K times,
//! restart R in `STAGE/restart-R/` from its own seed, and the restart with the best
//! validation AUC becomes the stage. Its checkpoint, log, validation curve and best-epoch
//! weights are copied into `STAGE/` (each atomically, the checkpoint last, so a complete
//! `STAGE/checkpoint.safetensors` means the stage is done), and `STAGE/restarts.csv` lists
//! every restart. Restart 0 keeps the config's seed, so it is the training that
//! `restarts = 1` gives. An interrupted stage resumes within the restart it stopped in.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sevit_data::rng::{derive_seed, hash_str};

use super::selection::{read_best, BEST_FILE, VAL_CSV_FILE};
use crate::config::TrainConfig;
use crate::layout::{write_atomic, CHECKPOINT_FILE, LOG_FILE};
use crate::trainer::{RunOptions, StageOutcome};

/// File name of the per-restart table in a stage directory.
pub const RESTARTS_CSV_FILE: &str = "restarts.csv";

/// The directory of restart `r` of the stage in `stage_dir`.
pub fn restart_dir(stage_dir: &Path, r: usize) -> PathBuf {
    stage_dir.join(format!("restart-{r}"))
}

/// The training seed of restart `r`: the config's seed for restart 0, a derived one after.
pub fn restart_seed(seed: u64, r: usize) -> u64 {
    if r == 0 {
        seed
    } else {
        derive_seed(&[seed, hash_str("restart"), r as u64])
    }
}

/// One finished restart.
struct Restart {
    seed: u64,
    best_epoch: usize,
    val_auc: f64,
    outcome: StageOutcome,
}

/// Trains the stage of `stage_dir` `cfg.pretrain.restarts` times through `train(config,
/// directory)` and installs the best restart as the stage. With one restart this is
/// `train(cfg, stage_dir)`. Returns early, with the incomplete outcome, when a restart stops
/// before its last epoch (`--stop-after-epochs`).
pub(crate) fn train_with_restarts<F>(
    stage_dir: &Path,
    cfg: &TrainConfig,
    opts: &RunOptions,
    mut train: F,
) -> anyhow::Result<StageOutcome>
where
    F: FnMut(&TrainConfig, &Path) -> anyhow::Result<StageOutcome>,
{
    let k = cfg.pretrain.restarts;
    if k <= 1 {
        return train(cfg, stage_dir);
    }
    let final_ck = stage_dir.join(CHECKPOINT_FILE);
    if !opts.resume {
        let earlier = final_ck.exists()
            || (0..k).any(|r| restart_dir(stage_dir, r).join(CHECKPOINT_FILE).exists());
        anyhow::ensure!(
            !earlier,
            "{} holds an earlier training of this stage: pass --resume to continue it, or \
             remove the directory to start over",
            stage_dir.display()
        );
    }
    let mut done: Vec<Restart> = Vec::with_capacity(k);
    for r in 0..k {
        let mut c = cfg.clone();
        c.seed = restart_seed(cfg.seed, r);
        let dir = restart_dir(stage_dir, r);
        tracing::info!(
            restart = r,
            of = k,
            seed = c.seed,
            "training restart {}",
            dir.display()
        );
        let outcome = train(&c, &dir)?;
        if !outcome.complete {
            return Ok(outcome);
        }
        let (best_epoch, val_auc) = read_best(&dir.join(BEST_FILE))?
            .with_context(|| format!("restart {r} finished without a validation AUC"))?;
        done.push(Restart {
            seed: c.seed,
            best_epoch,
            val_auc,
            outcome,
        });
    }
    let chosen = best_restart(&done.iter().map(|d| d.val_auc).collect::<Vec<_>>());
    let best = &done[chosen];
    tracing::info!(
        restart = chosen,
        val_auc = format!("{:.4}", best.val_auc),
        "kept the restart with the best validation AUC"
    );
    if opts.is_main() {
        let mut csv = String::from("restart,seed,best_epoch,val_auc,chosen\n");
        for (r, d) in done.iter().enumerate() {
            csv.push_str(&format!(
                "{r},{},{},{:.6},{}\n",
                d.seed,
                d.best_epoch,
                d.val_auc,
                r == chosen
            ));
        }
        let from = restart_dir(stage_dir, chosen);
        for file in [LOG_FILE, VAL_CSV_FILE, BEST_FILE, CHECKPOINT_FILE] {
            let bytes = std::fs::read(from.join(file))
                .with_context(|| format!("reading {}", from.join(file).display()))?;
            write_atomic(&stage_dir.join(file), &bytes)?;
        }
        write_atomic(&stage_dir.join(RESTARTS_CSV_FILE), csv.as_bytes())?;
    }
    if let Some(d) = &opts.dist {
        d.barrier().context("waiting for the chosen restart")?;
    }
    let mut outcome = best.outcome.clone();
    outcome.checkpoint = final_ck;
    outcome.log = stage_dir.join(LOG_FILE);
    Ok(outcome)
}

/// Index of the highest AUC (the first one on ties).
fn best_restart(aucs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &a) in aucs.iter().enumerate() {
        if a > aucs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_zero_keeps_the_seed_and_the_others_differ() {
        assert_eq!(restart_seed(7, 0), 7);
        let seeds: Vec<u64> = (0..4).map(|r| restart_seed(7, r)).collect();
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j]);
            }
        }
        assert_ne!(restart_seed(7, 1), restart_seed(8, 1));
    }

    #[test]
    fn the_best_auc_wins_and_ties_keep_the_first() {
        assert_eq!(best_restart(&[0.7, 0.9, 0.8]), 1);
        assert_eq!(best_restart(&[0.9, 0.9, 0.8]), 0);
        assert_eq!(best_restart(&[0.5]), 0);
    }
}
