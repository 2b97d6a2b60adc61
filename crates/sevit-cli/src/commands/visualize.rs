//! `sevit visualize`: last-layer CLS attention per head and averaged, as heat maps over the
//! image with a DINO-style mask keeping a share of the attention mass; one PNG grid per image.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_data::Subset;
use sevit_infer::{grid_title, visualize, GridOptions, ImageSelection};

use super::eval::ModelArgs;

/// Flags of `sevit visualize`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files to draw.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Draw every image under this folder.
    #[arg(long, conflicts_with = "images")]
    pub folder: Option<PathBuf>,
    /// Without images or --folder: this many images of the run's --subset, alternating
    /// positive and negative.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Subset of RUN/split.csv to take images from.
    #[arg(long, default_value = "test")]
    pub subset: String,
    /// Share of the attention mass the mask keeps (DINO --threshold).
    #[arg(long, default_value_t = 0.6)]
    pub threshold: f64,
    /// Side of each tile of the grid in pixels.
    #[arg(long, default_value_t = 256)]
    pub tile_size: u32,
    /// Tiles per row (0 = a near-square grid).
    #[arg(long, default_value_t = 0)]
    pub columns: usize,
    /// Output folder (default RUN/attention/<stage>[-teacher], or attention/ beside the checkpoint's stage folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (checkpoint, stage, weights) = args.model.resolve()?;
    let selection = if !args.images.is_empty() {
        ImageSelection::Files(args.images.clone())
    } else if let Some(f) = &args.folder {
        ImageSelection::Folder(f.clone())
    } else if let Some(run) = &args.model.run {
        ImageSelection::Run {
            run: run.clone(),
            subset: args.subset.parse::<Subset>()?,
            n: args.n,
        }
    } else {
        anyhow::bail!(
            "give images to draw: IMAGE files, --folder DIR, or --run DIR (its test images)"
        );
    };
    let images = selection.resolve()?;
    let model = args.model.load(&checkpoint, weights)?;
    let mut leaf = stage.clone();
    if weights == sevit_distill::Weights::Teacher {
        leaf.push_str("-teacher");
    }
    let out = args.out.clone().unwrap_or_else(|| match &args.model.run {
        Some(r) => r.join("attention").join(&leaf),
        None => checkpoint
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("attention").join(&leaf))
            .unwrap_or_else(|| PathBuf::from("attention").join(&leaf)),
    });
    let opts = GridOptions {
        threshold: args.threshold,
        tile_size: args.tile_size,
        columns: args.columns,
    };
    let title = grid_title(&stage, &model);
    let done = visualize(&model, &images, &out, &title, &opts)?;
    println!("{:>11}  {:<12}  grid", "P(positive)", "true label");
    for v in &done {
        println!(
            "{:>11.4}  {:<12}  {}",
            v.probability,
            v.image.label.as_deref().unwrap_or("-"),
            v.png.display()
        );
    }
    println!("{} attention grids in {}", done.len(), out.display());
    Ok(())
}
