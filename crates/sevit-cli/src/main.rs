//! `sevit`: the command-line front of the sevit workspace. Each sub-command lives in its own
//! module under `commands/` and only parses flags and calls the library crates.

mod commands;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// stderr, written above the progress bars (see `sevit_distill::log::write_above_progress`).
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sevit_distill::log::write_above_progress(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Parser)]
#[command(
    name = "sevit",
    version,
    about = "Self-evolving vision transformer for chest X-ray diagnosis (DISTL)"
)]
struct Cli {
    /// Log level filter (error, warn, info, debug, trace), or a tracing filter directive.
    #[arg(long, global = true, default_value = "info", env = "SEVIT_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the libtorch build, devices and thread settings.
    Info(commands::info::Args),
    /// Show the resolved training config (of a run, a file or a preset) with every key.
    Config(commands::config::Args),
    /// CLS features, class logits and last-block attention of images (.safetensors or .npy).
    Embed(commands::embed::Args),
    /// Export a checkpoint's network as a TorchScript module for PyTorch (`torch.jit.load`).
    Export(commands::export::Args),
    // -- data (sevit-data) --
    /// Split a dataset (patient-grouped, stratified) and write RUN_DIR/split.csv.
    Split(commands::split::Args),
    /// Write the synthetic chest X-ray dataset (the embedded default).
    Synth(commands::synth::Args),
    /// Show the 10 multi-crop training views of one image in a PNG grid.
    AugmentPreview(commands::augment_preview::Args),
    // -- model (sevit-model) --
    /// Convert PyTorch .pth weights (DISTL/DINO) into a sevit checkpoint.
    ImportWeights(commands::import_weights::Args),
    // -- engine (sevit-distill, sevit-correction) --
    /// Train the initial model (supervised), a supervised baseline (--label-folds T) or DINO-only self-supervised pretraining.
    Pretrain(commands::pretrain::Args),
    /// Run one DISTL step T (self-training + self-supervision + corrections).
    Distill(commands::distill::Args),
    /// Run the whole curriculum (initial model, T = 1..k) with the test AUC per T.
    Evolve(commands::evolve::Args),
    /// New unlabeled images into a site's content-addressed inbox (sevit-evolution).
    Inbox(commands::inbox::Args),
    /// A site's model registry: init, list, show, promote, rollback (sevit-evolution).
    Models(commands::models::Args),
    /// Run a training command as N data-parallel processes (torchrun-style; c10d Gloo/NCCL).
    Launch(commands::launch::Args),
    // -- evaluation (sevit-metrics) --
    /// Evaluate a checkpoint: report.json, predictions.csv, roc.png (and --nuisance robustness).
    Eval(commands::eval::Args),
    /// Paired DeLong test of two models' predictions on the same cases.
    Compare(commands::compare::Args),
    /// Last-layer attention maps (per head, mean, DINO mass mask) as PNG grids.
    Visualize(commands::visualize::Args),
    /// Probabilities for new images (no labels needed) as CSV.
    Predict(commands::predict::Args),
    /// Run an experiment protocol (experiments/*.toml) resumably, or write its report.
    Experiment(commands::experiment::Args),
}

/// libgomp (libtorch's OpenMP runtime) reads its wait policy once, when it is loaded, before
/// `main` runs. Its default lets idle threads spin for about 3 ms, which collapses when the
/// cores are shared (3x slower steps); passive waiting costs about 15% on an idle 2-core
/// machine. A short spin (`GOMP_SPINCOUNT=10000`, about 0.1 ms) keeps both
/// (docs/performance.md), unless the user chose `GOMP_SPINCOUNT` or `OMP_WAIT_POLICY`.
const GOMP_SPINCOUNT: &str = "10000";

/// glibc's allocator settings (docs/performance.md, items 7 and 8), read by the dynamic loader
/// before `main`; left alone when `GLIBC_TUNABLES` is set:
/// * `hugetlb=1`: large blocks (the activations) on transparent huge pages where the kernel
///   leaves them to `madvise` (the usual setting): CPU training steps 1-3% faster, peak memory
///   up to 8% higher; a no-op where the kernel or glibc (< 2.35) lacks it.
/// * `mmap_max=0` and a 16 GiB `trim_threshold`: blocks above glibc's 32 MiB mapping limit (a
///   65536-wide DINO head's outputs, small/8's activations) come from the heap and are reused
///   the next step instead of being mapped, faulted in and unmapped every time: the tiny/16 step
///   with the 65536-wide head 13-25% faster and steady; the heap keeps its peak size.
///
/// `SEVIT_MALLOC` in bench/run_bench.py is the same string (the bench gives it to both sides).
const GLIBC_TUNABLES: &str =
    "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184";

/// The process settings above that are still missing from the environment.
fn missing_runtime_env() -> Vec<(&'static str, &'static str)> {
    let set = |v: &str| std::env::var_os(v).is_some();
    let mut missing = Vec::new();
    if !set("GOMP_SPINCOUNT") && !set("OMP_WAIT_POLICY") {
        missing.push(("GOMP_SPINCOUNT", GOMP_SPINCOUNT));
    }
    if !set("GLIBC_TUNABLES") {
        missing.push(("GLIBC_TUNABLES", GLIBC_TUNABLES));
    }
    missing
}

/// Re-executes `sevit` once with the missing settings (both are read before `main` runs).
fn ensure_runtime_env() {
    use std::os::unix::process::CommandExt;
    let missing = missing_runtime_env();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(missing.iter().copied())
        .exec();
    // Only reached when exec failed; the run goes on with the defaults.
    eprintln!("sevit: could not re-execute with {missing:?} ({err}); continuing");
}

fn main() {
    ensure_runtime_env();
    let cli = Cli::parse();
    // Ranks > 0 of a data-parallel job (sevit launch / torchrun) log warnings only, unless
    // a level was asked for explicitly.
    let rank: Option<usize> = std::env::var("RANK").ok().and_then(|r| r.parse().ok());
    let log = match rank {
        Some(r) if r > 0 && cli.log == "info" && std::env::var_os("SEVIT_LOG").is_none() => {
            "warn".to_string()
        }
        _ => cli.log.clone(),
    };
    // Colour only on a terminal (and never with NO_COLOR): redirected logs stay plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(|| LogWriter)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Info(a) => commands::info::run(a),
        Command::Config(a) => commands::config::run(a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::ImportWeights(a) => commands::import_weights::run(a),
        // -- dispatch --
        Command::Eval(a) => commands::eval::run(a),
        Command::Compare(a) => commands::compare::run(a),
        Command::Visualize(a) => commands::visualize::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Experiment(a) => commands::experiment::run(a),
        Command::Split(a) => commands::split::run(a),
        Command::Synth(a) => commands::synth::run(a),
        Command::AugmentPreview(a) => commands::augment_preview::run(a),
        Command::Pretrain(a) => commands::pretrain::run(a),
        Command::Distill(a) => commands::distill::run(a),
        Command::Evolve(a) => commands::evolve::run(a),
        Command::Launch(a) => commands::launch::run(a),
        Command::Inbox(a) => commands::inbox::run(a),
        Command::Models(a) => commands::models::run(a),
    };
    if let Err(err) = result {
        commands::pretrain::remove_created_run_dir_if_unused();
        match rank {
            Some(r) if std::env::var_os("WORLD_SIZE").is_some() => {
                eprintln!("error (rank {r}): {err:#}")
            }
            _ => eprintln!("error: {err:#}"),
        }
        std::process::exit(1);
    }
}
