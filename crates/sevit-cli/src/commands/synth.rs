//! `sevit synth`: write the synthetic chest X-ray dataset (PNG + manifest.csv + dataset.toml).

use anyhow::Result;
use clap::Args as ClapArgs;
use sevit_data::{synth, SynthConfig};
use std::path::PathBuf;

/// Flags of `sevit synth`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long)]
    pub n: usize,
    /// Difficulty of the finding: 0 = large and obvious, 1 = small and faint.
    #[arg(long, default_value_t = 0.5)]
    pub difficulty: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Share of positive ("opacity") patients.
    #[arg(long, default_value_t = 0.5)]
    pub positive_fraction: f64,
    /// Inverted gray levels (a MONOCHROME1 export gone wrong): an off-distribution batch.
    #[arg(long)]
    pub invert: bool,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = SynthConfig {
        size: a.size,
        difficulty: a.difficulty,
        seed: a.seed,
        positive_fraction: a.positive_fraction,
        invert: a.invert,
        ..Default::default()
    };
    let desc = synth::generate(&a.out, a.n, &cfg)?;
    println!("wrote {} synthetic images to {}", a.n, a.out.display());
    println!("descriptor: {}", desc.display());
    Ok(())
}
