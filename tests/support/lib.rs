//! Helpers shared by the cross-crate integration tests in `tests/`.

use std::path::{Path, PathBuf};

/// Root of the repository checkout.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data` beside the checkout, when this machine has it.
pub fn shared_data() -> Option<PathBuf> {
    let p = repo_root().join("..").join("shared").join("data");
    p.is_dir().then_some(p)
}

/// The synthetic data and split [`synthetic_run`] makes: `n` 32 px phantoms (easy findings),
/// split by patient with no validation part.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticSplit {
    /// Number of images.
    pub n: usize,
    /// Seed of the phantom generator.
    pub synth_seed: u64,
    /// Seed of the split.
    pub split_seed: u64,
    /// Labeled fraction of the training pool.
    pub labeled: f64,
    /// Unlabeled folds.
    pub folds: usize,
    /// Test fraction.
    pub test: f64,
}

/// Writes the synthetic dataset to `root/data` and its split to `root/<run_name>/split.csv`.
pub fn synthetic_run(root: &Path, run_name: &str, s: &SyntheticSplit) -> sevit_distill::RunLayout {
    let synth = sevit_data::SynthConfig {
        size: 32,
        seed: s.synth_seed,
        difficulty: 0.0,
        ..Default::default()
    };
    let descriptor =
        sevit_data::synth::generate(&root.join("data"), s.n, &synth).expect("synthetic data");
    let ds = sevit_data::Dataset::from_descriptor(&descriptor).expect("descriptor");
    let split_cfg = sevit_data::SplitConfig {
        seed: s.split_seed,
        labeled_fraction: s.labeled,
        folds: s.folds,
        val_fraction: 0.0,
        test: sevit_data::TestSelection::Fraction(s.test),
    };
    let split = sevit_data::Split::create(&ds, &split_cfg).expect("split");
    let run = sevit_distill::RunLayout::new(root.join(run_name));
    std::fs::create_dir_all(&run.root).unwrap();
    split.write_csv(&run.split_csv()).expect("split.csv");
    run
}

/// `configs/micro.toml` with `threads` libtorch threads (applied) and `overrides`.
pub fn micro_config<S: AsRef<str>>(threads: usize, overrides: &[S]) -> sevit_distill::TrainConfig {
    let path = repo_root().join("configs").join("micro.toml");
    let mut o: Vec<String> = vec![format!("threads={threads}")];
    o.extend(overrides.iter().map(|s| s.as_ref().to_string()));
    let cfg = sevit_distill::TrainConfig::load(&path, &o).expect("configs/micro.toml");
    cfg.apply_threads();
    cfg
}

/// The tensors of a checkpoint whose names start with `prefix`.
pub fn checkpoint_tensors(
    path: &Path,
    prefix: &str,
) -> std::collections::BTreeMap<String, tch::Tensor> {
    sevit_model::Checkpoint::load(path)
        .unwrap()
        .tensors
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect()
}

static TORCH_GLOBALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by a test that trains: libtorch's random generator (seeded before every step) and its
/// thread count are process-wide, so tests of one binary that train in parallel would draw
/// from each other's random streams.
pub fn torch_globals() -> std::sync::MutexGuard<'static, ()> {
    TORCH_GLOBALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
