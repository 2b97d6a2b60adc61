//! `sevit pretrain`: the initial model (supervised on the labeled split), a supervised
//! baseline (`--label-folds T`), or DINO-only self-supervised pretraining
//! (`--self-supervised --pool ...`).

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_distill::{PretrainOptions, RunLayout, RunOptions, TrainConfig, Weights};

/// Flags shared by the engine commands (`pretrain`, `distill`, `evolve`).
#[derive(ClapArgs, Debug, Clone)]
pub struct EngineArgs {
    /// Run directory (holds split.csv, written by `sevit split`).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Training config (TOML); default: the run's own `config.toml` when it has one (written
    /// by its first training command), else the paper preset (configs/paper.toml values).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value, `section.key=value` (repeatable), e.g. `--set optim.epochs=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue a stage from its last epoch checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many finished epochs of a stage (as if killed; `--resume` continues).
    #[arg(long, value_name = "EPOCHS")]
    pub stop_after_epochs: Option<usize>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl EngineArgs {
    /// Loads the config, applies the thread setting, joins the data-parallel job when launched
    /// as one (`sevit launch`, torchrun variables), takes the run directory's lock and records
    /// the config in it (rank 0 only).
    pub fn setup(&self) -> anyhow::Result<(RunLayout, TrainConfig, RunOptions)> {
        let Some(run_dir) = &self.run else {
            anyhow::bail!("give the run directory with --run DIR (made by `sevit split`)");
        };
        // A run remembers its config: without --config, the one its first command recorded.
        let recorded = RunLayout::new(run_dir).config_toml();
        let mut cfg = match &self.config {
            None if recorded.is_file() => {
                tracing::info!("config: the run's {}", recorded.display());
                TrainConfig::load(&recorded, &self.set)?
            }
            given => sevit_distill::config::load_config(given.as_deref(), &self.set)?,
        };
        let threads = cfg.apply_threads();
        let dist = sevit_distill::distributed::join(&mut cfg)?;
        let run = RunLayout::new(run_dir);
        if dist.as_ref().is_none_or(|d| d.is_main()) {
            // Held until the process exits: one training process per run directory.
            static RUN_LOCK: std::sync::OnceLock<sevit_distill::layout::RunLock> =
                std::sync::OnceLock::new();
            if !run_dir.exists() {
                let _ = CREATED_RUN_DIR.set(run_dir.clone());
            }
            let lock = run.lock()?;
            let _ = RUN_LOCK.set(lock);
            run.write_config_once(&cfg)?;
        }
        tracing::info!(run = %run_dir.display(), threads, device = ?cfg.device()?, "engine");
        let opts = RunOptions {
            resume: self.resume,
            stop_after_epochs: self.stop_after_epochs,
            progress: !self.no_progress,
            dist,
        };
        Ok((run, cfg, opts))
    }
}

/// The run directory this process created (it did not exist before `setup`).
static CREATED_RUN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// After a failed engine command: removes the run directory it created, when the command
/// left nothing in it but the lock and the recorded config, so that a typo'd `--run` or a
/// missing split leaves no empty run behind.
pub fn remove_created_run_dir_if_unused() {
    let Some(dir) = CREATED_RUN_DIR.get() else {
        return;
    };
    let layout = RunLayout::new(dir);
    let ours = [layout.lock_file(), layout.config_toml()];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let only_ours = entries
        .filter_map(Result::ok)
        .all(|e| ours.contains(&e.path()));
    if only_ours {
        for f in &ours {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// Flags of `sevit pretrain`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Start from this checkpoint (imported weights, a self-supervised run, ...).
    #[arg(long, value_name = "CKPT")]
    pub init: Option<PathBuf>,
    /// Which network of --init to start from: student or teacher (default: student).
    #[arg(long, value_parser = parse_weights)]
    pub init_weights: Option<Weights>,
    /// Supervised baseline with labels on the labeled set plus folds 0..T-1 (stage supervised{T}).
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub label_folds: usize,
    /// DINO-only self-supervised pretraining (no labels) on --pool (stage ssl).
    #[arg(long)]
    pub self_supervised: bool,
    /// Image pool for --self-supervised: dataset descriptors (.toml), manifests (.csv) or
    /// folders; default: the training images of the run's split.
    #[arg(long, num_args = 1.., value_name = "DESCRIPTOR")]
    pub pool: Vec<PathBuf>,
}

pub(crate) fn parse_weights(s: &str) -> Result<Weights, String> {
    s.parse()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (run, cfg, opts) = args.engine.setup()?;
    let main = opts.is_main();
    let outcome = if args.self_supervised {
        anyhow::ensure!(
            args.label_folds == 0 && args.init.is_none(),
            "--self-supervised takes neither --label-folds nor --init"
        );
        let pool = sevit_distill::data::pool(&args.pool, &run)?;
        sevit_distill::pretrain_self_supervised(&run, &cfg, &pool, &opts)?
    } else {
        anyhow::ensure!(
            args.pool.is_empty(),
            "--pool is only used with --self-supervised"
        );
        let p = PretrainOptions {
            init: args.init,
            init_weights: args.init_weights,
            label_folds: args.label_folds,
            run: opts,
        };
        sevit_distill::pretrain(&run, &cfg, &p)?
    };
    if !main {
        return Ok(()); // in a data-parallel job only rank 0 reports
    }
    println!(
        "{}: {}/{} epochs, {} iterations -> {}",
        outcome.stage,
        outcome.epochs_done,
        outcome.epochs,
        outcome.iterations,
        outcome.checkpoint.display()
    );
    Ok(())
}
