//! The directory layout of an experiment and its stage ledger (`EXP/ledger.json`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sevit_data::Subset;
use sevit_distill::RunLayout;

/// One finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage id (`seed-0/distl`, `backbone`, ...).
    pub id: String,
    /// Wall time of the run that finished it, in seconds.
    pub seconds: f64,
    /// What it did, in words.
    pub detail: String,
}

/// The stages finished so far (`EXP/ledger.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// In the order they finished.
    pub stages: Vec<StageRecord>,
}

impl Ledger {
    /// Reads `path`, or an empty ledger when it does not exist.
    ///
    /// # Errors
    /// Unreadable or malformed file.
    pub fn load(path: &Path) -> anyhow::Result<Ledger> {
        if !path.exists() {
            return Ok(Ledger::default());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the stage ledger {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a stage ledger: remove it to rerun every stage",
                path.display()
            )
        })
    }

    /// Whether stage `id` finished.
    pub fn done(&self, id: &str) -> bool {
        self.stages.iter().any(|s| s.id == id)
    }
}

/// The directory layout of one experiment.
#[derive(Debug, Clone)]
pub struct ExperimentLayout {
    /// `EXP`.
    pub root: PathBuf,
}

impl ExperimentLayout {
    /// `EXP/ledger.json`.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger.json")
    }
    /// `EXP/backbone/`: the shared self-supervised pretraining run.
    pub fn backbone(&self) -> RunLayout {
        RunLayout::new(self.root.join("backbone"))
    }
    /// `EXP/backbone/networks.sha256`: the fingerprint of the backbone checkpoint's student
    /// and teacher (see [`crate::runner::fingerprint`]), kept with the results so that a
    /// backbone trained again where its checkpoint was not carried is checked against it.
    pub fn backbone_fingerprint(&self) -> PathBuf {
        self.root.join("backbone").join("networks.sha256")
    }
    /// `EXP/seed-S/`.
    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.root.join(format!("seed-{seed}"))
    }
    /// `EXP/seed-S/run/`: the DISTL curriculum and the supervised baselines.
    pub fn run(&self, seed: u64) -> RunLayout {
        RunLayout::new(self.seed_dir(seed).join("run"))
    }
    /// `EXP/seed-S/control/T<t>/`.
    pub fn control(&self, seed: u64, t: usize) -> RunLayout {
        RunLayout::new(self.seed_dir(seed).join("control").join(format!("T{t}")))
    }
    /// `EXP/seed-S/ablation-NAME/`.
    pub fn ablation(&self, seed: u64, name: &str) -> RunLayout {
        RunLayout::new(self.seed_dir(seed).join(format!("ablation-{name}")))
    }
    /// `EXP/seed-S/ssl-finetune/T<t>/`.
    pub fn ssl_finetune(&self, seed: u64, t: usize) -> RunLayout {
        RunLayout::new(
            self.seed_dir(seed)
                .join("ssl-finetune")
                .join(format!("T{t}")),
        )
    }
    /// `EXP/seed-S/eval/NAME` (test) or `EXP/seed-S/eval-val/NAME` (validation).
    pub fn eval(&self, seed: u64, subset: Subset, name: &str) -> PathBuf {
        let leaf = if subset == Subset::Val {
            "eval-val"
        } else {
            "eval"
        };
        self.seed_dir(seed).join(leaf).join(name)
    }
    /// `EXP/seed-S/eval/ARM-vs-distl-T<t>.json`: the paired test of another arm (its
    /// evaluation folders' prefix, e.g. `ablation-no-dino`) against DISTL at `t`.
    pub fn comparison(&self, seed: u64, arm: &str, t: usize) -> PathBuf {
        self.seed_dir(seed)
            .join("eval")
            .join(format!("{arm}-vs-distl-T{t}.json"))
    }
    /// `EXP/seed-S/robustness/<tag>/`: a model scored under image nuisances (`tag` is `T<t>`).
    pub fn robustness(&self, seed: u64, tag: &str) -> PathBuf {
        self.seed_dir(seed).join("robustness").join(tag)
    }
    /// `EXP/attention/`.
    pub fn attention(&self) -> PathBuf {
        self.root.join("attention")
    }
}
