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
mod tests {
    use super::*;

    fn touch_png(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 40 + y) as u8]))
            .save(p)
            .unwrap();
    }

    fn manifest(dir: &Path, rows: &[&str]) -> PathBuf {
        let p = dir.join("manifest.csv");
        let mut s = String::from("file,label,patient_id,extra\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
            let f = r.split(',').next().unwrap();
            if !f.starts_with("missing") {
                touch_png(&dir.join(f));
            }
        }
        std::fs::write(&p, s).unwrap();
        p
    }

    #[test]
    fn manifest_reads_labels_targets_and_patients() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(
            d.path(),
            &[
                "images/a.png,normal,p1,x",
                "images/b.png,pneumonia,p2,y",
                "images/c.png,covid,,z",
            ],
        );
        let ds = Dataset::from_manifest(&m, "pneumonia", None).unwrap();
        assert_eq!(ds.samples.len(), 3);
        assert_eq!(ds.samples[1].target, 1.0);
        assert_eq!(ds.samples[0].target, 0.0);
        assert_eq!(ds.samples[2].patient_id, "images/c.png");
        let kept = Dataset::from_manifest(
            &m,
            "pneumonia",
            Some(&["normal".into(), "pneumonia".into()]),
        )
        .unwrap();
        assert_eq!(kept.samples.len(), 2);
    }

    #[test]
    fn missing_file_names_the_line() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(
            d.path(),
            &[
                "a.png,normal,p1,",
                "missing.png,pneumonia,p2,",
                "b.png,pneumonia,p3,",
            ],
        );
        let err = format!(
            "{:#}",
            Dataset::from_manifest(&m, "pneumonia", None).unwrap_err()
        );
        assert!(
            err.contains("line 3") && err.contains("missing.png"),
            "{err}"
        );
        let ds = Dataset::from_manifest_opts(
            &m,
            "pneumonia",
            None,
            LoadOptions {
                skip_bad: true,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(ds.samples.len(), 2);
    }

    #[test]
    fn duplicate_entry_names_both_lines() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(
            d.path(),
            &[
                "a.png,normal,p1,",
                "b.png,pneumonia,p2,",
                "a.png,normal,p1,",
            ],
        );
        let err = format!(
            "{:#}",
            Dataset::from_manifest(&m, "pneumonia", None).unwrap_err()
        );
        assert!(
            err.contains("line 4") && err.contains("duplicate") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn aliased_spellings_of_one_file_are_one_duplicate_entry() {
        let d = tempfile::tempdir().unwrap();
        touch_png(&d.path().join("images/x.png"));
        touch_png(&d.path().join("images/y.png"));
        let m = d.path().join("manifest.csv");
        std::fs::write(
            &m,
            "file,label\n./images/x.png,normal\nimages/y.png,pneumonia\nimages/sub/../x.png,pneumonia\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            Dataset::from_manifest(&m, "pneumonia", None).unwrap_err()
        );
        assert!(
            err.contains("line 4") && err.contains("duplicate") && err.contains("line 2"),
            "{err}"
        );
        std::fs::write(
            &m,
            "file,label\n./images/x.png,normal\nimages//y.png,pneumonia\n",
        )
        .unwrap();
        let ds = Dataset::from_manifest(&m, "pneumonia", None).unwrap();
        let root = crate::paths::absolute_clean(d.path()).unwrap();
        assert_eq!(ds.samples[0].path, root.join("images/x.png"));
        assert_eq!(ds.samples[0].patient_id, "images/x.png");
        assert_eq!(ds.samples[1].path, root.join("images/y.png"));
    }

    #[test]
    fn entries_outside_the_root_need_permission() {
        let d = tempfile::tempdir().unwrap();
        touch_png(&d.path().join("outside/o.png"));
        touch_png(&d.path().join("set/a.png"));
        let m = d.path().join("set/manifest.csv");
        let abs = d.path().join("outside/o.png");
        for entry in [
            "../outside/o.png".to_string(),
            abs.display().to_string(),
            "../../../../../../etc/passwd".into(),
        ] {
            std::fs::write(&m, format!("file,label\na.png,normal\n{entry},pneumonia\n")).unwrap();
            let err = format!(
                "{:#}",
                Dataset::from_manifest(&m, "pneumonia", None).unwrap_err()
            );
            assert!(
                err.contains("line 3") && err.contains("leaves the dataset root"),
                "{entry}: {err}"
            );
        }
        std::fs::write(&m, "file,label\na.png,normal\n../outside/o.png,pneumonia\n").unwrap();
        let opts = LoadOptions {
            allow_outside_root: true,
            ..LoadOptions::default()
        };
        let ds = Dataset::from_manifest_opts(&m, "pneumonia", None, opts).unwrap();
        assert_eq!(
            ds.samples[1].path,
            crate::paths::absolute_clean(&abs).unwrap()
        );
        let desc = d.path().join("set.toml");
        std::fs::write(&desc, "root = \"set\"\npositive = \"pneumonia\"\n").unwrap();
        assert!(Dataset::from_descriptor(&desc).is_err());
        std::fs::write(
            &desc,
            "root = \"set\"\npositive = \"pneumonia\"\nallow_outside_root = true\n",
        )
        .unwrap();
        assert_eq!(Dataset::from_descriptor(&desc).unwrap().samples.len(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn folder_links_neither_loop_nor_relabel() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..3 {
            touch_png(&d.path().join(format!("normal/n{i}.png")));
            touch_png(&d.path().join(format!("opacity/o{i}.png")));
        }
        std::os::unix::fs::symlink("..", d.path().join("normal/up")).unwrap();
        std::os::unix::fs::symlink("../..", d.path().join("opacity/up")).unwrap();
        let ds = Dataset::from_folder(d.path(), "opacity").unwrap();
        assert_eq!(ds.samples.len(), 6);
        assert_eq!(ds.label_counts()["normal"], 3);
        assert!(ds.samples.iter().all(|s| s
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&s.label[..1])));
    }

    #[test]
    fn directories_given_as_files_and_files_as_folders_say_so() {
        let d = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            Dataset::from_manifest(d.path(), "x", None).unwrap_err()
        );
        assert!(err.contains("is a directory"), "{err}");
        let f = d.path().join("m.csv");
        std::fs::write(&f, "file,label\n").unwrap();
        let err = format!("{:#}", Dataset::from_folder(&f, "x").unwrap_err());
        assert!(err.contains("is a file"), "{err}");
    }

    #[test]
    fn unknown_labels_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(d.path(), &["a.png,normal,p1,", "b.png,pneumonia,p2,"]);
        let err = format!(
            "{:#}",
            Dataset::from_manifest(&m, "tuberculosis", None).unwrap_err()
        );
        assert!(
            err.contains("unknown positive label") && err.contains("manifest.csv"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Dataset::from_manifest(&m, "pneumonia", Some(&["pneumonia".into(), "covid".into()]))
                .unwrap_err()
        );
        assert!(err.contains("unknown label \"covid\""), "{err}");
    }

    #[test]
    fn empty_fields_and_bad_header_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.csv");
        std::fs::write(&p, "file,label\na.png,\n").unwrap();
        let err = format!("{:#}", Dataset::from_manifest(&p, "x", None).unwrap_err());
        assert!(
            err.contains("line 2") && err.contains("empty `label`"),
            "{err}"
        );
        std::fs::write(&p, "path,class\na.png,x\n").unwrap();
        let err = format!("{:#}", Dataset::from_manifest(&p, "x", None).unwrap_err());
        assert!(err.contains("line 1") && err.contains("`file`"), "{err}");
    }

    #[test]
    fn verify_images_fails_or_skips_corrupt_files() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(
            d.path(),
            &[
                "a.png,normal,p1,",
                "b.png,pneumonia,p2,",
                "c.png,pneumonia,p3,",
            ],
        );
        std::fs::write(d.path().join("b.png"), b"garbage").unwrap();
        let mut ds = Dataset::from_manifest(&m, "pneumonia", None).unwrap();
        let err = format!("{:#}", ds.clone().verify_images(false).unwrap_err());
        assert!(err.contains("b.png"), "{err}");
        assert_eq!(ds.verify_images(true).unwrap(), 1);
        assert_eq!(ds.samples.len(), 2);
    }

    #[test]
    fn folder_tree_labels_are_subfolders() {
        let d = tempfile::tempdir().unwrap();
        touch_png(&d.path().join("NORMAL/x1.png"));
        touch_png(&d.path().join("NORMAL/sub/x2.jpeg").with_extension("png"));
        touch_png(&d.path().join("PNEUMONIA/y1.png"));
        std::fs::write(d.path().join("PNEUMONIA/notes.txt"), "x").unwrap();
        let ds = Dataset::from_folder(d.path(), "PNEUMONIA").unwrap();
        assert_eq!(ds.samples.len(), 3);
        assert_eq!(ds.label_counts()["NORMAL"], 2);
        assert_eq!(ds.samples.iter().filter(|s| s.target == 1.0).count(), 1);
    }

    #[test]
    fn descriptor_paths_are_relative_to_the_descriptor() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data/set1");
        manifest(&data, &["a.png,normal,p1,", "b.png,pneumonia,p2,"]);
        std::fs::create_dir_all(d.path().join("descr")).unwrap();
        let desc = d.path().join("descr/set1.toml");
        std::fs::write(&desc, "name = \"set1\"\nroot = \"../data/set1\"\npositive = \"pneumonia\"\nlicense = \"CC0\"\n").unwrap();
        let ds = Dataset::from_descriptor(&desc).unwrap();
        assert_eq!(ds.name, "set1");
        assert_eq!(ds.samples.len(), 2);
        assert_eq!(ds.license.as_deref(), Some("CC0"));
        std::fs::write(&desc, "root = \"../nowhere\"\npositive = \"pneumonia\"\n").unwrap();
        let err = format!("{:#}", Dataset::from_descriptor(&desc).unwrap_err());
        assert!(
            err.contains("nowhere") && err.contains("relative to the descriptor"),
            "{err}"
        );
    }
}
