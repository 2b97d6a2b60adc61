//! `sevit augment-preview`: the multi-crop views of one image in a labelled PNG grid.

use anyhow::Result;
use clap::Args as ClapArgs;
use sevit_data::MultiCropConfig;
use sevit_render::preview;
use std::path::PathBuf;

/// Flags of `sevit augment-preview`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Image file (PNG, JPEG or DICOM).
    pub image: PathBuf,
    /// Output PNG.
    #[arg(long, value_name = "GRID.png")]
    pub out: PathBuf,
    /// Seed of the augmentations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Multi-crop settings: a training config (its [views] table), a file with a [views]
    /// table, or that table's fields; default = DISTL.
    #[arg(long, value_name = "TOML")]
    pub crop_config: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let crop = match &a.crop_config {
        Some(p) => MultiCropConfig::from_toml_file(p)?,
        None => MultiCropConfig::default(),
    };
    preview::write_augment_preview(&a.image, &a.out, &crop, a.seed)?;
    println!(
        "wrote {} ({} views: G1 = image, G2 = augmented global, L1..L{} = local)",
        a.out.display(),
        crop.num_views(),
        crop.n_local
    );
    Ok(())
}
