//! `sevit visualize`: which images to draw (files, a folder, or N images of a run's split,
//! alternating positive and negative) and one attention grid PNG per image (see
//! [`super::attention::write_attention_grid`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sevit_data::{load_gray, Split, Subset};

use super::attention::{write_attention_grid, GridOptions};
use super::model::InferenceModel;
use super::source::{case_id, ImageList};
use sevit_distill::layout::RunLayout;

/// Which images to visualise.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSelection {
    /// These files.
    Files(Vec<PathBuf>),
    /// Every image under a folder.
    Folder(PathBuf),
    /// `n` images of a subset of `RUN/split.csv`, alternating positive and negative cases in
    /// split order.
    Run {
        /// The run directory.
        run: PathBuf,
        /// The subset (usually test).
        subset: Subset,
        /// How many images.
        n: usize,
    },
}

/// An image to draw: id, path and label when known.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedImage {
    /// Case id (relative path).
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// The true label, when the source has one.
    pub label: Option<String>,
}

/// One written grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Visualized {
    /// The image.
    pub image: SelectedImage,
    /// The model's probability.
    pub probability: f64,
    /// The PNG written.
    pub png: PathBuf,
}

impl ImageSelection {
    /// Resolves the selection to images.
    pub fn resolve(&self) -> anyhow::Result<Vec<SelectedImage>> {
        let from_list = |l: ImageList| -> Vec<SelectedImage> {
            l.paths
                .into_iter()
                .zip(l.ids)
                .map(|(path, id)| SelectedImage {
                    id,
                    path,
                    label: None,
                })
                .collect()
        };
        Ok(match self {
            ImageSelection::Files(f) => from_list(ImageList::from_files(f)?),
            ImageSelection::Folder(d) => from_list(ImageList::from_folder(d)?),
            ImageSelection::Run { run, subset, n } => {
                anyhow::ensure!(*n > 0, "asked for 0 images");
                let split = Split::read_csv(&RunLayout::new(run).split_csv())?;
                let samples = split.samples(*subset);
                anyhow::ensure!(
                    !samples.is_empty(),
                    "run {} has no {subset} image",
                    run.display()
                );
                let (pos, neg): (Vec<_>, Vec<_>) =
                    samples.into_iter().partition(|s| s.target > 0.5);
                let mut out = Vec::new();
                let (mut p, mut q) = (pos.into_iter(), neg.into_iter());
                while out.len() < *n {
                    let mut any = false;
                    for s in [p.next(), q.next()].into_iter().flatten() {
                        if out.len() < *n {
                            out.push(SelectedImage {
                                id: case_id(&split.root, &s.path),
                                path: s.path,
                                label: Some(s.label),
                            });
                        }
                        any = true;
                    }
                    if !any {
                        break;
                    }
                }
                out
            }
        })
    }
}

/// A file name for an image id: characters other than letters, digits, `-`, `_` and `.`
/// become `_`, the extension is replaced by `.png`.
pub fn grid_file_name(id: &str) -> String {
    let stem = match id.rfind('.') {
        Some(i) if i > id.rfind('/').map(|j| j + 1).unwrap_or(0) => &id[..i],
        _ => id,
    };
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.png", clean.trim_start_matches(['_', '.']))
}

/// The first title line of a model's grids: `STAGE (student|teacher) - CHECKPOINT`.
pub fn grid_title(stage: &str, model: &InferenceModel) -> String {
    format!(
        "{stage} ({}) - {}",
        model.weights.name(),
        model.checkpoint.display()
    )
}

/// Writes one attention grid per image into `out_dir` (named by [`grid_file_name`], made
/// unique with a numeric suffix); `title` is the first title line of every grid (e.g. the model).
pub fn visualize(
    model: &InferenceModel,
    images: &[SelectedImage],
    out_dir: &Path,
    title: &str,
    opts: &GridOptions,
) -> anyhow::Result<Vec<Visualized>> {
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(images.len());
    for im in images {
        let img = load_gray(&im.path, model.settings.image_size)
            .with_context(|| format!("image to visualise {}", im.path.display()))?;
        let mut name = grid_file_name(&im.id);
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!(
                "{}-{k}.png",
                grid_file_name(&im.id).trim_end_matches(".png")
            );
            k += 1;
        }
        let png = out_dir.join(name);
        let mut lines = vec![title.to_string()];
        lines.push(match &im.label {
            Some(l) => format!("{}  (true label: {l})", im.id),
            None => im.id.clone(),
        });
        let probability = write_attention_grid(model, &img, &lines, &png, opts)?.probability;
        out.push(Visualized {
            image: im.clone(),
            probability,
            png,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(grid_file_name("images/test_a.png"), "images_test_a.png");
        assert_eq!(grid_file_name("/abs/dir/x y.jpeg"), "abs_dir_x_y.png");
        assert_eq!(grid_file_name("dir.v2/noext"), "dir.v2_noext.png");
    }
}
