//! An experiment directory carried without its checkpoints (a fresh checkout of a repository
//! that keeps the results, not the checkpoints): a seed whose finished stages lost their
//! checkpoints reruns from its split, and a lost backbone is trained again and must match the
//! fingerprint of the one the finished seeds started from.

use std::path::Path;

use anyhow::{bail, Context};
use sevit_distill::layout::stage_name;
use sevit_model::Checkpoint;
use sha2::{Digest, Sha256};

use super::Runner;

/// SHA-256 of the student and teacher networks of a checkpoint (names, kinds, shapes and
/// values; not the metadata, the optimiser state or the DINO centre), so that two trainings
/// that computed the same networks match whatever else they wrote.
///
/// # Errors
/// Unreadable checkpoint, or one without a student or teacher.
pub fn fingerprint(checkpoint: &Path) -> anyhow::Result<String> {
    let ck = Checkpoint::load(checkpoint)?;
    let networks = Checkpoint {
        tensors: ck
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with("student.") || k.starts_with("teacher."))
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect(),
        metadata: Default::default(),
    };
    anyhow::ensure!(
        !networks.tensors.is_empty(),
        "{} holds no student or teacher network",
        checkpoint.display()
    );
    Ok(format!("{:x}", Sha256::digest(networks.to_bytes()?)))
}

impl Runner {
    /// Makes the ledger agree with the files present. A seed with finished training stages
    /// but no initial-model checkpoint (a fresh checkout keeps results, not checkpoints) is
    /// forgotten and its directory removed, so it reruns from its split; a finished seed needs
    /// no checkpoint and stays. A finished backbone whose weights file is gone is trained
    /// again while a seed still needs it, and must then match its recorded fingerprint.
    pub(super) fn reconcile(&mut self) -> anyhow::Result<()> {
        let before = self.ledger.stages.len();
        let seeds = self.protocol.seeds.clone();
        let mut pending = false;
        for seed in seeds {
            let ids = self.seed_plan(seed);
            let done: Vec<&String> = ids.iter().filter(|id| self.ledger.done(id)).collect();
            if done.len() == ids.len() {
                continue;
            }
            pending = true;
            let trained = done.iter().any(|id| !id.ends_with("/split"));
            let initial = self.layout.run(seed).checkpoint(stage_name::PRETRAIN);
            if trained && !initial.is_file() {
                tracing::warn!(
                    seed,
                    "seed {seed} has finished stages ({}) but no checkpoint {}: it reruns from its split",
                    done.len(),
                    initial.display()
                );
                self.ledger.stages.retain(|s| !ids.contains(&s.id));
                let dir = self.layout.seed_dir(seed);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing {}", dir.display()))?;
                }
            }
        }
        let backbone = self.layout.backbone().checkpoint(stage_name::SSL);
        if pending && self.ledger.done("backbone") && !backbone.is_file() {
            tracing::warn!(
                "the backbone's checkpoint {} is gone: the backbone is trained again and must match {}",
                backbone.display(),
                self.layout.backbone_fingerprint().display()
            );
            self.ledger.stages.retain(|s| s.id != "backbone");
        }
        if self.ledger.stages.len() != before {
            self.save_ledger()?;
        }
        Ok(())
    }

    /// The backbone's [`fingerprint`], checked against the one recorded by an earlier training
    /// of the same backbone (recorded now when there is none).
    pub(super) fn check_backbone(&self) -> anyhow::Result<String> {
        let checkpoint = self.layout.backbone().checkpoint(stage_name::SSL);
        let got = fingerprint(&checkpoint)?;
        let recorded = self.layout.backbone_fingerprint();
        match std::fs::read_to_string(&recorded) {
            Ok(want) if want.trim() != got => bail!(
                "the backbone trained again here (networks sha256 {got}) is not the one the finished stages started from ({} holds {}): this machine does not reproduce it bit for bit; bring back {} from the machine that trained it, or give the protocol another `out` to start over",
                recorded.display(),
                want.trim(),
                checkpoint.display()
            ),
            Ok(_) => {}
            Err(_) => sevit_fs::write_atomic(&recorded, format!("{got}\n").as_bytes())?,
        }
        Ok(got)
    }
}
