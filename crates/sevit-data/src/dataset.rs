//! Datasets: a list of labelled images with patient ids, from a TOML descriptor, a
//! `manifest.csv`, or a folder tree whose sub-folder names are the labels.
//!
//! Manifest CSV: a header with at least `file` and `label` (`patient_id` optional, more columns
//! ignored); `file` is relative to the manifest's directory. Absolute entries and `..` entries
//! that leave that directory are refused unless allowed ([`LoadOptions::allow_outside_root`]).
//! Paths are made absolute and clean once, on reading ([`crate::paths`]), so two spellings of
//! one file are one (duplicate) entry. An empty or absent `patient_id` makes the image its own
//! patient (its path relative to the root is used as id).
//!
//! Descriptor TOML (paths relative to the descriptor file):
//! ```toml
//! name = "kermany_pediatric_224src"
//! root = "../../shared/data/kermany_pediatric_224src"
//! manifest = "manifest.csv"        # relative to root; default "manifest.csv"
//! layout = "manifest"              # or "folder" (sub-folder names are labels)
//! positive = "pneumonia"
//! keep = ["normal", "pneumonia"]   # optional: other labels are dropped
//! test_prefix = "images/test_"     # optional default test selection for `sevit split`
//! source = "Kermany et al. 2018, ..."
//! license = "CC BY 4.0"
//! allow_outside_root = false       # optional: accept manifest entries outside the root
//! ```

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One image of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Full path of the image file.
    pub path: PathBuf,
    /// Label as written in the manifest (or the folder name).
    pub label: String,
    /// 1.0 for the positive label, 0.0 otherwise.
    pub target: f32,
    /// Patient id (never empty: an image without one is its own patient, id = its file).
    pub patient_id: String,
}

/// A labelled set of images for a binary task (`positive_label` vs. the rest).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Name (descriptor `name`, else the root folder's name).
    pub name: String,
    /// Directory that the manifest's `file` entries are relative to.
    pub root: PathBuf,
    /// The label whose target is 1.0.
    pub positive_label: String,
    /// The images, in manifest (or sorted folder) order.
    pub samples: Vec<Sample>,
    /// Default test selection by file prefix (relative to `root`), from the descriptor.
    pub test_prefix: Option<String>,
    /// Provenance (descriptor `source`).
    pub source: Option<String>,
    /// Licence (descriptor `license`).
    pub license: Option<String>,
}

/// How a descriptor's root is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `root/<manifest>` lists the images.
    #[default]
    Manifest,
    /// `root/<label>/**/<image>`.
    Folder,
}

/// The TOML dataset descriptor (see the module docs).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// Dataset name; defaults to the root folder name.
    pub name: Option<String>,
    /// Dataset root, relative to the descriptor file (or absolute).
    pub root: String,
    /// Manifest file relative to the root (default `manifest.csv`).
    pub manifest: Option<String>,
    /// Layout of the root (default: manifest).
    #[serde(default)]
    pub layout: Layout,
    /// The positive label.
    pub positive: String,
    /// Labels to keep (others are dropped); all when absent.
    pub keep: Option<Vec<String>>,
    /// Default test set: files whose relative path starts with this prefix.
    pub test_prefix: Option<String>,
    /// Provenance / citation.
    pub source: Option<String>,
    /// Licence of the images.
    pub license: Option<String>,
    /// Free-text description.
    pub description: Option<String>,
    /// Accept manifest entries that leave the root (absolute or `..` paths).
    #[serde(default)]
    pub allow_outside_root: bool,
}

/// How tolerant dataset reading is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Skip manifest rows whose image file is missing (each logged) instead of failing.
    pub skip_bad: bool,
    /// Accept manifest entries outside the manifest's folder (absolute or `..` paths).
    pub allow_outside_root: bool,
}

impl Descriptor {
    /// Parses a descriptor file.
    pub fn read(path: &Path) -> Result<Descriptor> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read dataset descriptor {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid dataset descriptor {}", path.display()))
    }
}

impl Dataset {
    /// Reads a TOML descriptor and the dataset it names.
    pub fn from_descriptor(path: &Path) -> Result<Dataset> {
        Self::from_descriptor_opts(path, LoadOptions::default())
    }

    /// As [`Dataset::from_descriptor`], with `opts` (the descriptor's own
    /// `allow_outside_root = true` also allows entries outside the root).
    pub fn from_descriptor_opts(path: &Path, opts: LoadOptions) -> Result<Dataset> {
        let d = Descriptor::read(path)?;
        // The descriptor's own folder as the OS resolves it (a `..` in `root` then means what
        // it means in a shell there, also when the folder was reached through a link).
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
        let root = crate::paths::absolute_clean(&base.join(&d.root))?;
        let opts = LoadOptions {
            allow_outside_root: opts.allow_outside_root || d.allow_outside_root,
            ..opts
        };
        if !root.is_dir() {
            bail!(
                "dataset root {} does not exist (from `root = {:?}` in {}; paths in a descriptor are relative to the descriptor file)",
                root.display(),
                d.root,
                path.display()
            );
        }
        let mut ds = match d.layout {
            Layout::Manifest => {
                let manifest = root.join(d.manifest.as_deref().unwrap_or("manifest.csv"));
                if !manifest.is_file() {
                    bail!(
                        "manifest {} named by descriptor {} does not exist",
                        manifest.display(),
                        path.display()
                    );
                }
                Self::from_manifest_opts(&manifest, &d.positive, d.keep.as_deref(), opts)
            }
            Layout::Folder => {
                let ds = Self::from_folder(&root, &d.positive)?;
                filter_keep(ds, d.keep.as_deref())
            }
        }
        .with_context(|| format!("loading dataset of descriptor {}", path.display()))?;
        if let Some(n) = d.name {
            ds.name = n;
        }
        ds.test_prefix = d.test_prefix;
        ds.source = d.source;
        ds.license = d.license;
        Ok(ds)
    }

    /// Reads a manifest CSV (`file,label[,patient_id,...]`, `file` relative to the CSV's
    /// directory). `positive` must be one of the labels; `keep` (when given) lists the labels
    /// to keep, each of which must occur. Missing image files, empty fields and duplicate
    /// files are errors naming the CSV line.
    pub fn from_manifest(csv: &Path, positive: &str, keep: Option<&[String]>) -> Result<Dataset> {
        Self::from_manifest_opts(csv, positive, keep, LoadOptions::default())
    }

    /// As [`Dataset::from_manifest`], with `opts`: `skip_bad` skips rows whose image file is
    /// missing (each a warning, counted in an info log); `allow_outside_root` accepts
    /// absolute and `..` entries.
    pub fn from_manifest_opts(
        csv: &Path,
        positive: &str,
        keep: Option<&[String]>,
        opts: LoadOptions,
    ) -> Result<Dataset> {
        if csv.is_dir() {
            bail!(
                "manifest {} is a directory; give the CSV file inside it (or use --folder for a folder tree)",
                csv.display()
            );
        }
        let csv_abs = crate::paths::absolute_clean(csv)?;
        let root = csv_abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(csv)
            .with_context(|| format!("cannot open manifest {}", csv.display()))?;
        let headers = rdr
            .headers()
            .with_context(|| format!("cannot read the header of manifest {}", csv.display()))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(fi), Some(li)) = (col("file"), col("label")) else {
            bail!(
                "manifest {} line 1: header must have `file` and `label` columns (found: {})",
                csv.display(),
                headers.iter().collect::<Vec<_>>().join(",")
            );
        };
        let pi = col("patient_id");
        let mut samples = Vec::new();
        let mut seen: HashMap<PathBuf, (u64, String)> = HashMap::new();
        let mut skipped = 0usize;
        for rec in rdr.records() {
            let rec =
                rec.with_context(|| format!("malformed row in manifest {}", csv.display()))?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let at = || format!("manifest {} line {}", csv.display(), line);
            let file = rec.get(fi).unwrap_or("").to_string();
            let label = rec.get(li).unwrap_or("").to_string();
            if file.is_empty() {
                bail!("{}: empty `file`", at());
            }
            if label.is_empty() {
                bail!("{}: empty `label` for {}", at(), file);
            }
            let path = crate::paths::resolve_entry(&root, &file, opts.allow_outside_root)
                .with_context(at)?;
            // Two spellings of one file (`./x`, `a/../x`, a symlink) are one entry.
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if let Some((prev, prev_file)) = seen.insert(key, (line, file.clone())) {
                bail!(
                    "{}: duplicate entry {} (the same file as {} on line {})",
                    at(),
                    file,
                    prev_file,
                    prev
                );
            }
            if let Some(k) = keep {
                if !k.contains(&label) {
                    continue;
                }
            }
            if path.is_dir() {
                bail!(
                    "{}: {} is a directory, not an image file",
                    at(),
                    path.display()
                );
            }
            if !path.is_file() {
                if opts.skip_bad {
                    tracing::warn!(
                        "{}: image file {} is missing; skipped",
                        at(),
                        path.display()
                    );
                    skipped += 1;
                    continue;
                }
                bail!("{}: image file {} does not exist", at(), path.display());
            }
            let patient_id = pi
                .and_then(|i| rec.get(i))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| crate::paths::relative_to(&root, &path));
            samples.push(Sample {
                path,
                label,
                target: 0.0,
                patient_id,
            });
        }
        if skipped > 0 {
            tracing::info!(
                "skipped {skipped} manifest rows with missing images in {}",
                csv.display()
            );
        }
        let name = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "dataset".into());
        finish(name, root, positive, samples, keep)
            .with_context(|| format!("manifest {}", csv.display()))
    }

    /// Imports a folder tree `root/<label>/**/<image>` (png, jpg, jpeg, dcm, dicom, or DICOM
    /// recognised by content; hidden
    /// entries ignored, order sorted). Each image is its own patient (id = its relative path),
    /// since a folder tree carries no patient information.
    pub fn from_folder(root: &Path, positive: &str) -> Result<Dataset> {
        if root.is_file() {
            bail!(
                "dataset folder {} is a file, not a folder (a manifest CSV goes to --manifest)",
                root.display()
            );
        }
        if !root.is_dir() {
            bail!("dataset folder {} does not exist", root.display());
        }
        let root = &crate::paths::absolute_clean(root)?;
        let mut samples = Vec::new();
        let mut labels: Vec<_> = std::fs::read_dir(root)
            .with_context(|| format!("cannot list {}", root.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        labels.sort();
        // One walk over every label folder, so a folder linked from two labels counts once.
        let dirs: Vec<PathBuf> = labels.iter().map(|l| root.join(l)).collect();
        let walk = crate::paths::walk_files(root, &dirs, &crate::load::is_image_file)?;
        if walk.other_files > 0 {
            tracing::info!(
                "dataset folder {}: {} file(s) that are not images (png, jpg, jpeg, dcm, dicom, or DICOM by content) ignored",
                root.display(),
                walk.other_files
            );
        }
        for path in walk.files {
            let rel = crate::paths::relative_to(root, &path);
            let label = rel.split('/').next().unwrap_or_default().to_string();
            samples.push(Sample {
                path,
                label,
                target: 0.0,
                patient_id: rel,
            });
        }
        let name = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "dataset".into());
        finish(name, root.to_path_buf(), positive, samples, None)
            .with_context(|| format!("dataset folder {}", root.display()))
    }

    /// Decodes every image (in parallel) to check that it is readable. Strict: the first
    /// unreadable image in dataset order is an error naming it. With `skip_bad`: unreadable
    /// images are removed, each logged as a warning; returns how many were removed.
    pub fn verify_images(&mut self, skip_bad: bool) -> Result<usize> {
        use rayon::prelude::*;
        let results: Vec<Option<anyhow::Error>> = self
            .samples
            .par_iter()
            .map(|s| crate::load::load_gray_native(&s.path).err())
            .collect();
        let mut bad = 0;
        let mut keep = Vec::with_capacity(self.samples.len());
        for (s, err) in std::mem::take(&mut self.samples).into_iter().zip(results) {
            match err {
                None => keep.push(s),
                Some(e) if skip_bad => {
                    tracing::warn!("skipping unreadable image: {e:#}");
                    bad += 1;
                }
                Some(e) => {
                    return Err(e.context(format!(
                        "dataset {}: unreadable image (use --skip-bad to skip such images)",
                        self.name
                    )))
                }
            }
        }
        self.samples = keep;
        if bad > 0 {
            tracing::warn!("dataset {}: skipped {bad} unreadable image(s)", self.name);
            check_labels(&self.samples, &self.positive_label, None)?;
        }
        Ok(bad)
    }

    /// Number of images per label, sorted by label.
    pub fn label_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in &self.samples {
            *m.entry(s.label.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Number of distinct patients.
    pub fn num_patients(&self) -> usize {
        self.samples
            .iter()
            .map(|s| s.patient_id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

fn filter_keep(mut ds: Dataset, keep: Option<&[String]>) -> Result<Dataset> {
    if let Some(k) = keep {
        ds.samples.retain(|s| k.contains(&s.label));
        check_labels(&ds.samples, &ds.positive_label, Some(k))?;
    }
    Ok(ds)
}

fn check_labels(samples: &[Sample], positive: &str, keep: Option<&[String]>) -> Result<()> {
    let mut present: Vec<&str> = samples.iter().map(|s| s.label.as_str()).collect();
    present.sort();
    present.dedup();
    if let Some(k) = keep {
        if !k.iter().any(|l| l == positive) {
            bail!("positive label {positive:?} is not among the kept labels {k:?}");
        }
        for l in k {
            if !present.contains(&l.as_str()) {
                bail!(
                    "unknown label {l:?} in `keep`: no image has it (labels present: {present:?})"
                );
            }
        }
    }
    if !present.contains(&positive) {
        bail!("unknown positive label {positive:?}: no image has it (labels present: {present:?})");
    }
    if present.len() < 2 {
        bail!("only one label ({present:?}) present: a binary task needs a negative label too");
    }
    Ok(())
}

fn finish(
    name: String,
    root: PathBuf,
    positive: &str,
    mut samples: Vec<Sample>,
    keep: Option<&[String]>,
) -> Result<Dataset> {
    check_labels(&samples, positive, keep)?;
    for s in &mut samples {
        s.target = if s.label == positive { 1.0 } else { 0.0 };
    }
    Ok(Dataset {
        name,
        root,
        positive_label: positive.to_string(),
        samples,
        test_prefix: None,
        source: None,
        license: None,
    })
}

#[cfg(test)]
mod tests;
