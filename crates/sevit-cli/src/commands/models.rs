//! `sevit models init|list|show|promote|rollback`: the model registry of a site.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args as ClapArgs, Subcommand};
use sevit_data::{Split, Subset};
use sevit_distill::{RunLayout, Weights};
use sevit_evolution::{init_site, InitRequest, Registry, Settings, Site};

use super::pretrain::parse_weights;

/// Flags of `sevit models`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// `sevit models` sub-commands.
#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Register a run's initial model as v1 (in service), with its labeled set and a locked
    /// validation set from the run's split.
    Init(InitArgs),
    /// Every version: status, parent, images, validation AUC; `*` marks the one in service.
    List {
        /// Site directory.
        #[arg(long)]
        store: PathBuf,
    },
    /// One version as JSON (default: the one in service).
    Show {
        /// Site directory.
        #[arg(long)]
        store: PathBuf,
        /// Version id (v1, v2, ...).
        version: Option<String>,
    },
    /// Put a version in service by hand (recorded in the audit log).
    Promote {
        /// Site directory.
        #[arg(long)]
        store: PathBuf,
        /// Version id.
        version: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
        /// Allow a version the gate rejected.
        #[arg(long)]
        override_gate: bool,
    },
    /// Take the version in service out and serve the one before it again.
    Rollback {
        /// Site directory.
        #[arg(long)]
        store: PathBuf,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Flags of `sevit models init`.
#[derive(ClapArgs, Debug)]
pub struct InitArgs {
    /// Site directory (created).
    #[arg(long)]
    pub store: PathBuf,
    /// Run directory of the initial model (split.csv, config.toml, the stage's checkpoint).
    #[arg(long)]
    pub run: PathBuf,
    /// Stage of --run holding the initial model.
    #[arg(long, default_value = "pretrain")]
    pub stage: String,
    /// Subset of the run's split locked as the gate's validation set (it must not be trained on).
    #[arg(long, default_value = "val")]
    pub validation_subset: String,
    /// Which network is served and starts the first step.
    #[arg(long, value_parser = parse_weights, default_value = "student")]
    pub weights: Weights,
    /// Training config of the evolution steps (default: the run's config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value, `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// New images needed before a step trains.
    #[arg(long, default_value_t = Settings::default().min_new_images)]
    pub min_new: usize,
    /// Non-inferiority margin of the gate on the validation AUC.
    #[arg(long, default_value_t = Settings::default().gate.delta)]
    pub delta: f64,
    /// Also require the sensitivity at the deployed threshold not to drop by more than delta.
    #[arg(long)]
    pub check_sensitivity: bool,
    /// Deployed decision threshold.
    #[arg(long, default_value_t = Settings::default().gate.threshold)]
    pub threshold: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::Init(a) => init(a),
        ModelsCommand::List { store } => {
            let reg = Registry::load_existing(&Site::new(store))?;
            println!(
                "{:1} {:<5} {:<11} {:<6} {:>7} {:>5} {:>7}  {:<23}  gate",
                "", "id", "status", "parent", "images", "new", "val AUC", "95% CI"
            );
            for v in &reg.versions {
                let mark = if reg.current_id() == Some(v.id.as_str()) {
                    "*"
                } else {
                    ""
                };
                let gate = v.gate.as_ref().map_or("initial model".to_string(), |g| {
                    format!(
                        "{:+.4} [{:+.4}, {:+.4}] p={:.3}",
                        g.diff, g.lower_bound, g.upper_bound, g.p_value
                    )
                });
                println!(
                    "{:1} {:<5} {:<11} {:<6} {:>7} {:>5} {:>7.4}  [{:.4}, {:.4}]  {}",
                    mark,
                    v.id,
                    v.status.to_string(),
                    v.parent.as_deref().unwrap_or("-"),
                    v.trained_on.images,
                    v.trained_on.new_images,
                    v.validation.auc,
                    v.validation.auc_lower,
                    v.validation.auc_upper,
                    gate
                );
            }
            println!("in service: {}", reg.current_id().unwrap_or("none"));
            Ok(())
        }
        ModelsCommand::Show { store, version } => {
            let reg = Registry::load_existing(&Site::new(store))?;
            println!(
                "{}",
                serde_json::to_string_pretty(reg.select(version.as_deref())?)?
            );
            Ok(())
        }
        ModelsCommand::Promote {
            store,
            version,
            reason,
            override_gate,
        } => {
            Registry::promote_on(&Site::new(store), &version, override_gate, &reason)?;
            println!("in service: {version}");
            Ok(())
        }
        ModelsCommand::Rollback { store, reason } => {
            let (before, now) = Registry::rollback_on(&Site::new(store), &reason)?;
            println!("rolled back {before}; in service: {now}");
            Ok(())
        }
    }
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    let run = RunLayout::new(&a.run);
    let config_path = a.config.clone().unwrap_or_else(|| run.config_toml());
    anyhow::ensure!(
        config_path.is_file(),
        "no training config: {} does not exist (give --config)",
        config_path.display()
    );
    let config = sevit_distill::TrainConfig::load(&config_path, &a.set)?;
    let split = Split::read_csv(&run.split_csv())
        .with_context(|| format!("reading the split of run {}", a.run.display()))?;
    let subset: Subset = a.validation_subset.parse()?;
    anyhow::ensure!(
        subset != Subset::Labeled,
        "the validation set cannot be the labeled set the corrections train on"
    );
    let mut settings = Settings {
        min_new_images: a.min_new,
        ..Default::default()
    };
    settings.gate.delta = a.delta;
    settings.gate.check_sensitivity = a.check_sensitivity;
    settings.gate.threshold = a.threshold;
    let req = InitRequest {
        checkpoint: run.checkpoint(&a.stage),
        weights: a.weights,
        config,
        labeled: split.samples(Subset::Labeled),
        validation: split.samples(subset),
        settings,
    };
    let site = Site::new(&a.store);
    let v = init_site(&site, &req)?;
    println!(
        "site {}: v1 in service (validation AUC {:.4} [{:.4}, {:.4}] on {} images, {} positive)",
        site.root().display(),
        v.validation.auc,
        v.validation.auc_lower,
        v.validation.auc_upper,
        v.validation.n,
        v.validation.n_positive
    );
    Ok(())
}
