//! `sevit export`: a checkpoint's network as a TorchScript module for PyTorch
//! (`torch.jit.load`), with a JSON description of its input and output beside it.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_infer::{export_torchscript, positive_label_of};

use super::eval::ModelArgs;

/// Flags of `sevit export`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Export format (TorchScript, loadable with `torch.jit.load`).
    #[arg(long, default_value = "torchscript", value_parser = ["torchscript"])]
    pub format: String,
    /// The module file to write (e.g. `model.pt`); its description goes to the same name
    /// with `.json`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (checkpoint, stage, weights) = args.model.resolve()?;
    let model = args.model.load(&checkpoint, weights)?;
    let label = positive_label_of(&checkpoint, args.model.run.as_deref());
    let info = export_torchscript(&model, &args.out, label)?;
    println!("model: {stage} - {}", model.describe());
    println!(
        "wrote {} (TorchScript; input {:?}, output [B, 1 + D]: logit, then CLS features; \
         traced vs sevit max |diff| {:.1e}) and {}",
        args.out.display(),
        info.input_shape,
        info.self_check_max_abs_diff,
        args.out.with_extension("json").display()
    );
    Ok(())
}
