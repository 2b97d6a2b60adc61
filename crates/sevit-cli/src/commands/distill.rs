//! `sevit distill --step T`: one DISTL step of the curriculum.

use clap::Args as ClapArgs;

use super::pretrain::EngineArgs;

/// Flags of `sevit distill`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Time step T (1..k): unlabeled folds 0..T-1, starting from pretrain/ (T=1) or step{T-1}/.
    #[arg(long)]
    pub step: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (run, cfg, opts) = args.engine.setup()?;
    let o = sevit_distill::distill(&run, &cfg, args.step, &opts)?;
    if !opts.is_main() {
        return Ok(()); // in a data-parallel job only rank 0 reports
    }
    println!(
        "{}: {}/{} epochs, {} iterations, {} correction steps -> {}",
        o.stage,
        o.epochs_done,
        o.epochs,
        o.iterations,
        o.correction_steps,
        o.checkpoint.display()
    );
    Ok(())
}
