//! Per-iteration JSONL training log and the progress bar.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

/// What kind of update a log line describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A DISTL iteration on an unlabeled batch (self-training + DINO).
    Unlabeled,
    /// One batch of a correction pass over the labeled set.
    Correction,
    /// Supervised training of the initial model (or a supervised baseline).
    Supervised,
    /// DINO-only self-supervised pretraining.
    SelfSupervised,
}

/// One line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Stage name (`pretrain`, `ssl`, `step1`, ...).
    pub stage: String,
    /// Kind of update.
    pub kind: StepKind,
    /// Epoch (from 0).
    pub epoch: usize,
    /// Global unlabeled (schedule) iteration; a correction pass logs the iteration it follows.
    pub iteration: usize,
    /// Batch index inside a correction pass (0 otherwise).
    pub batch: usize,
    /// Total loss that was back-propagated.
    pub loss: f64,
    /// DINO loss (unweighted), when computed.
    pub dino: Option<f64>,
    /// Self-training loss (unweighted by α), when computed.
    pub self_training: Option<f64>,
    /// BCE against true labels (correction or supervised), when computed.
    pub correction: Option<f64>,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay of the regularised group.
    pub wd: f64,
    /// Teacher EMA momentum applied after this step (None when the teacher was not updated).
    pub momentum: Option<f64>,
    /// Fraction of images whose thresholded teacher (global view 1) and student (global
    /// view 2) predictions agree.
    pub agreement: Option<f64>,
}

impl LogRecord {
    /// The record of update `iteration` (batch 0) of `epoch` with total `loss` at `lr` and
    /// `wd`; the optional parts (losses, momentum, agreement) are unset.
    pub fn new(
        stage: &str,
        kind: StepKind,
        epoch: usize,
        iteration: usize,
        loss: f64,
        lr: f64,
        wd: f64,
    ) -> Self {
        LogRecord {
            stage: stage.to_string(),
            kind,
            epoch,
            iteration,
            batch: 0,
            loss,
            dino: None,
            self_training: None,
            correction: None,
            lr,
            wd,
            momentum: None,
            agreement: None,
        }
    }
}

/// A validation line of `log.jsonl` (`"kind": "validation"`), written after each epoch whose
/// model is scored on the validation split (`pretrain.select = "best_val"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    /// Stage name.
    pub stage: String,
    /// Always `validation`.
    pub kind: String,
    /// Epoch (from 0, as the training lines): the validation follows its last iteration.
    pub epoch: usize,
    /// Global iteration the validation follows.
    pub iteration: usize,
    /// ROC AUC of the student on the validation split.
    pub val_auc: f64,
    /// Mean binary cross-entropy of the student's probabilities on the validation split.
    pub val_loss: f64,
    /// Validation images.
    pub images: usize,
}

/// The `kind` of a [`ValidationRecord`].
pub const VALIDATION_KIND: &str = "validation";

/// Appends [`LogRecord`]s and [`ValidationRecord`]s to a JSONL file, one flushed line per
/// record.
#[derive(Debug)]
pub struct JsonlLog {
    path: PathBuf,
    file: Option<File>,
}

impl JsonlLog {
    /// Opens `path` for appending, after dropping the lines of epochs `>= keep_before_epoch`
    /// (the partial epoch of an interrupted run, which a resumed run replays).
    pub fn open(path: &Path, keep_before_epoch: usize) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            let kept: Vec<String> = read_lines(path)?
                .into_iter()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("epoch")?.as_u64())
                        .is_some_and(|e| (e as usize) < keep_before_epoch)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::layout::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// A log that writes nothing (ranks other than 0 of a data-parallel job).
    pub fn disabled() -> Self {
        Self {
            path: PathBuf::new(),
            file: None,
        }
    }

    /// Appends one record, with the wall-clock `time` it was written (RFC 3339, UTC, ms):
    /// the one field that differs between a resumed run's log and an uninterrupted one's,
    /// so it is not part of [`LogRecord`].
    pub fn write(&mut self, rec: &impl Serialize) -> anyhow::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_string(rec)?;
        line.pop(); // the closing brace
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        line.push_str(&format!(",\"time\":\"{now}\"}}\n"));
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .with_context(|| format!("writing log {}", self.path.display()))
    }
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let f = File::open(path).with_context(|| format!("reading log {}", path.display()))?;
    BufReader::new(f)
        .lines()
        .map(|l| l.with_context(|| format!("reading log {}", path.display())))
        .filter(|l| l.as_ref().map(|s| !s.trim().is_empty()).unwrap_or(true))
        .collect()
}

fn is_validation(line: &str) -> bool {
    line.contains(&format!("\"kind\":\"{VALIDATION_KIND}\""))
}

/// Reads every training record of a `log.jsonl` (the validation lines left out: see
/// [`read_validation`]).
pub fn read_log(path: &Path) -> anyhow::Result<Vec<LogRecord>> {
    parse_lines(path, |l| !is_validation(l))
}

/// Reads the validation records of a `log.jsonl`.
pub fn read_validation(path: &Path) -> anyhow::Result<Vec<ValidationRecord>> {
    parse_lines(path, is_validation)
}

fn parse_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<T>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .filter(|(_, l)| keep(l))
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad log line", path.display(), i + 1))
        })
        .collect()
}

/// Mean total loss per epoch over the records of `kind` (index = epoch).
pub fn epoch_means(records: &[LogRecord], kind: StepKind) -> Vec<f64> {
    epoch_means_of(records, kind, |r| Some(r.loss))
}

/// Mean of `field` per epoch over the records of `kind` that have it (index = epoch; NaN for
/// an epoch without any), e.g. the DINO loss with `|r| r.dino`.
pub fn epoch_means_of(
    records: &[LogRecord],
    kind: StepKind,
    field: impl Fn(&LogRecord) -> Option<f64>,
) -> Vec<f64> {
    let mut sums: Vec<(f64, usize)> = Vec::new();
    for r in records.iter().filter(|r| r.kind == kind) {
        let Some(v) = field(r) else {
            continue;
        };
        if sums.len() <= r.epoch {
            sums.resize(r.epoch + 1, (0.0, 0));
        }
        sums[r.epoch].0 += v;
        sums[r.epoch].1 += 1;
    }
    sums.into_iter()
        .map(|(s, n)| if n == 0 { f64::NAN } else { s / n as f64 })
        .collect()
}

/// The group every progress bar of this process draws in. Log output goes through
/// [`write_above_progress`], so log lines print above the bars instead of over them.
pub fn progress_group() -> &'static indicatif::MultiProgress {
    static GROUP: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    GROUP.get_or_init(|| indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Writes `bytes` to stderr with the progress bars cleared first and redrawn after.
pub fn write_above_progress(bytes: &[u8]) -> std::io::Result<()> {
    progress_group().suspend(|| {
        let mut err = std::io::stderr().lock();
        err.write_all(bytes).and_then(|()| err.flush())
    })
}

/// A progress bar on stderr, hidden when stderr is not a terminal (or when `enabled` is
/// false).
pub fn progress_bar(len: u64, prefix: &str, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = progress_group().add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, loss: f64) -> LogRecord {
        LogRecord {
            stage: "s".into(),
            kind: StepKind::Unlabeled,
            epoch,
            iteration: epoch,
            batch: 0,
            loss,
            dino: None,
            self_training: Some(loss),
            correction: None,
            lr: 0.1,
            wd: 0.0,
            momentum: Some(0.9),
            agreement: Some(1.0),
        }
    }

    #[test]
    fn resume_truncates_partial_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut l = JsonlLog::open(&p, 0).unwrap();
        for e in 0..3 {
            l.write(&rec(e, e as f64)).unwrap();
            l.write(&rec(e, e as f64 + 1.0)).unwrap();
            l.write(&ValidationRecord {
                stage: "s".into(),
                kind: VALIDATION_KIND.into(),
                epoch: e,
                iteration: e + 1,
                val_auc: 0.5,
                val_loss: 0.7,
                images: 4,
            })
            .unwrap();
        }
        drop(l);
        assert_eq!(read_log(&p).unwrap().len(), 6);
        assert_eq!(read_validation(&p).unwrap().len(), 3);
        let mut l = JsonlLog::open(&p, 2).unwrap();
        l.write(&rec(2, 9.0)).unwrap();
        let all = read_log(&p).unwrap();
        assert_eq!(all.len(), 5);
        // the replayed epoch's validation line went with its training lines
        assert_eq!(read_validation(&p).unwrap().len(), 2);
        assert_eq!(epoch_means(&all, StepKind::Unlabeled), vec![0.5, 1.5, 9.0]);
        // Each line carries the time it was written.
        let last = std::fs::read_to_string(&p).unwrap();
        let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
        let time = last["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert_eq!(last["epoch"], 2);
    }
}
