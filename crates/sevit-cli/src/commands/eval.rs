//! `sevit eval`: a checkpoint on labelled cases → report.json, predictions.csv, roc.png,
//! reliability.png, report.html (and with --nuisance the AUC per nuisance severity), plus a terminal table.

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;
use sevit_data::nuisance::{NuisanceKind, MAX_SEVERITY};
use sevit_data::Subset;
use sevit_distill::Weights;
use sevit_infer::{
    default_out_dir, evaluate_checkpoint, resolve_checkpoint, CaseSource, EvalRequest,
    InferenceModel, RobustnessOptions, SettingOverrides,
};
use sevit_metrics::{BootstrapOptions, EvalOptions};

use super::pretrain::parse_weights;

/// Which checkpoint and network to use, and preprocessing overrides (shared by `eval`,
/// `visualize` and `predict`).
#[derive(ClapArgs, Debug, Clone)]
pub struct ModelArgs {
    /// Run directory (split.csv, config.toml, stage checkpoints).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Stage of --run to use: pretrain, step1, step2, ... (default: the highest stepT, else pretrain).
    #[arg(long)]
    pub stage: Option<String>,
    /// A checkpoint file (instead of --run/--stage).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// A site (`sevit models`): its model in service, or --version (instead of --run/--checkpoint).
    #[arg(long, value_name = "SITE", conflicts_with_all = ["run", "checkpoint", "stage"])]
    pub store: Option<PathBuf>,
    /// With --store: this model version (v1, v2, ...) instead of the one in service.
    #[arg(long, requires = "store")]
    pub version: Option<String>,
    /// Which network of the checkpoint: student or teacher (default: student; with --store,
    /// the network the version serves).
    #[arg(long, value_parser = parse_weights)]
    pub weights: Option<Weights>,
    /// Image side in pixels (default: the checkpoint's eval image size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Gaussian blur radius of the inference transform (default: the checkpoint's, 0.5 in DISTL).
    #[arg(long)]
    pub blur: Option<f64>,
    /// Images per forward pass (default: the checkpoint's eval batch size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Device: cpu, cuda, cuda:N or auto (default: the checkpoint's config).
    #[arg(long)]
    pub device: Option<String>,
}

impl ModelArgs {
    /// The checkpoint path, its stage label and the network to use (--weights, else the one
    /// the --store version serves, else the student).
    pub fn resolve(&self) -> anyhow::Result<(PathBuf, String, Weights)> {
        if let Some(store) = &self.store {
            let site = sevit_evolution::Site::new(store);
            let v = sevit_evolution::Registry::load_existing(&site)?
                .select(self.version.as_deref())?
                .clone();
            if v.status == sevit_evolution::Status::Rejected {
                tracing::warn!(
                    "{} was rejected by the promotion gate: it is used here only because \
                     --version asks for it",
                    v.id
                );
            }
            return Ok((
                site.resolve(&v.checkpoint),
                v.id,
                self.weights.unwrap_or(v.weights),
            ));
        }
        let (path, label) = resolve_checkpoint(
            self.checkpoint.as_deref(),
            self.run.as_deref(),
            self.stage.as_deref(),
        )?;
        Ok((path, label, self.weights.unwrap_or(Weights::Student)))
    }

    /// Loads network `weights` of `checkpoint` (as [`ModelArgs::resolve`] names them) with
    /// these flags' run and overrides.
    pub fn load(&self, checkpoint: &Path, weights: Weights) -> anyhow::Result<InferenceModel> {
        InferenceModel::load(checkpoint, weights, self.run.as_deref(), &self.overrides())
    }

    /// Preprocessing/device overrides.
    pub fn overrides(&self) -> SettingOverrides {
        SettingOverrides {
            image_size: self.image_size,
            blur_radius: self.blur,
            batch_size: self.batch_size,
            device: self.device.clone(),
        }
    }
}

/// Flags of `sevit eval`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Subset of RUN/split.csv to evaluate: test, val, labeled or foldN (with --run).
    #[arg(long, default_value = "test")]
    pub subset: String,
    /// Evaluate on a dataset descriptor (.toml) instead of the run's split.
    #[arg(long, value_name = "TOML", conflicts_with_all = ["manifest", "folder"])]
    pub dataset: Option<PathBuf>,
    /// Evaluate on a manifest CSV (file,label,...) with --positive.
    #[arg(
        long,
        value_name = "CSV",
        requires = "positive",
        conflicts_with = "folder"
    )]
    pub manifest: Option<PathBuf>,
    /// Evaluate on a folder tree ROOT/<label>/<images> with --positive.
    #[arg(long, value_name = "DIR", requires = "positive")]
    pub folder: Option<PathBuf>,
    /// Positive label for --manifest / --folder.
    #[arg(long)]
    pub positive: Option<String>,
    /// Labels of --manifest to keep (comma separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
    /// Output folder (default RUN/eval/<stage>[-teacher][-<cases>]).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fixed decision threshold of the report.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Also report the operating point reaching this sensitivity (0 = none).
    #[arg(long, default_value_t = 0.9)]
    pub target_sensitivity: f64,
    /// Bootstrap replicates for a second CI (0 = DeLong only; pROC uses 2000).
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// Seed of the bootstrap and of the nuisances.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Calibration bins.
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// Also evaluate under image nuisances (noise, blur, contrast, gamma, rotation, jpeg,
    /// downsample) at each severity: nuisance.csv, nuisance.json, nuisance.png.
    #[arg(long)]
    pub nuisance: bool,
    /// Nuisance kinds (comma separated; default all).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub nuisance_kinds: Vec<NuisanceKind>,
    /// Severities (comma separated, 1..=5; default all).
    #[arg(long, value_delimiter = ',')]
    pub severities: Vec<u32>,
}

fn parse_kind(s: &str) -> Result<NuisanceKind, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (checkpoint, stage, weights) = args.model.resolve()?;
    let cases = if let Some(d) = &args.dataset {
        CaseSource::Descriptor(d.clone())
    } else if let Some(m) = &args.manifest {
        CaseSource::Manifest {
            csv: m.clone(),
            positive: args.positive.clone().unwrap_or_default(),
            keep: args.keep.clone(),
        }
    } else if let Some(f) = &args.folder {
        CaseSource::Folder {
            root: f.clone(),
            positive: args.positive.clone().unwrap_or_default(),
        }
    } else {
        let Some(run) = &args.model.run else {
            anyhow::bail!("give the cases to evaluate: --run DIR (its split), --dataset, --manifest or --folder");
        };
        let subset: Subset = args.subset.parse()?;
        CaseSource::Run {
            run: run.clone(),
            subset,
        }
    };
    let cases_name = match &cases {
        CaseSource::Run { subset, .. } => subset.to_string(),
        CaseSource::Descriptor(p)
        | CaseSource::Manifest { csv: p, .. }
        | CaseSource::Folder { root: p, .. } => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cases".into()),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        default_out_dir(
            args.model.run.as_deref(),
            &checkpoint,
            &stage,
            weights,
            &cases_name,
        )
    });
    let metrics = EvalOptions {
        level: args.level,
        threshold: args.threshold,
        target_sensitivity: (args.target_sensitivity > 0.0).then_some(args.target_sensitivity),
        n_bins: args.bins,
        bootstrap: (args.bootstrap > 0).then_some(BootstrapOptions {
            n_boot: args.bootstrap,
            seed: args.seed,
        }),
        ..EvalOptions::default()
    };
    let robustness = args.nuisance.then(|| RobustnessOptions {
        kinds: if args.nuisance_kinds.is_empty() {
            NuisanceKind::ALL.to_vec()
        } else {
            args.nuisance_kinds.clone()
        },
        severities: if args.severities.is_empty() {
            (1..=MAX_SEVERITY).collect()
        } else {
            args.severities.clone()
        },
        seed: args.seed,
        level: args.level,
    });
    let req = EvalRequest {
        checkpoint,
        stage,
        weights,
        run: args.model.run.clone(),
        cases,
        out_dir: out,
        overrides: args.model.overrides(),
        metrics,
        robustness,
    };
    let outcome = evaluate_checkpoint(&req)?;
    println!("{}", outcome.report);
    if let Some(r) = &outcome.robustness {
        println!();
        print!("{r}");
    }
    let f = &outcome.files;
    println!();
    println!("wrote {}", f.report.display());
    println!("wrote {}", f.predictions.display());
    println!("wrote {}", f.roc.display());
    println!("wrote {}", f.reliability.display());
    println!(
        "wrote {} (everything on one page, offline)",
        f.html.display()
    );
    if let Some(r) = &f.robustness {
        println!("wrote {}", r.csv.display());
        println!("wrote {}", r.json.display());
        println!("wrote {}", r.png.display());
    }
    Ok(())
}
