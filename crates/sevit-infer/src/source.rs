//! What to run a model on: labelled cases (a subset of a run's `split.csv`, a dataset
//! descriptor, a manifest or a folder tree) for evaluation, or plain image files (a folder, a
//! manifest, a list) for prediction. Every case has a stable id: its path relative to the
//! dataset root with `/` separators, which is what `predictions.csv` files are matched on.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sevit_data::{Dataset, Sample, Split, Subset};

use sevit_distill::layout::RunLayout;

/// Where labelled cases come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseSource {
    /// A subset of `RUN/split.csv`.
    Run {
        /// The run directory.
        run: PathBuf,
        /// Which subset (usually `test`).
        subset: Subset,
    },
    /// A dataset descriptor (`.toml`); all its images.
    Descriptor(PathBuf),
    /// A manifest CSV (`file,label[,patient_id]`) with the positive label.
    Manifest {
        /// The CSV file.
        csv: PathBuf,
        /// The positive label.
        positive: String,
        /// Labels to keep (all when empty).
        keep: Vec<String>,
    },
    /// A folder tree `ROOT/<label>/**/<image>` with the positive label.
    Folder {
        /// The root folder.
        root: PathBuf,
        /// The positive label.
        positive: String,
    },
}

/// Labelled cases with their ids.
#[derive(Debug, Clone)]
pub struct Cases {
    /// Short name for reports and output folders (`test`, the dataset name, ...).
    pub name: String,
    /// A description of the source (for reports).
    pub description: String,
    /// The positive label.
    pub positive: String,
    /// The images.
    pub samples: Vec<Sample>,
    /// One id per sample (relative path).
    pub ids: Vec<String>,
}

impl Cases {
    /// Binary labels (`target > 0.5`).
    pub fn labels(&self) -> Vec<bool> {
        self.samples.iter().map(|s| s.target > 0.5).collect()
    }
}

/// `path` relative to `root` with `/` separators, or the whole path when it is outside `root`.
pub fn case_id(root: &Path, path: &Path) -> String {
    let Ok(rel) = path.strip_prefix(root) else {
        return path.to_string_lossy().replace('\\', "/");
    };
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl CaseSource {
    /// Loads the cases (no image is decoded here).
    ///
    /// # Errors
    /// Unreadable split/descriptor/manifest/folder, an empty selection.
    pub fn load(&self) -> anyhow::Result<Cases> {
        let (name, description, root, positive, samples) = match self {
            CaseSource::Run { run, subset } => {
                let path = RunLayout::new(run).split_csv();
                let split = Split::read_csv(&path)?;
                let samples = split.samples(*subset);
                (
                    subset.to_string(),
                    format!(
                        "{} subset {subset} of dataset {}",
                        path.display(),
                        split.name
                    ),
                    split.root.clone(),
                    split.positive_label().to_string(),
                    samples,
                )
            }
            CaseSource::Descriptor(p) => {
                let ds = Dataset::from_descriptor(p)?;
                (
                    ds.name.clone(),
                    format!("dataset {} ({})", ds.name, p.display()),
                    ds.root,
                    ds.positive_label,
                    ds.samples,
                )
            }
            CaseSource::Manifest {
                csv,
                positive,
                keep,
            } => {
                let keep_opt = (!keep.is_empty()).then_some(keep.as_slice());
                let ds = Dataset::from_manifest(csv, positive, keep_opt)?;
                (
                    ds.name.clone(),
                    format!("manifest {}", csv.display()),
                    ds.root,
                    ds.positive_label,
                    ds.samples,
                )
            }
            CaseSource::Folder { root, positive } => {
                let ds = Dataset::from_folder(root, positive)?;
                (
                    ds.name.clone(),
                    format!("folder {}", root.display()),
                    ds.root,
                    ds.positive_label,
                    ds.samples,
                )
            }
        };
        if samples.is_empty() {
            bail!("no image selected from {description}");
        }
        let ids = samples.iter().map(|s| case_id(&root, &s.path)).collect();
        Ok(Cases {
            name,
            description,
            positive,
            samples,
            ids,
        })
    }
}

pub use sevit_data::load::{is_image_file, IMAGE_EXTENSIONS};

/// Every image file under `root` (recursively; hidden entries skipped; see
/// [`is_image_file`]), sorted.
///
/// # Errors
/// A folder that cannot be listed.
pub fn list_images(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(walk_images(root)?.files)
}

fn walk_images(root: &Path) -> anyhow::Result<sevit_data::paths::Walk> {
    if root.is_file() {
        bail!(
            "image folder {} is a file, not a folder (give single images as arguments)",
            root.display()
        );
    }
    if !root.is_dir() {
        bail!("image folder {} does not exist", root.display());
    }
    let root = sevit_data::paths::absolute_clean(root)?;
    sevit_data::paths::walk_files(&root, std::slice::from_ref(&root), &is_image_file)
}

/// Unlabelled images to predict, with their ids.
#[derive(Debug, Clone, Default)]
pub struct ImageList {
    /// Image paths.
    pub paths: Vec<PathBuf>,
    /// One id per path (relative to the folder or manifest directory, else the path as given).
    pub ids: Vec<String>,
    /// Files of a folder that are not images, left out.
    pub ignored: usize,
}

impl ImageList {
    /// Every image under `root` (see [`list_images`]).
    pub fn from_folder(root: &Path) -> anyhow::Result<Self> {
        let walk = walk_images(root)?;
        if walk.files.is_empty() {
            bail!(
                "no image (png, jpg, jpeg, dcm, dicom, or DICOM without an extension) under {} ({} other file(s))",
                root.display(),
                walk.other_files
            );
        }
        let root = sevit_data::paths::absolute_clean(root)?;
        let ids = walk.files.iter().map(|p| case_id(&root, p)).collect();
        Ok(ImageList {
            paths: walk.files,
            ids,
            ignored: walk.other_files,
        })
    }

    /// The `file` column of a manifest CSV (paths relative to its directory; absolute and
    /// `..` entries that leave it only with `allow_outside_root`); other columns, labels
    /// included, are ignored. Quoted fields are understood; a record may not span lines.
    pub fn from_manifest(csv: &Path, allow_outside_root: bool) -> anyhow::Result<Self> {
        let csv_abs = sevit_data::paths::absolute_clean(csv)?;
        let root = csv_abs.parent().unwrap_or(Path::new("/"));
        let text = std::fs::read_to_string(csv)
            .with_context(|| format!("cannot read manifest {}", csv.display()))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines
            .next()
            .with_context(|| format!("manifest {} is empty", csv.display()))?;
        let fi = split_csv_line(header)
            .iter()
            .position(|h| h.trim() == "file")
            .with_context(|| format!("manifest {} line 1: no `file` column", csv.display()))?;
        let mut out = ImageList::default();
        for (k, line) in lines {
            let fields = split_csv_line(line);
            let file = fields.get(fi).map(|f| f.trim()).unwrap_or("");
            if file.is_empty() {
                bail!("manifest {} line {}: empty `file`", csv.display(), k + 1);
            }
            let path = sevit_data::paths::resolve_entry(root, file, allow_outside_root)
                .with_context(|| format!("manifest {} line {}", csv.display(), k + 1))?;
            out.paths.push(path);
            out.ids.push(file.to_string());
        }
        if out.paths.is_empty() {
            bail!("manifest {} lists no image", csv.display());
        }
        Ok(out)
    }

    /// Explicit image files; each id is the path as given.
    pub fn from_files(files: &[PathBuf]) -> anyhow::Result<Self> {
        if files.is_empty() {
            bail!("no image file given");
        }
        Ok(ImageList {
            paths: files.to_vec(),
            ids: files
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            ignored: 0,
        })
    }
}

/// Splits one CSV line into fields (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            ('\r', false) => {}
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_relative_with_slashes() {
        assert_eq!(
            case_id(Path::new("/d/root"), Path::new("/d/root/images/a.png")),
            "images/a.png"
        );
        assert_eq!(
            case_id(Path::new("/d/root"), Path::new("/x/b.png")),
            "/x/b.png"
        );
    }

    #[test]
    fn csv_lines() {
        assert_eq!(split_csv_line("a,\"b,c\",d"), vec!["a", "b,c", "d"]);
        assert_eq!(split_csv_line("\"x\"\"y\",,z"), vec!["x\"y", "", "z"]);
    }

    #[test]
    fn image_lists() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub/.hidden")).unwrap();
        for f in ["b.png", "sub/a.JPG", "sub/.hidden/c.png", "notes.txt"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let l = ImageList::from_folder(d.path()).unwrap();
        assert_eq!(l.ids, vec!["b.png", "sub/a.JPG"]);
        assert_eq!(l.ignored, 1, "notes.txt");
        // A DICOM file without an extension (as PACS exports name them) is an image.
        let mut dcm = vec![0u8; 128];
        dcm.extend(b"DICM");
        std::fs::write(d.path().join("sub/IM0001"), &dcm).unwrap();
        let l = ImageList::from_folder(d.path()).unwrap();
        assert_eq!(l.ids, vec!["b.png", "sub/IM0001", "sub/a.JPG"]);
        let csv = d.path().join("m.csv");
        std::fs::write(&csv, "label,file\nx,\"sub/a.JPG\"\n\ny,b.png\n").unwrap();
        let m = ImageList::from_manifest(&csv, false).unwrap();
        assert_eq!(m.ids, vec!["sub/a.JPG", "b.png"]);
        assert_eq!(m.paths[1], d.path().join("b.png"));
        std::fs::write(&csv, "label,path\nx,a\n").unwrap();
        let e = ImageList::from_manifest(&csv, false).unwrap_err();
        assert!(format!("{e:#}").contains("no `file` column"), "{e:#}");
        assert!(ImageList::from_folder(&d.path().join("nope")).is_err());
    }
}
