//! `sevit import-weights`: convert a PyTorch `.pth` (DISTL/DINO checkpoint or backbone
//! weights, as written by `torch.save`) into a sevit safetensors checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use sevit_model::import::{import_pth, ConfigSource, ImportOptions};

/// Flags of `sevit import-weights`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The `.pth` file written by `torch.save`.
    #[arg(long)]
    pub input: PathBuf,
    /// The sevit checkpoint to write (`.safetensors`), atomically.
    #[arg(long)]
    pub output: PathBuf,
    /// Model configuration: a backbone preset (`micro`, `tiny/16`, `small/8`, `base/16`, ...;
    /// heads inferred from the weights) or a JSON file with a full model config. Default:
    /// inferred from the tensor shapes.
    #[arg(long)]
    pub model_config: Option<String>,
    /// Seed of the fresh initialisation used for weights the file lacks (e.g. the heads when
    /// importing DINO backbone weights).
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.model_config {
        Some(spec) => ConfigSource::parse(spec)?,
        None => ConfigSource::Infer,
    };
    let (ck, summary) = import_pth(
        &args.input,
        &ImportOptions {
            config,
            seed: args.seed,
        },
    )?;
    ck.save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    print!("{summary}");
    println!(
        "wrote {} ({} tensors)",
        args.output.display(),
        ck.tensors.len()
    );
    Ok(())
}
