//! `sevit embed`: CLS features, class logits and last-block attention of images, as one
//! `.safetensors` file or a folder of `.npy` arrays.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_infer::{embed_images, EmbedFormat};

use super::eval::ModelArgs;
use super::image_args::ImageArgs;

/// Flags of `sevit embed`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: ImageArgs,
    /// Output: a `.safetensors` file (tensors features, logits, attention; ids in the
    /// metadata), or a folder of features.npy, logits.npy, attention.npy and ids.txt with
    /// `--format npy`.
    #[arg(long)]
    pub out: PathBuf,
    /// safetensors or npy.
    #[arg(long, default_value = "safetensors", value_parser = ["safetensors", "npy"])]
    pub format: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (checkpoint, stage, weights) = args.model.resolve()?;
    let list = args.input.list()?;
    let model = args.model.load(&checkpoint, weights)?;
    let e = embed_images(&model, &list)?;
    let format = if args.format == "npy" {
        EmbedFormat::Npy
    } else {
        EmbedFormat::Safetensors
    };
    e.write(&args.out, format, &checkpoint)?;
    println!("model: {stage} - {}", model.describe());
    println!(
        "{} images: features {:?}, logits {:?}, attention {:?} -> {}",
        e.ids.len(),
        e.features.size(),
        e.logits.size(),
        e.attention.size(),
        args.out.display()
    );
    Ok(())
}
