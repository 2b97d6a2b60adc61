//! `sevit compare A B`: the paired DeLong test of two models' predictions on the same cases
//! (predictions.csv files or evaluation folders), matched by case id → JSON + terminal table.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_infer::compare::{compare_predictions, model_name, predictions_path};

/// Flags of `sevit compare`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Model A: a predictions.csv or an evaluation folder (RUN/eval/<stage>).
    pub a: PathBuf,
    /// Model B: a predictions.csv or an evaluation folder.
    pub b: PathBuf,
    /// Name of model A in the report (default: derived from the path).
    #[arg(long)]
    pub name_a: Option<String>,
    /// Name of model B in the report.
    #[arg(long)]
    pub name_b: Option<String>,
    /// Confidence level.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Output JSON (default: compare.json in the current directory).
    #[arg(long, default_value = "compare.json")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let name_a = args.name_a.clone().unwrap_or_else(|| model_name(&args.a));
    let mut name_b = args.name_b.clone().unwrap_or_else(|| model_name(&args.b));
    if name_b == name_a {
        name_b.push_str(" (B)");
    }
    let report = compare_predictions(&args.a, &args.b, &name_a, &name_b, args.level)?;
    report.save_json(&args.out)?;
    println!("A = {name_a}: {}", predictions_path(&args.a).display());
    println!("B = {name_b}: {}", predictions_path(&args.b).display());
    println!("{report}");
    println!("wrote {}", args.out.display());
    Ok(())
}
