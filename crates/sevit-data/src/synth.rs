//! The embedded default dataset: deterministic synthetic chest X-ray phantoms.
//!
//! Each patient gets its own anatomy (body outline, two lungs, heart/mediastinum, spine, ribs,
//! diaphragm level, exposure); each image adds acquisition variation (small shift, exposure,
//! gamma, fine noise and smooth low-frequency noise). Positive patients ("opacity") carry a
//! finding: an irregular consolidation-like opacity (a few overlapping Gaussian blobs) inside one
//! lung, whose size and contrast shrink as `difficulty` grows from 0 (obvious) to 1 (subtle).
//! About a quarter of the patients have two images (same anatomy and finding, different
//! acquisition). Negative patients ("normal") get small vessel-like spots in both lungs at any
//! difficulty, so the task is not "any bright spot".
//!
//! Output of [`generate`]: `OUT/images/synth_NNNNN.png` (8-bit), `OUT/manifest.csv`
//! (`file,label,patient_id`) and the descriptor `OUT/dataset.toml` (positive = `opacity`).
//! Everything is a function of `(seed, image index)`: same seed → identical files.

use crate::rng::rng_for;
use crate::util::{write_atomic, write_png_atomic};
use anyhow::{ensure, Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

/// Label of the positive (finding) class.
pub const POSITIVE_LABEL: &str = "opacity";
/// Label of the negative class.
pub const NEGATIVE_LABEL: &str = "normal";

/// Generator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Image side in pixels.
    pub size: u32,
    /// 0 = large, high-contrast finding; 1 = small, faint finding.
    pub difficulty: f64,
    /// Seed of everything.
    pub seed: u64,
    /// Share of positive patients.
    pub positive_fraction: f64,
    /// Share of patients with two images.
    pub two_image_fraction: f64,
    /// Write inverted gray levels (bright air, dark bones): what a MONOCHROME1 image exported
    /// without its inversion looks like. An off-distribution batch for tests and demos.
    pub invert: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            size: 256,
            difficulty: 0.5,
            seed: 0,
            positive_fraction: 0.5,
            two_image_fraction: 0.25,
            invert: false,
        }
    }
}

/// One planned image.
#[derive(Clone, Debug)]
struct Planned {
    patient: usize,
    positive: bool,
}

fn plan(n: usize, cfg: &SynthConfig) -> Vec<Planned> {
    let mut out = Vec::with_capacity(n);
    let mut p = 0;
    while out.len() < n {
        let mut rng = rng_for(&[cfg.seed, 0x9A71, p as u64]);
        // Golden-ratio sequence: class shares stay close to `positive_fraction` even for few
        // patients, in a seed-dependent but irregular order.
        let offset =
            (crate::rng::derive_seed(&[cfg.seed, 0x0FF5]) >> 11) as f64 / (1u64 << 53) as f64;
        let positive =
            (p as f64 * 0.618_033_988_749_894_9 + offset).fract() < cfg.positive_fraction;
        let visits = if rng.gen::<f64>() < cfg.two_image_fraction {
            2
        } else {
            1
        };
        for _ in 0..visits {
            if out.len() < n {
                out.push(Planned {
                    patient: p,
                    positive,
                });
            }
        }
        p += 1;
    }
    out
}

/// Per-patient anatomy (normalised coordinates, x right, y down).
struct Anatomy {
    body: (f64, f64, f64, f64),
    lungs: [(f64, f64, f64, f64); 2],
    heart: (f64, f64, f64, f64),
    spine_w: f64,
    rib_gap: f64,
    rib_curve: f64,
    rib_top: f64,
    tissue: f64,
    lung_level: f64,
    finding: Vec<(f64, f64, f64, f64)>,
    vessels: Vec<(f64, f64, f64, f64)>,
}

fn u(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

fn anatomy(patient: usize, positive: bool, cfg: &SynthConfig) -> Anatomy {
    let mut r = rng_for(&[cfg.seed, 0xA7A7, patient as u64]);
    let cx = 0.5 + u(&mut r, -0.02, 0.02);
    let lung_w = u(&mut r, 0.12, 0.16);
    let lung_h = u(&mut r, 0.25, 0.31);
    let lung_y = u(&mut r, 0.42, 0.48);
    let sep = u(&mut r, 0.16, 0.2);
    let lungs = [
        (cx - sep, lung_y, lung_w * u(&mut r, 0.95, 1.05), lung_h),
        (
            cx + sep,
            lung_y,
            lung_w * u(&mut r, 0.95, 1.05),
            lung_h * u(&mut r, 0.95, 1.02),
        ),
    ];
    let heart = (
        cx + u(&mut r, 0.02, 0.06),
        lung_y + lung_h * 0.45,
        u(&mut r, 0.1, 0.14),
        u(&mut r, 0.12, 0.16),
    );
    let d = cfg.difficulty.clamp(0.0, 1.0);
    let mut finding = Vec::new();
    if positive {
        let side = r.gen_range(0..2);
        let (lx, ly, lw, lh) = lungs[side];
        // Finding centre well inside the lung ellipse.
        let (a, rad) = (
            u(&mut r, 0.0, std::f64::consts::TAU),
            u(&mut r, 0.0, 0.55).sqrt() * 0.75,
        );
        let (fx, fy) = (lx + a.cos() * rad * lw, ly + a.sin() * rad * lh);
        let size = 0.085 - 0.05 * d; // sigma in normalised units
        let contrast = 0.45 - 0.35 * d;
        for k in 0..3 {
            let j = if k == 0 { 0.0 } else { size * 0.8 };
            finding.push((
                fx + u(&mut r, -j, j),
                fy + u(&mut r, -j, j),
                size * u(&mut r, 0.6, 1.0),
                contrast * u(&mut r, 0.6, 1.0),
            ));
        }
    }
    let mut vessels = Vec::new();
    for _ in 0..r.gen_range(3..7) {
        let (lx, ly, lw, lh) = lungs[r.gen_range(0..2)];
        let (a, rad) = (
            u(&mut r, 0.0, std::f64::consts::TAU),
            u(&mut r, 0.0, 1.0).sqrt() * 0.8,
        );
        vessels.push((
            lx + a.cos() * rad * lw,
            ly + a.sin() * rad * lh,
            u(&mut r, 0.006, 0.014),
            u(&mut r, 0.08, 0.2),
        ));
    }
    Anatomy {
        body: (cx, 0.55, u(&mut r, 0.4, 0.47), u(&mut r, 0.52, 0.6)),
        lungs,
        heart,
        spine_w: u(&mut r, 0.035, 0.05),
        rib_gap: u(&mut r, 0.05, 0.062),
        rib_curve: u(&mut r, 1.2, 2.0),
        rib_top: lung_y - lung_h * 0.95,
        tissue: u(&mut r, 0.45, 0.6),
        lung_level: u(&mut r, 0.12, 0.22),
        finding,
        vessels,
    }
}

fn ellipse(x: f64, y: f64, e: (f64, f64, f64, f64)) -> f64 {
    let dx = (x - e.0) / e.2;
    let dy = (y - e.1) / e.3;
    dx * dx + dy * dy
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Renders one image (values in [0, 1]) of `size x size`.
fn render(a: &Anatomy, index: usize, size: u32, cfg: &SynthConfig) -> Vec<f32> {
    let mut r = rng_for(&[cfg.seed, 0x1A6E, index as u64]);
    let (sx, sy) = (u(&mut r, -0.03, 0.03), u(&mut r, -0.03, 0.03));
    let exposure = u(&mut r, 0.85, 1.15);
    let gamma = u(&mut r, 0.8, 1.25);
    let noise_sd = u(&mut r, 0.015, 0.035);
    // Smooth low-frequency noise: a few random cosine waves.
    let waves: Vec<(f64, f64, f64, f64)> = (0..4)
        .map(|_| {
            (
                u(&mut r, 1.0, 4.0),
                u(&mut r, 1.0, 4.0),
                u(&mut r, 0.0, 6.3),
                u(&mut r, 0.01, 0.03),
            )
        })
        .collect();
    let mut rj = rng_for(&[cfg.seed, 0x717E, index as u64]);
    let jitter: Vec<(f64, f64)> = a
        .finding
        .iter()
        .map(|_| (u(&mut rj, -0.01, 0.01), u(&mut rj, -0.01, 0.01)))
        .collect();
    let s = size as f64;
    let mut out = Vec::with_capacity((size * size) as usize);
    for py in 0..size {
        for px in 0..size {
            let x = (px as f64 + 0.5) / s - sx;
            let y = (py as f64 + 0.5) / s - sy;
            let body = 1.0 - smoothstep(0.85, 1.05, ellipse(x, y, a.body));
            let mut v = 0.04 + body * a.tissue;
            // Lungs (darker), with brighter bases.
            let mut lung = 0.0f64;
            for l in &a.lungs {
                lung = lung.max(1.0 - smoothstep(0.8, 1.0, ellipse(x, y, *l)));
            }
            let base = smoothstep(a.lungs[0].1 - 0.1, a.lungs[0].1 + a.lungs[0].3, y) * 0.12;
            v = v * (1.0 - lung) + (a.lung_level + base) * lung;
            // Heart / mediastinum and spine.
            let heart = 1.0 - smoothstep(0.8, 1.05, ellipse(x, y, a.heart));
            v = v.max(heart * (a.tissue + 0.12));
            let spine = (1.0 - smoothstep(a.spine_w * 0.7, a.spine_w, (x - a.body.0).abs())) * body;
            v = v.max(spine * (a.tissue + 0.18));
            // Ribs: curved bands, stronger over the lungs.
            let dx = x - a.body.0;
            let yr = y - a.rib_curve * dx * dx * 0.5 - a.rib_top;
            if yr > 0.0 && yr < a.rib_gap * 10.0 && body > 0.1 {
                let ph = (yr / a.rib_gap).fract();
                let band = 1.0 - smoothstep(0.0, 0.22, (ph - 0.25).abs());
                v += band * (0.05 + 0.07 * lung) * body;
            }
            // Vessels (both classes) and the finding (positives).
            for &(vx, vy, vs, vc) in &a.vessels {
                let d2 = ((x - vx).powi(2) + (y - vy).powi(2)) / (2.0 * vs * vs);
                if d2 < 9.0 {
                    v += vc * (-d2).exp() * lung;
                }
            }
            for (k, &(fx, fy, fs, fc)) in a.finding.iter().enumerate() {
                let (jx, jy) = jitter[k];
                let d2 = ((x - fx - jx).powi(2) + (y - fy - jy).powi(2)) / (2.0 * fs * fs);
                if d2 < 12.0 {
                    v += fc * (-d2).exp() * lung.max(0.3);
                }
            }
            for &(fx, fy, ph, amp) in &waves {
                v += amp * (fx * x * TAU + fy * y * TAU + ph).cos();
            }
            v = (v * exposure).clamp(0.0, 1.0).powf(gamma);
            // Fine noise (Box-Muller).
            let (u1, u2): (f64, f64) = (r.gen_range(1e-12..1.0), r.gen());
            v += noise_sd * (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos();
            out.push(v.clamp(0.0, 1.0) as f32);
        }
    }
    out
}

/// Generates `n` images into `out` (created if missing) and returns the descriptor path
/// (`out/dataset.toml`). Existing files of the same names are replaced (atomically).
pub fn generate(out: &Path, n: usize, cfg: &SynthConfig) -> Result<PathBuf> {
    ensure!(n >= 1, "the number of images must be at least 1");
    ensure!(
        cfg.size >= 16,
        "image size {} is too small (minimum 16)",
        cfg.size
    );
    ensure!(
        (0.0..=1.0).contains(&cfg.difficulty),
        "difficulty {} is out of range: must be in [0, 1]",
        cfg.difficulty
    );
    ensure!(
        cfg.positive_fraction > 0.0 && cfg.positive_fraction < 1.0,
        "positive fraction must be in (0, 1)"
    );
    ensure!(
        (0.0..=1.0).contains(&cfg.two_image_fraction),
        "two-image fraction must be in [0, 1]"
    );
    let images = out.join("images");
    std::fs::create_dir_all(&images).with_context(|| format!("creating {}", images.display()))?;
    let planned = plan(n, cfg);
    planned
        .par_iter()
        .enumerate()
        .try_for_each(|(i, p)| -> Result<()> {
            let a = anatomy(p.patient, p.positive, cfg);
            let data = render(&a, i, cfg.size, cfg);
            let gray = |v: f32| if cfg.invert { 1.0 - v } else { v };
            let buf: Vec<u8> = data
                .iter()
                .map(|&v| (gray(v) * 255.0).round() as u8)
                .collect();
            let img = image::GrayImage::from_raw(cfg.size, cfg.size, buf).expect("size matches");
            write_png_atomic(&images.join(format!("synth_{i:05}.png")), &img)
        })?;
    let mut csv = String::from("file,label,patient_id\n");
    for (i, p) in planned.iter().enumerate() {
        let label = if p.positive {
            POSITIVE_LABEL
        } else {
            NEGATIVE_LABEL
        };
        csv += &format!("images/synth_{i:05}.png,{label},S{:05}\n", p.patient);
    }
    write_atomic(&out.join("manifest.csv"), csv.as_bytes())?;
    let desc = format!(
        "# Synthetic chest X-ray phantoms written by `sevit synth`. Paths are relative to this file.\n\
         name = \"synth\"\nroot = \".\"\nmanifest = \"manifest.csv\"\npositive = \"{POSITIVE_LABEL}\"\n\
         keep = [\"{NEGATIVE_LABEL}\", \"{POSITIVE_LABEL}\"]\n\
         source = \"sevit synth: n={n} size={} difficulty={} seed={} positive_fraction={} two_image_fraction={} invert={}\"\n\
         license = \"generated data, no restrictions (CC0)\"\n",
        cfg.size, cfg.difficulty, cfg.seed, cfg.positive_fraction, cfg.two_image_fraction, cfg.invert
    );
    let path = out.join("dataset.toml");
    write_atomic(&path, desc.as_bytes())?;
    tracing::info!(
        "wrote {n} synthetic images ({} patients) to {}",
        planned.last().map(|p| p.patient + 1).unwrap_or(0),
        out.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_gray, Dataset, Split, SplitConfig};

    #[test]
    fn generates_a_loadable_deterministic_dataset() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            size: 48,
            seed: 3,
            ..Default::default()
        };
        let desc = generate(&d.path().join("a"), 40, &cfg).unwrap();
        let ds = Dataset::from_descriptor(&desc).unwrap();
        assert_eq!(ds.samples.len(), 40);
        assert_eq!(ds.positive_label, POSITIVE_LABEL);
        let pos = ds.samples.iter().filter(|s| s.target == 1.0).count();
        assert!(pos > 8 && pos < 32, "{pos}");
        assert!(ds.num_patients() < 40, "some patients have two images");
        let img = load_gray(&ds.samples[0].path, 0).unwrap();
        assert_eq!((img.width, img.height), (48, 48));
        Split::create(
            &ds,
            &SplitConfig {
                labeled_fraction: 0.2,
                folds: 2,
                ..Default::default()
            },
        )
        .unwrap();
        // Same seed -> identical bytes; other seed -> different images.
        generate(&d.path().join("b"), 40, &cfg).unwrap();
        for f in ["manifest.csv", "images/synth_00007.png"] {
            assert_eq!(
                std::fs::read(d.path().join("a").join(f)).unwrap(),
                std::fs::read(d.path().join("b").join(f)).unwrap()
            );
        }
        generate(
            &d.path().join("c"),
            40,
            &SynthConfig {
                seed: 4,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(
            std::fs::read(d.path().join("a/images/synth_00007.png")).unwrap(),
            std::fs::read(d.path().join("c/images/synth_00007.png")).unwrap()
        );
    }

    #[test]
    fn finding_raises_lung_intensity_and_fades_with_difficulty() {
        // Same anatomy rendered with and without the finding: the difference is a blob whose
        // mass shrinks with difficulty.
        let mass = |difficulty: f64| {
            let cfg = SynthConfig {
                size: 64,
                difficulty,
                seed: 1,
                ..Default::default()
            };
            let pos = anatomy(5, true, &cfg);
            let neg = Anatomy {
                finding: vec![],
                ..anatomy(5, true, &cfg)
            };
            let a = render(&pos, 0, 64, &cfg);
            let b = render(&neg, 0, 64, &cfg);
            a.iter().zip(&b).map(|(x, y)| (x - y) as f64).sum::<f64>()
        };
        let (easy, hard) = (mass(0.0), mass(1.0));
        assert!(
            easy > 0.0 && hard > 0.0 && easy > 3.0 * hard,
            "easy {easy} hard {hard}"
        );
    }

    #[test]
    fn inverted_images_are_the_negatives_of_the_plain_ones() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            size: 32,
            seed: 2,
            ..Default::default()
        };
        generate(&d.path().join("plain"), 3, &cfg).unwrap();
        generate(
            &d.path().join("inv"),
            3,
            &SynthConfig {
                invert: true,
                ..cfg
            },
        )
        .unwrap();
        let a = image::open(d.path().join("plain/images/synth_00001.png"))
            .unwrap()
            .to_luma8();
        let b = image::open(d.path().join("inv/images/synth_00001.png"))
            .unwrap()
            .to_luma8();
        for (x, y) in a.pixels().zip(b.pixels()) {
            assert!((x[0] as i32 + y[0] as i32 - 255).abs() <= 1);
        }
    }

    #[test]
    fn bad_settings_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(generate(d.path(), 0, &SynthConfig::default()).is_err());
        assert!(generate(
            d.path(),
            4,
            &SynthConfig {
                difficulty: 1.5,
                ..Default::default()
            }
        )
        .is_err());
    }
}
