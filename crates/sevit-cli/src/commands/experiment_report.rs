//! `sevit experiment-report`: the DISTL-vs-supervised experiment's `results.md` with its JSON,
//! CSV and AUC-vs-T plot, from the predictions under an experiment directory
//! (`sevit_experiment`; written by `scripts/experiment.sh`).

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_experiment::{write_report, ReportSpec};

/// Flags of `sevit experiment-report`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Experiment directory: seed-<s>/eval/<distl|supervised>-T<t>/predictions.csv.
    #[arg(long)]
    pub exp: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "docs/results.md")]
    pub out: PathBuf,
    /// Folder for results.json, models.csv, paired.csv and auc_vs_t.png.
    #[arg(long, default_value = "docs/results")]
    pub assets: PathBuf,
    /// Title of the report.
    #[arg(
        long,
        default_value = "DISTL on Kermany pediatric chest X-rays: AUC against T"
    )]
    pub title: String,
    /// Markdown file(s) placed before the tables (repeatable).
    #[arg(long)]
    pub preamble: Vec<PathBuf>,
    /// Markdown file(s) placed after the tables (repeatable).
    #[arg(long)]
    pub appendix: Vec<PathBuf>,
    /// Folder with one sub-folder T<t> of attention PNGs per step.
    #[arg(long)]
    pub attention: Option<PathBuf>,
    /// Confidence level.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let results = write_report(&ReportSpec {
        exp: args.exp,
        out: args.out.clone(),
        assets: args.assets.clone(),
        title: args.title,
        preamble: args.preamble,
        appendix: args.appendix,
        attention: args.attention,
        level: args.level,
    })?;
    for t in &results.targets {
        println!("{}: {} of {} seeds", t.target, t.met, t.of);
    }
    println!(
        "wrote {} and {}/(results.json, models.csv, paired.csv, auc_vs_t.png)",
        args.out.display(),
        args.assets.display()
    );
    Ok(())
}
