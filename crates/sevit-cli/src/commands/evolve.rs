//! `sevit evolve`: the whole curriculum (initial model if absent, then T = 1..k), with the test
//! AUC per T in RUN/summary.{json,csv}.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_distill::{EvolveOptions, PretrainOptions, Weights};

use super::pretrain::{parse_weights, EngineArgs};

/// Flags of `sevit evolve`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Initial model starts from this checkpoint (when pretrain/ is absent).
    #[arg(long, value_name = "CKPT")]
    pub init: Option<PathBuf>,
    /// Which network of --init to start from: student or teacher.
    #[arg(long, value_parser = parse_weights)]
    pub init_weights: Option<Weights>,
    /// Last step T to run (default: all folds).
    #[arg(long, value_name = "T")]
    pub until: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (run, cfg, opts) = args.engine.setup()?;
    let main = opts.is_main();
    let eo = EvolveOptions {
        pretrain: PretrainOptions {
            init: args.init,
            init_weights: args.init_weights,
            ..Default::default()
        },
        run: opts,
        until: args.until,
    };
    let rows = sevit_distill::evolve(&run, &cfg, &eo)?;
    if !main {
        return Ok(()); // in a data-parallel job only rank 0 reports
    }
    println!(
        "{:>2}  {:<9} {:>6} {:>6}  {:>7}  95% CI",
        "T", "stage", "labels", "unlab", "AUC"
    );
    for r in &rows {
        println!(
            "{:>2}  {:<9} {:>6} {:>6}  {:>7.4}  [{:.4}, {:.4}]",
            r.t, r.stage, r.n_labeled, r.n_unlabeled, r.auc, r.auc_lower, r.auc_upper
        );
    }
    println!("summary: {}", run.summary_csv().display());
    Ok(())
}
