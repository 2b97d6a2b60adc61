//! The image selection shared by `sevit predict` and `sevit embed`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_infer::ImageList;

/// Images to run a model on: files, a folder, or a manifest's `file` column.
#[derive(ClapArgs, Debug)]
pub struct ImageArgs {
    /// Image files.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Every image under this folder (recursively).
    #[arg(long, conflicts_with_all = ["images", "manifest"])]
    pub folder: Option<PathBuf>,
    /// The `file` column of this manifest CSV (labels ignored).
    #[arg(long, conflicts_with = "images")]
    pub manifest: Option<PathBuf>,
    /// Accept manifest entries outside the manifest's folder (absolute or `..` paths).
    #[arg(long, requires = "manifest")]
    pub allow_outside_root: bool,
}

impl ImageArgs {
    /// The selected images.
    pub fn list(&self) -> anyhow::Result<ImageList> {
        if let Some(f) = &self.folder {
            ImageList::from_folder(f)
        } else if let Some(m) = &self.manifest {
            ImageList::from_manifest(m, self.allow_outside_root)
        } else {
            ImageList::from_files(&self.images)
        }
    }
}
