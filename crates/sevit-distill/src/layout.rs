//! The run directory layout (see docs/architecture.md).

use std::path::{Path, PathBuf};

/// File name of a stage's checkpoint (last finished epoch).
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// File name of a stage's per-iteration JSONL log.
pub const LOG_FILE: &str = "log.jsonl";

/// Paths inside a run directory `RUN/`.
#[derive(Debug, Clone)]
pub struct RunLayout {
    /// The run directory.
    pub root: PathBuf,
}

impl RunLayout {
    /// The layout of run directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `RUN/split.csv`, written by `sevit split`.
    pub fn split_csv(&self) -> PathBuf {
        self.root.join("split.csv")
    }
    /// `RUN/config.toml`: the resolved config of the run.
    pub fn config_toml(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// A stage directory, `RUN/<name>` (`pretrain`, `ssl`, `supervised{T}`, `step{T}`).
    pub fn stage_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    /// `RUN/<stage>/checkpoint.safetensors`.
    pub fn checkpoint(&self, stage: &str) -> PathBuf {
        self.stage_dir(stage).join(CHECKPOINT_FILE)
    }
    /// `RUN/<stage>/log.jsonl`.
    pub fn log(&self, stage: &str) -> PathBuf {
        self.stage_dir(stage).join(LOG_FILE)
    }
    /// Writes the resolved config to `RUN/config.toml` when absent; warns when the existing
    /// one differs.
    pub fn write_config_once(&self, cfg: &crate::TrainConfig) -> anyhow::Result<()> {
        let p = self.config_toml();
        let text = cfg.to_toml()?;
        if p.exists() {
            let old = std::fs::read_to_string(&p).unwrap_or_default();
            if old != text {
                tracing::warn!(
                    "{} differs from the config of this command (kept as is)",
                    p.display()
                );
            }
            return Ok(());
        }
        write_atomic(&p, text.as_bytes())
    }

    /// `RUN/summary.json`.
    pub fn summary_json(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// `RUN/summary.csv`.
    pub fn summary_csv(&self) -> PathBuf {
        self.root.join("summary.csv")
    }
}

/// Stage directory names.
pub mod stage_name {
    /// The supervised initial model (T = 0).
    pub const PRETRAIN: &str = "pretrain";
    /// DINO-only self-supervised pretraining.
    pub const SSL: &str = "ssl";
    /// DINO-head warm-up before step 1 (`distl.head_warmup_epochs`).
    pub const HEAD_WARMUP: &str = "head-warmup";
    /// DISTL step T.
    pub fn step(t: usize) -> String {
        format!("step{t}")
    }
    /// Supervised baseline with labels on the labeled set and folds 0..T-1.
    pub fn supervised(t: usize) -> String {
        format!("supervised{t}")
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    sevit_model::checkpoint::write_atomic(path, bytes)
}
