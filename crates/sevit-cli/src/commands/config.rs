//! `sevit config show`: the resolved training config as TOML, from a run, a file or a preset.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args as ClapArgs, Subcommand};
use sevit_distill::{RunLayout, TrainConfig};

/// The preset files of `configs/`, built into the binary.
const PRESETS: &[(&str, &str)] = &[
    ("paper", include_str!("../../../../configs/paper.toml")),
    ("cpu", include_str!("../../../../configs/cpu.toml")),
    ("demo", include_str!("../../../../configs/demo.toml")),
    ("micro", include_str!("../../../../configs/micro.toml")),
];

/// Flags of `sevit config`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// What `sevit config` does.
#[derive(Subcommand, Debug)]
pub enum Action {
    /// Print every key of the resolved config (defaults filled in) as TOML.
    Show(ShowArgs),
}

/// Flags of `sevit config show`.
#[derive(ClapArgs, Debug)]
#[command(group(clap::ArgGroup::new("source").args(["run", "config", "preset"])))]
pub struct ShowArgs {
    /// The config a run records (RUN/config.toml), which its training commands use.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
    /// A config file.
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// A preset: paper (the default), cpu, demo or micro.
    #[arg(long)]
    pub preset: Option<String>,
    /// Override a value, `section.key=value` (repeatable), as the training commands do.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Action::Show(a) = args.action;
    let cfg = match (&a.run, &a.config, &a.preset) {
        (Some(run), _, _) => {
            let p = RunLayout::new(run).config_toml();
            if !p.is_file() {
                bail!(
                    "run {} has no config.toml yet (its first training command records one)",
                    run.display()
                );
            }
            TrainConfig::load(&p, &a.set)?
        }
        (_, Some(file), _) => TrainConfig::load(file, &a.set)?,
        (_, _, Some(name)) => {
            let Some((_, text)) = PRESETS.iter().find(|(n, _)| n == name) else {
                bail!(
                    "unknown preset {name:?}: one of {}",
                    PRESETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            TrainConfig::from_toml_with_overrides(text, &format!("preset {name}"), &a.set)?
        }
        _ => TrainConfig::default_with_overrides(&a.set)?,
    };
    print!("{}", cfg.to_toml()?);
    Ok(())
}
