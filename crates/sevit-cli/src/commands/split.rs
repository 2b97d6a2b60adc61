//! `sevit split`: split a dataset into labeled / unlabeled folds / val / test and write
//! `RUN_DIR/split.csv`.

use anyhow::{bail, Result};
use clap::{ArgGroup, Args as ClapArgs};
use sevit_data::dataset::LoadOptions;
use sevit_data::{Dataset, Split, SplitConfig, TestSelection};
use std::path::PathBuf;

/// Flags of `sevit split`.
#[derive(ClapArgs, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["dataset", "manifest", "folder"])))]
#[command(group(ArgGroup::new("testsel").args(["test_fraction", "test_prefix", "test_manifest"])))]
pub struct Args {
    /// Dataset descriptor (TOML; see data-manifests/).
    #[arg(long, value_name = "DESCRIPTOR.toml")]
    pub dataset: Option<PathBuf>,
    /// Manifest CSV (file,label[,patient_id,...]; file relative to the CSV).
    #[arg(long, value_name = "CSV")]
    pub manifest: Option<PathBuf>,
    /// Folder tree whose sub-folder names are the labels.
    #[arg(long, value_name = "DIR")]
    pub folder: Option<PathBuf>,
    /// Positive label (required with --manifest/--folder; overrides the descriptor's).
    #[arg(long)]
    pub positive: Option<String>,
    /// Run directory: the split is written to RUN_DIR/split.csv.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the training pool that is labeled.
    #[arg(long, default_value_t = 0.1)]
    pub labeled_fraction: f64,
    /// Number of unlabeled folds (DISTL steps T = 1..k).
    #[arg(long, default_value_t = 3)]
    pub folds: usize,
    /// Fraction of the training pool held out for validation.
    #[arg(long, default_value_t = 0.0)]
    pub val_fraction: f64,
    /// Test set: a patient-grouped fraction of all images (default 0.2 unless the descriptor
    /// names a test prefix).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Test set: files whose path relative to the dataset root starts with this prefix.
    #[arg(long)]
    pub test_prefix: Option<String>,
    /// Test set: the images of another manifest CSV.
    #[arg(long, value_name = "CSV")]
    pub test_manifest: Option<PathBuf>,
    /// Decode every image first; unreadable ones are an error (or skipped with --skip-bad).
    #[arg(long)]
    pub verify: bool,
    /// Skip missing or unreadable images (each logged) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Accept manifest entries outside the manifest's folder (absolute or `..` paths).
    #[arg(long)]
    pub allow_outside_root: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = LoadOptions {
        skip_bad: a.skip_bad,
        allow_outside_root: a.allow_outside_root,
    };
    let mut ds = if let Some(d) = &a.dataset {
        let ds = Dataset::from_descriptor_opts(d, opts)?;
        if let Some(p) = &a.positive {
            if *p != ds.positive_label {
                bail!("--positive {p:?} differs from the descriptor's positive label {:?}; edit the descriptor or use --manifest", ds.positive_label);
            }
        }
        ds
    } else {
        let Some(p) = &a.positive else {
            bail!("--positive LABEL is required with --manifest or --folder")
        };
        match (&a.manifest, &a.folder) {
            (Some(m), _) => Dataset::from_manifest_opts(m, p, None, opts)?,
            (_, Some(f)) => Dataset::from_folder(f, p)?,
            _ => unreachable!("clap requires one source"),
        }
    };
    if a.verify {
        let n = ds.verify_images(a.skip_bad)?;
        if n > 0 {
            println!("skipped {n} unreadable image(s)");
        }
    }
    let test = match (a.test_fraction, &a.test_prefix, &a.test_manifest) {
        (Some(f), _, _) => TestSelection::Fraction(f),
        (_, Some(p), _) => TestSelection::Prefix(p.clone()),
        (_, _, Some(m)) => TestSelection::Manifest(m.clone()),
        _ => TestSelection::default_for(&ds),
    };
    let cfg = SplitConfig {
        seed: a.seed,
        labeled_fraction: a.labeled_fraction,
        folds: a.folds,
        val_fraction: a.val_fraction,
        test,
    };
    let split = Split::create(&ds, &cfg)?;
    let path = a.out.join("split.csv");
    split.write_csv(&path)?;
    println!(
        "dataset {} ({} images, positive {:?}), {}",
        split.name,
        split.entries.len(),
        split.positive_label(),
        split.description
    );
    print!("{}", split.summary_table());
    println!("wrote {}", path.display());
    Ok(())
}
