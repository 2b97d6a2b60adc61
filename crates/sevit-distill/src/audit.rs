//! The pseudo-label audit of a DISTL step: how good the teacher's soft pseudo-labels
//! (`sigmoid(teacher logit on global view 1)`) were, measured against labels that training
//! never sees (the hidden labels of a split's unlabeled folds).
//!
//! Per epoch and per fold: the ROC AUC of the pseudo-labels, their accuracy at 0.5 and the
//! share called positive. Written to `STAGE/pseudo_labels.csv` at the end of every epoch
//! (atomically; a resumed step keeps the rows of its finished epochs). It tells whether
//! self-training fed on signal or on noise. In a data-parallel job each process sees its
//! shard; the main process audits its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

/// File name of the audit in a stage directory.
pub const AUDIT_FILE: &str = "pseudo_labels.csv";

const HEADER: &str = "epoch,fold,n,auc,accuracy,positive_rate,mean_pseudo_label";

/// The audit of one fold in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    /// Epoch of the step (from 0).
    pub epoch: usize,
    /// Unlabeled fold (0-based, as in `split.csv`).
    pub fold: usize,
    /// Pseudo-labels drawn (images, counting each epoch's draw once).
    pub n: usize,
    /// ROC AUC of the pseudo-labels against the hidden labels (`NaN` with one class only).
    pub auc: f64,
    /// Share of images whose pseudo-label is on the side of 0.5 of their hidden label (0.5
    /// itself counts as positive).
    pub accuracy: f64,
    /// Share of pseudo-labels at or above 0.5.
    pub positive_rate: f64,
    /// Mean soft pseudo-label.
    pub mean_pseudo_label: f64,
}

/// Collects one epoch's pseudo-labels with the hidden labels and fold of each image.
#[derive(Debug, Clone)]
pub struct PseudoLabelAudit {
    fold_of: Vec<usize>,
    hidden: Vec<bool>,
    drawn: BTreeMap<usize, (Vec<bool>, Vec<f64>)>,
}

impl PseudoLabelAudit {
    /// An audit of images whose fold and hidden label are `fold_of[i]`, `hidden[i]` (indexed
    /// like the step's unlabeled sample list).
    ///
    /// # Errors
    /// The two lists differ in length.
    pub fn new(fold_of: Vec<usize>, hidden: Vec<bool>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            fold_of.len() == hidden.len(),
            "pseudo-label audit: {} folds for {} labels",
            fold_of.len(),
            hidden.len()
        );
        Ok(PseudoLabelAudit {
            fold_of,
            hidden,
            drawn: BTreeMap::new(),
        })
    }

    /// Records the pseudo-labels `probs` of the images at `indices` of the sample list.
    ///
    /// # Errors
    /// Lengths differ or an index is out of range.
    pub fn record(&mut self, indices: &[usize], probs: &[f64]) -> anyhow::Result<()> {
        anyhow::ensure!(
            indices.len() == probs.len(),
            "pseudo-label audit: {} pseudo-labels for {} images",
            probs.len(),
            indices.len()
        );
        for (&i, &p) in indices.iter().zip(probs) {
            let (Some(&fold), Some(&label)) = (self.fold_of.get(i), self.hidden.get(i)) else {
                anyhow::bail!(
                    "pseudo-label audit: image {i} of {} audited",
                    self.hidden.len()
                );
            };
            let e = self.drawn.entry(fold).or_default();
            e.0.push(label);
            e.1.push(p);
        }
        Ok(())
    }

    /// The rows of `epoch` (one per fold drawn from), and clears the collected draws.
    pub fn finish_epoch(&mut self, epoch: usize) -> Vec<AuditRow> {
        std::mem::take(&mut self.drawn)
            .into_iter()
            .map(|(fold, (labels, probs))| row(epoch, fold, &labels, &probs))
            .collect()
    }
}

fn row(epoch: usize, fold: usize, labels: &[bool], probs: &[f64]) -> AuditRow {
    let n = labels.len();
    // The operating point at 0.5 (NaN fields when there is nothing to count).
    let (accuracy, positive_rate) = match sevit_metrics::at_threshold(labels, probs, 0.5) {
        Ok(m) => (
            (m.tp + m.tn) as f64 / n as f64,
            (m.tp + m.fp) as f64 / n as f64,
        ),
        Err(_) => (f64::NAN, f64::NAN),
    };
    AuditRow {
        epoch,
        fold,
        n,
        auc: sevit_metrics::roc_auc(labels, probs).unwrap_or(f64::NAN),
        accuracy,
        positive_rate,
        mean_pseudo_label: probs.iter().sum::<f64>() / n as f64,
    }
}

/// `STAGE/pseudo_labels.csv` of a stage directory.
pub fn audit_path(stage_dir: &Path) -> PathBuf {
    stage_dir.join(AUDIT_FILE)
}

/// Writes `rows` as the audit of `epoch` into `path`, keeping the rows of earlier epochs
/// already there (a resumed step) and dropping any of `epoch` or later (an epoch redone).
///
/// # Errors
/// The existing file is unreadable or malformed, or the write fails.
pub fn append_epoch(path: &Path, epoch: usize, rows: &[AuditRow]) -> anyhow::Result<()> {
    let mut kept: Vec<AuditRow> = if path.is_file() {
        read_audit(path)?
            .into_iter()
            .filter(|r| r.epoch < epoch)
            .collect()
    } else {
        Vec::new()
    };
    kept.extend_from_slice(rows);
    let mut out = String::from(HEADER);
    out.push('\n');
    for r in &kept {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            r.epoch, r.fold, r.n, r.auc, r.accuracy, r.positive_rate, r.mean_pseudo_label
        );
    }
    sevit_fs::write_atomic(path, out.as_bytes())
}

/// Reads a `pseudo_labels.csv`.
///
/// # Errors
/// Unreadable file, another header, or a malformed row (named by line).
pub fn read_audit(path: &Path) -> anyhow::Result<Vec<AuditRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the pseudo-label audit {}", path.display()))?;
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next() == Some(HEADER),
        "{}: not a pseudo-label audit (expected the header {HEADER:?})",
        path.display()
    );
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_row(l).with_context(|| format!("{} line {}: {l:?}", path.display(), i + 2))
        })
        .collect()
}

fn parse_row(line: &str) -> anyhow::Result<AuditRow> {
    let f: Vec<&str> = line.split(',').collect();
    anyhow::ensure!(f.len() == 7, "expected 7 fields, found {}", f.len());
    Ok(AuditRow {
        epoch: f[0].parse()?,
        fold: f[1].parse()?,
        n: f[2].parse()?,
        auc: f[3].parse()?,
        accuracy: f[4].parse()?,
        positive_rate: f[5].parse()?,
        mean_pseudo_label: f[6].parse()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_fold_with_auc_and_accuracy() {
        let mut a =
            PseudoLabelAudit::new(vec![0, 0, 0, 1, 1], vec![true, false, true, true, false])
                .unwrap();
        a.record(&[0, 1, 3], &[0.9, 0.2, 0.4]).unwrap();
        a.record(&[2, 4], &[0.3, 0.6]).unwrap();
        let rows = a.finish_epoch(2);
        assert_eq!(rows.len(), 2);
        let f0 = &rows[0];
        assert_eq!((f0.epoch, f0.fold, f0.n), (2, 0, 3));
        // positives 0.9, 0.3 vs negative 0.2: both ranked above -> AUC 1; 0.3 misclassified.
        assert_eq!(f0.auc, 1.0);
        assert!((f0.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((f0.positive_rate - 1.0 / 3.0).abs() < 1e-12);
        let f1 = &rows[1];
        assert_eq!((f1.fold, f1.n), (1, 2));
        assert_eq!(f1.auc, 0.0);
        assert_eq!(f1.accuracy, 0.0);
        assert!(a.finish_epoch(3).is_empty(), "an epoch's draws are cleared");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(PseudoLabelAudit::new(vec![0], vec![]).is_err());
        let mut a = PseudoLabelAudit::new(vec![0], vec![true]).unwrap();
        assert!(a.record(&[0, 0], &[0.5]).is_err());
        assert!(a.record(&[1], &[0.5]).is_err());
    }

    #[test]
    fn resumed_epochs_keep_earlier_rows_and_replace_redone_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = audit_path(dir.path());
        let r = |epoch, auc| AuditRow {
            epoch,
            fold: 0,
            n: 4,
            auc,
            accuracy: 0.5,
            positive_rate: 0.25,
            mean_pseudo_label: 0.4,
        };
        append_epoch(&path, 0, &[r(0, 0.6)]).unwrap();
        append_epoch(&path, 1, &[r(1, 0.7)]).unwrap();
        append_epoch(&path, 1, &[r(1, 0.8)]).unwrap();
        assert_eq!(read_audit(&path).unwrap(), vec![r(0, 0.6), r(1, 0.8)]);
        std::fs::write(&path, "epoch,fold\n").unwrap();
        let e = read_audit(&path).unwrap_err().to_string();
        assert!(e.contains("not a pseudo-label audit"), "{e}");
        std::fs::write(&path, format!("{HEADER}\n0,0,x,1,1,1,1\n")).unwrap();
        let e = format!("{:#}", read_audit(&path).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
    }
}
