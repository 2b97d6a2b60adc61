//! `sevit experiment run|report|status PROTOCOL.toml`: an experiment protocol end to end,
//! resumable (`sevit_experiment::runner`), and its report (`results.md`, `results/`).

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use sevit_experiment::runner::{Runner, RunnerOptions};

/// Flags of `sevit experiment`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with a protocol.
#[derive(Subcommand, Debug)]
pub enum Action {
    /// Run every unfinished stage of the protocol, then write its report.
    Run {
        /// The protocol (TOML; see experiments/).
        protocol: PathBuf,
        /// Never draw progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Write the report from the stages run so far.
    Report {
        /// The protocol (TOML; see experiments/).
        protocol: PathBuf,
    },
    /// List the protocol's stages and which have finished.
    Status {
        /// The protocol (TOML; see experiments/).
        protocol: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (protocol, progress) = match &args.action {
        Action::Run {
            protocol,
            no_progress,
        } => (protocol, !no_progress),
        Action::Report { protocol } | Action::Status { protocol } => (protocol, false),
    };
    let mut runner = Runner::open(protocol, RunnerOptions { progress })?;
    let results = match args.action {
        Action::Run { .. } => runner.run_all()?,
        Action::Report { .. } => runner.report()?,
        Action::Status { .. } => {
            for id in runner.plan() {
                match runner.ledger().stages.iter().find(|s| s.id == id) {
                    Some(r) => println!("done     {id:<32} {:>7.0} s  {}", r.seconds, r.detail),
                    None => println!("pending  {id}"),
                }
            }
            let done: f64 = runner.ledger().stages.iter().map(|s| s.seconds).sum();
            let (left, untimed) = runner.eta();
            println!(
                "{:.1} h done; {:.1} h left by the stages timed so far{}",
                done / 3600.0,
                left / 3600.0,
                if untimed > 0 {
                    format!(", plus {untimed} stages of a kind not timed yet")
                } else {
                    String::new()
                }
            );
            return Ok(());
        }
    };
    for t in &results.targets {
        println!("{}: {} of {} seeds", t.target, t.met, t.of);
    }
    let docs = &runner.protocol.docs;
    println!(
        "wrote {} and {}/(results.json, models.csv, paired.csv, auc_vs_t.png, diagnosis.json)",
        docs.join("results.md").display(),
        docs.join("results").display()
    );
    Ok(())
}
