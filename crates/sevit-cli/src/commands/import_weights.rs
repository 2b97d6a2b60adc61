//! `sevit import-weights`: convert another implementation's ViT weights (the DISTL/DINO
//! `.pth`, timm, Hugging Face ViT or DINOv2) into a sevit safetensors checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use sevit_model::import::{import_weights, ConfigSource, ImportOptions};

/// Flags of `sevit import-weights`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The weights: a `torch.save` file (`.pth`, `.pt`, `.bin`: DISTL/DINO checkpoint, DINO or
    /// timm backbone, a state dict), a `.safetensors` file, or a Hugging Face model folder
    /// (`save_pretrained`: `model.safetensors` or `pytorch_model.bin` with `config.json`),
    /// ViT or DINOv2. See docs/pretrained.md.
    #[arg(long)]
    pub input: PathBuf,
    /// The sevit checkpoint to write (`.safetensors`), atomically.
    #[arg(long)]
    pub output: PathBuf,
    /// Model configuration: a backbone preset (`micro`, `tiny/16`, `small/8`, `base/16`, ...;
    /// heads inferred from the weights) or a JSON file with a full model config: the
    /// `model_config` metadata of any sevit checkpoint, e.g. {"vit": {"img_size": 224,
    /// "patch_size": 8, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0,
    /// "qkv_bias": true, "ln_eps": 1e-6}, "head": {"out_dim": 65536, "hidden_dim": 2048,
    /// "bottleneck_dim": 256, "nlayers": 3, "norm_last_layer": true}, "cls_hidden_dim": 256}.
    /// Default: inferred from the tensor shapes.
    #[arg(long)]
    pub model_config: Option<String>,
    /// Attention heads of the backbone when inferring the config (not in any tensor shape):
    /// needed unless the checkpoint's args name the architecture (`arch = vit_small`, ...)
    /// or the width is a standard ViT's (192, 384, 768, 1024).
    #[arg(long, conflicts_with = "model_config")]
    pub num_heads: Option<i64>,
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
    let (ck, summary) = import_weights(
        &args.input,
        &ImportOptions {
            config,
            seed: args.seed,
            num_heads: args.num_heads,
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
