//! The two labeled sets of a site, recorded when the site is created:
//!
//! * `labeled.csv`: the labeled images of the correction passes (the initial model's
//!   training set);
//! * `validation.csv`: the **locked** validation set the gate scores every model on. Each
//!   row carries the SHA-256 of the file and of its pixels; before every use the files are
//!   checked against them, so the gate's cases cannot change silently, and the pixel hashes
//!   keep these images out of the inbox (training never touches them).
//!
//! Columns: `file,label,target,patient_id,file_sha256,pixel_sha256` (`file` absolute).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sevit_data::Sample;

use crate::site::write_atomic;

/// One recorded image of a labeled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedRow {
    /// Absolute path of the image.
    pub file: PathBuf,
    /// Label as in the source dataset.
    pub label: String,
    /// 1 for the positive label, 0 otherwise.
    pub target: f32,
    /// Patient id.
    pub patient_id: String,
    /// SHA-256 of the file's bytes.
    pub file_sha256: String,
    /// Pixel hash (as the inbox stores images).
    pub pixel_sha256: String,
}

impl LockedRow {
    /// The sample (for loaders).
    pub fn sample(&self) -> Sample {
        Sample {
            path: self.file.clone(),
            label: self.label.clone(),
            target: self.target,
            patient_id: self.patient_id.clone(),
        }
    }
}

/// Records `samples` (hashing each file) into `csv`, atomically.
pub fn write_locked(csv: &Path, samples: &[Sample]) -> anyhow::Result<Vec<LockedRow>> {
    let mut rows = Vec::with_capacity(samples.len());
    for s in samples {
        let file = std::fs::canonicalize(&s.path)
            .with_context(|| format!("{}: cannot resolve", s.path.display()))?;
        rows.push(LockedRow {
            file_sha256: crate::file_sha256(&file)?,
            pixel_sha256: crate::store::file_pixel_hash(&file)
                .with_context(|| format!("reading {}", file.display()))?,
            file,
            label: s.label.clone(),
            target: s.target,
            patient_id: s.patient_id.clone(),
        });
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        w.serialize(r)?;
    }
    if rows.is_empty() {
        w.write_record([
            "file",
            "label",
            "target",
            "patient_id",
            "file_sha256",
            "pixel_sha256",
        ])?;
    }
    write_atomic(csv, &w.into_inner()?)?;
    Ok(rows)
}

/// Reads a recorded set; with `verify`, checks every file's bytes against its recorded hash.
pub fn read_locked(csv: &Path, verify: bool) -> anyhow::Result<Vec<LockedRow>> {
    let mut r =
        csv::Reader::from_path(csv).with_context(|| format!("reading {}", csv.display()))?;
    let mut rows = Vec::new();
    for (i, row) in r.deserialize::<LockedRow>().enumerate() {
        rows.push(row.with_context(|| format!("{}: row {}", csv.display(), i + 2))?);
    }
    if verify {
        for row in &rows {
            let now = crate::file_sha256(&row.file).with_context(|| {
                format!(
                    "the locked set {} lists {}",
                    csv.display(),
                    row.file.display()
                )
            })?;
            if now != row.file_sha256 {
                bail!(
                    "{} changed since it was locked into {} (file hash {} now {}): the gate's \
                     cases must not change; restore the file or create a new site",
                    row.file.display(),
                    csv.display(),
                    &row.file_sha256[..12],
                    &now[..12]
                );
            }
        }
    }
    Ok(rows)
}

/// Pixel hashes of the locked validation set, with the reason an inbox image matching one is
/// quarantined (empty when the site has no validation set yet).
pub fn excluded_from_inbox(validation_csv: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    if !validation_csv.exists() {
        return Ok(BTreeMap::new());
    }
    Ok(read_locked(validation_csv, false)?
        .into_iter()
        .map(|r| {
            (
                r.pixel_sha256,
                "an image of the locked validation set (it must never be trained on)".to_string(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_validation_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let desc = sevit_data::synth::generate(
            &dir.path().join("d"),
            6,
            &sevit_data::SynthConfig {
                size: 32,
                ..Default::default()
            },
        )
        .unwrap();
        let ds = sevit_data::Dataset::from_descriptor(&desc).unwrap();
        let csv = dir.path().join("validation.csv");
        let rows = write_locked(&csv, &ds.samples).unwrap();
        assert_eq!(read_locked(&csv, true).unwrap(), rows);
        assert_eq!(excluded_from_inbox(&csv).unwrap().len(), 6);
        let victim = &ds.samples[2].path;
        let other = std::fs::read(&ds.samples[3].path).unwrap();
        std::fs::write(victim, other).unwrap();
        let err = format!("{:#}", read_locked(&csv, true).unwrap_err());
        assert!(err.contains("changed since it was locked"), "{err}");
    }
}
