//! The run directory layout (see docs/architecture.md).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The lock of a directory (see [`lock_dir`]); released on drop or process exit.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// The lock of a run directory (see [`RunLayout::lock`]).
pub type RunLock = DirLock;

/// The file [`lock_dir`] locks inside its directory.
pub const LOCK_FILE: &str = ".lock";

/// Takes `dir/.lock` for this process (creating `dir`): an advisory `flock`, refused when
/// another process holds it, with that process's PID and command line in the error
/// (`what` names the directory in it, e.g. "run directory"). The OS releases the lock when
/// the process ends, however it ends, so a killed process never leaves a stale one.
///
/// # Errors
/// Another process holds the lock; the directory cannot be created or the file opened.
pub fn lock_dir(dir: &Path, what: &str) -> anyhow::Result<DirLock> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {what} {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "{what} {} is in use by another sevit process ({}); wait for it to finish or stop it, then retry",
                dir.display(),
                if holder.is_empty() { "PID unknown" } else { holder }
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    let me = format!(
        "PID {} ({})\n",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(me.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(DirLock { _file: file })
}

/// Extensions of the files sevit writes atomically into run directories.
const ATOMIC_OUTPUTS: &[&str] = &["safetensors", "json", "jsonl", "csv", "toml", "png", "txt"];

/// True for the temporary name `.<file>.<6 letters or digits>` that an atomic write of `<file>`
/// uses before its rename.
fn is_atomic_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((file, suffix)) = rest.rsplit_once('.') else {
        return false;
    };
    suffix.len() == 6
        && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        && file
            .rsplit_once('.')
            .is_some_and(|(stem, ext)| !stem.is_empty() && ATOMIC_OUTPUTS.contains(&ext))
}

/// Removes atomic-write temporaries in `root` and its direct sub-directories (the stages);
/// returns how many. Only safe while the run's lock is held.
fn remove_stale_temporaries(root: &Path) -> anyhow::Result<usize> {
    let mut dirs = vec![root.to_path_buf()];
    for e in std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            dirs.push(e.path());
        }
    }
    let mut n = 0;
    for d in dirs {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_file() && is_atomic_temporary(&e.file_name().to_string_lossy()) {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing stale temporary {}", e.path().display()))?;
                tracing::warn!(
                    "removed {} ({size} bytes), left by an interrupted write",
                    e.path().display()
                );
                n += 1;
            }
        }
    }
    Ok(n)
}

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
    /// Writes the resolved config to `RUN/config.toml` when absent. When the run has one that
    /// differs, it is kept as the run's record and the differing keys are logged: this
    /// command trains with its own values (an explicit `--config`/`--set` override).
    pub fn write_config_once(&self, cfg: &crate::TrainConfig) -> anyhow::Result<()> {
        let p = self.config_toml();
        if p.exists() {
            let old = crate::TrainConfig::load(&p, &[])
                .with_context(|| format!("reading the run's config {}", p.display()))?;
            let keys = crate::config::differing_keys(&old, cfg);
            if !keys.is_empty() {
                tracing::warn!(
                    "this command's config differs from the run's {} in {}: this command uses its own values; {} stays the run's record",
                    p.display(),
                    keys.join(", "),
                    p.display()
                );
            }
            return Ok(());
        }
        write_atomic(&p, cfg.to_toml()?.as_bytes())
    }

    /// `RUN/.lock`: held (an advisory `flock`) by the process training in the run.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Takes the run directory for this process: a second training process on the same run
    /// is refused with the first one's PID (two writers would leave the last one's files).
    /// The lock lives as long as the returned value and is released by the OS when the
    /// process ends, however it ends, so a killed run never leaves a stale lock. Then removes
    /// the temporary files that a crash in the middle of an atomic write left behind.
    ///
    /// # Errors
    /// Another process holds the run; the directory cannot be created or the lock file opened.
    pub fn lock(&self) -> anyhow::Result<RunLock> {
        let lock = lock_dir(&self.root, "run directory")?;
        let removed = remove_stale_temporaries(&self.root)?;
        if removed > 0 {
            tracing::info!(
                "removed {removed} temporary file(s) left in {} by an interrupted write",
                self.root.display()
            );
        }
        Ok(lock)
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

/// Stage directory names (the curriculum's, `pretrain` and `step{T}`, from
/// `sevit_correction::stage_dir`).
pub mod stage_name {
    pub use sevit_correction::stage_dir::{parse_step, step, PRETRAIN};
    /// DINO-only self-supervised pretraining.
    pub const SSL: &str = "ssl";
    /// DINO-head warm-up before step 1 (`distl.head_warmup_epochs`).
    pub const HEAD_WARMUP: &str = "head-warmup";
    /// Supervised baseline with labels on the labeled set and folds 0..T-1.
    pub fn supervised(t: usize) -> String {
        format!("supervised{t}")
    }
}

/// Writes `bytes` to `path` atomically (see `sevit-fs`).
pub use sevit_fs::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised() {
        assert!(is_atomic_temporary(".checkpoint.safetensors.a1B2c3"));
        assert!(is_atomic_temporary(".summary.json.ZZZZZZ"));
        for name in [
            ".DS_Store",
            ".gitignore",
            ".lock",
            "checkpoint.safetensors",
            ".checkpoint.safetensors.abc",
            ".notes.md.abcdef",
            ".bashrc.backup",
        ] {
            assert!(!is_atomic_temporary(name), "{name}");
        }
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_stale_temporaries_go() {
        let d = tempfile::tempdir().unwrap();
        let run = RunLayout::new(d.path().join("run"));
        std::fs::create_dir_all(run.stage_dir("pretrain")).unwrap();
        let stale = run
            .stage_dir("pretrain")
            .join(".checkpoint.safetensors.Xy12Ab");
        std::fs::write(&stale, vec![0u8; 1000]).unwrap();
        let keep = run.stage_dir("pretrain").join("checkpoint.safetensors");
        std::fs::write(&keep, b"x").unwrap();
        let first = run.lock().unwrap();
        assert!(!stale.exists() && keep.exists());
        let err = format!("{:#}", run.lock().unwrap_err());
        assert!(
            err.contains(&format!("PID {}", std::process::id())) && err.contains("in use"),
            "{err}"
        );
        drop(first);
        run.lock().unwrap();
    }
}
