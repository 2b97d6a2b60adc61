//! `sevit evolve`: the whole curriculum (initial model if absent, then T = 1..k), with the test
//! AUC per T in RUN/summary.{json,csv}; or, with `--store`, one gated evolution step of a site
//! (sevit-evolution).

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_distill::{EvolveOptions, PretrainOptions, RunOptions, Weights};
use sevit_evolution::{EvolveRequest, Site, StepOutcome};

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
    /// Site directory: train the next DISTL step from the model in service on the inbox's
    /// images, and promote it only if the gate finds it non-inferior (instead of --run).
    #[arg(long, conflicts_with_all = ["run", "config", "init", "init_weights", "until"])]
    pub store: Option<PathBuf>,
    /// With --store: new images needed (default: the site's min_new_images).
    #[arg(long, requires = "store")]
    pub min_new: Option<usize>,
    /// With --store: train even with fewer new images.
    #[arg(long, requires = "store")]
    pub force: bool,
    /// With --store: also train on images only rejected or rolled-back versions used.
    #[arg(long, requires = "store")]
    pub include_held: bool,
}

fn run_store(args: Args, store: PathBuf) -> anyhow::Result<()> {
    let site = Site::new(store);
    let req = EvolveRequest {
        min_new: args.min_new,
        force: args.force,
        include_held: args.include_held,
        overrides: args.engine.set.clone(),
        run: RunOptions {
            resume: true,
            stop_after_epochs: args.engine.stop_after_epochs,
            progress: !args.engine.no_progress,
            dist: None,
        },
    };
    match sevit_evolution::evolve_step(&site, &req)? {
        StepOutcome::Waiting { new_images, needed } => {
            println!(
                "waiting: {new_images} new images, a step needs {needed} (--force trains now)"
            );
        }
        StepOutcome::Stopped {
            version,
            epochs_done,
            epochs,
        } => {
            println!("{version}: stopped after {epochs_done}/{epochs} epochs; `sevit evolve --store {}` resumes it", site.root().display());
        }
        StepOutcome::Decided { version, served } => {
            let g = version
                .gate
                .as_ref()
                .expect("a step's version has a gate record");
            println!(
                "{}: {} (validation AUC {:.4} vs {:.4}, difference {:+.4}, {:.0}% CI [{:+.4}, {:+.4}], margin {})",
                version.id,
                version.status,
                g.auc_candidate,
                g.auc_current,
                g.diff,
                g.config.level * 100.0,
                g.lower_bound,
                g.upper_bound,
                g.config.delta
            );
            println!("{}", g.reason);
            println!("in service: {served}");
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(store) = args.store.clone() {
        return run_store(args, store);
    }
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
    let last = eo.until.unwrap_or_else(|| {
        sevit_data::Split::read_csv(&run.split_csv())
            .map(|s| s.num_folds())
            .unwrap_or(0)
    });
    let finished = rows.iter().any(|r| r.t == last);
    if rows.is_empty() {
        println!(
            "stopped before the initial model finished: no summary yet; continue with `sevit evolve --run {} --resume`",
            run.root.display()
        );
        return Ok(());
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
    if !finished {
        println!(
            "stopped before T = {last} finished; continue with `sevit evolve --run {} --resume`",
            run.root.display()
        );
    }
    Ok(())
}
