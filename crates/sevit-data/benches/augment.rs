//! Throughput of the DISTL multi-crop augmentation (images/s): decode one image, then the 10
//! views (2 x 256 + 8 x 128) with the default (DISTL) settings, images in parallel with rayon on
//! all cores. Also the full loader (views stacked into `tch` tensors, batches of 32, prefetch).
//!
//! Images: the first 256 of `../shared/data/kermany_pediatric_224src` (or synthetic phantoms in
//! a temporary directory when absent). One warm-up pass, then 5 timed passes: median, min, max.
//! Writes `target/bench/augment.json` (relative to the workspace root) and prints it.
//!
//! Run: `cargo bench -p sevit-data --bench augment` (release profile).

use rayon::prelude::*;
use sevit_data::loader::sample_views;
use sevit_data::{
    multi_crop_loader, synth, Dataset, LoaderConfig, MultiCropConfig, Sample, SynthConfig,
};
use std::path::PathBuf;
use std::time::Instant;

const N: usize = 256;
const RUNS: usize = 5;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kermany = ws.join("../shared/data/kermany_pediatric_224src/manifest.csv");
    let _tmp;
    let (samples, source): (Vec<Sample>, String) = if kermany.is_file() {
        let ds = Dataset::from_manifest(&kermany, "pneumonia", None)?;
        (
            ds.samples.into_iter().take(N).collect(),
            "../shared/data/kermany_pediatric_224src".into(),
        )
    } else {
        eprintln!(
            "note: {} absent; benchmarking on synthetic phantoms",
            kermany.display()
        );
        _tmp = tempfile::tempdir()?;
        let desc = synth::generate(_tmp.path(), N, &SynthConfig::default())?;
        (
            Dataset::from_descriptor(&desc)?.samples,
            "synthetic (sevit synth, 256 px)".into(),
        )
    };
    let crop = MultiCropConfig::default();
    let n = samples.len();

    let augment_pass = |epoch: usize| -> f64 {
        let t0 = Instant::now();
        let views: usize = samples
            .par_iter()
            .enumerate()
            .map(|(i, s)| {
                sample_views(s, i, &crop, 0, epoch)
                    .expect("readable image")
                    .len()
            })
            .sum();
        assert_eq!(views, n * crop.num_views());
        n as f64 / t0.elapsed().as_secs_f64()
    };
    augment_pass(0);
    let (med, min, max) = stats((1..=RUNS).map(augment_pass).collect());

    let cfg = LoaderConfig {
        batch_size: 32,
        shuffle: true,
        drop_last: false,
        seed: 0,
        skip_bad: false,
        prefetch: 2,
    };
    let loader_pass = |epoch: usize| -> f64 {
        let t0 = Instant::now();
        let mut seen = 0;
        for b in multi_crop_loader(samples.clone(), &crop, &cfg, epoch) {
            seen += b.expect("batch").indices.len();
        }
        assert_eq!(seen, n);
        n as f64 / t0.elapsed().as_secs_f64()
    };
    loader_pass(0);
    let (lmed, lmin, lmax) = stats((1..=RUNS).map(loader_pass).collect());

    let json = serde_json::json!({
        "bench": "multi-crop augmentation (decode + 2x256 + 8x128 views), rayon over images",
        "images_per_s_median": med,
        "images_per_s_min": min,
        "images_per_s_max": max,
        "loader_images_per_s_median": lmed,
        "loader_images_per_s_min": lmin,
        "loader_images_per_s_max": lmax,
        "runs": RUNS,
        "n_images": n,
        "images": source,
        "rayon_threads": rayon::current_num_threads(),
        "views": "2x256 + 8x128",
    });
    let text = serde_json::to_string_pretty(&json)?;
    let dir = ws.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("augment.json.tmp");
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, dir.join("augment.json"))?;
    println!("{text}");
    Ok(())
}
