//! Image corruptions ("nuisances") for robustness evaluation: Gaussian noise, blur, contrast
//! reduction, gamma change, rotation, JPEG compression and down-sampling, each at severities
//! 0 (identity) to [`MAX_SEVERITY`].
//!
//! They act on a loaded [`GrayImage`] (values in `[0, 1]`, after [`crate::load_gray`]) and come
//! *before* the inference transform, as a degraded acquisition would. The parameter of each
//! severity is fixed here ([`NuisanceKind::parameter`]) so reports from different runs compare.
//! Spatial parameters (blur sigma) are given for a 256 px image and scaled with the image width,
//! so a 32 px smoke-test image is degraded as much, relatively, as a 256 px one.
//!
//! Randomness (the noise field, the rotation direction) is drawn from
//! [`crate::rng::rng_for`]`([seed, kind, severity, index])`: the same (seed, image index) gives
//! the same corrupted image, whatever the thread order.
//!
//! | kind        | parameter at severity 1..5             | meaning                                   |
//! |-------------|----------------------------------------|-------------------------------------------|
//! | `noise`     | σ = 0.02, 0.04, 0.08, 0.12, 0.18       | additive Gaussian noise on `[0,1]` values  |
//! | `blur`      | σ = 0.75, 1.5, 2.5, 3.5, 5 px @256     | Gaussian blur (Pillow semantics)           |
//! | `contrast`  | c = 0.8, 0.6, 0.45, 0.3, 0.2           | `mean + c·(x − mean)`                      |
//! | `gamma`     | γ = 1.3, 1.6, 2.0, 2.5, 3.0            | `x^γ` (darker mid-tones)                   |
//! | `rotation`  | 4°, 8°, 12°, 20°, 30°                  | random direction, fill 0 (Pillow rotate)   |
//! | `jpeg`      | quality 75, 50, 30, 15, 5              | 8-bit JPEG encode + decode                 |
//! | `downsample`| factor 1.5, 2, 3, 4, 6                 | bilinear down then up to the same size     |

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use rand::Rng;

use crate::augment::{gaussian_blur, rotate};
use crate::gray::{Filter, GrayImage};
use crate::rng::rng_for;

/// The highest severity level; levels run `0..=MAX_SEVERITY`, 0 being the clean image.
pub const MAX_SEVERITY: u32 = 5;

/// A kind of image corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NuisanceKind {
    /// Additive Gaussian noise, standard deviation on `[0, 1]` intensities.
    Noise,
    /// Gaussian blur, sigma in pixels at 256 px (scaled with the width).
    Blur,
    /// Contrast reduction towards the image mean by a factor.
    Contrast,
    /// Gamma change `x^γ`.
    Gamma,
    /// Rotation by a fixed angle in a random direction.
    Rotation,
    /// JPEG compression at a quality.
    Jpeg,
    /// Down-sampling by a factor and up-sampling back.
    Downsample,
}

/// Parameters of severities 1..=5 for each kind (index 0 = severity 1).
const NOISE_SIGMA: [f64; 5] = [0.02, 0.04, 0.08, 0.12, 0.18];
const BLUR_SIGMA_256: [f64; 5] = [0.75, 1.5, 2.5, 3.5, 5.0];
const CONTRAST: [f64; 5] = [0.8, 0.6, 0.45, 0.3, 0.2];
const GAMMA: [f64; 5] = [1.3, 1.6, 2.0, 2.5, 3.0];
const ROTATION_DEG: [f64; 5] = [4.0, 8.0, 12.0, 20.0, 30.0];
const JPEG_QUALITY: [f64; 5] = [75.0, 50.0, 30.0, 15.0, 5.0];
const DOWNSAMPLE: [f64; 5] = [1.5, 2.0, 3.0, 4.0, 6.0];

impl NuisanceKind {
    /// Every kind, in report order.
    pub const ALL: [NuisanceKind; 7] = [
        NuisanceKind::Noise,
        NuisanceKind::Blur,
        NuisanceKind::Contrast,
        NuisanceKind::Gamma,
        NuisanceKind::Rotation,
        NuisanceKind::Jpeg,
        NuisanceKind::Downsample,
    ];

    /// The short name used in flags and tables (`noise`, `blur`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            NuisanceKind::Noise => "noise",
            NuisanceKind::Blur => "blur",
            NuisanceKind::Contrast => "contrast",
            NuisanceKind::Gamma => "gamma",
            NuisanceKind::Rotation => "rotation",
            NuisanceKind::Jpeg => "jpeg",
            NuisanceKind::Downsample => "downsample",
        }
    }

    /// A human-readable description of the parameter, e.g. `"Gaussian noise σ"`.
    pub fn parameter_name(&self) -> &'static str {
        match self {
            NuisanceKind::Noise => "Gaussian noise σ",
            NuisanceKind::Blur => "Gaussian blur σ (px at 256 px)",
            NuisanceKind::Contrast => "contrast factor",
            NuisanceKind::Gamma => "gamma γ",
            NuisanceKind::Rotation => "rotation (degrees)",
            NuisanceKind::Jpeg => "JPEG quality",
            NuisanceKind::Downsample => "down-sampling factor",
        }
    }

    fn table(&self) -> &'static [f64; 5] {
        match self {
            NuisanceKind::Noise => &NOISE_SIGMA,
            NuisanceKind::Blur => &BLUR_SIGMA_256,
            NuisanceKind::Contrast => &CONTRAST,
            NuisanceKind::Gamma => &GAMMA,
            NuisanceKind::Rotation => &ROTATION_DEG,
            NuisanceKind::Jpeg => &JPEG_QUALITY,
            NuisanceKind::Downsample => &DOWNSAMPLE,
        }
    }

    /// The parameter at `severity` (see the module table); severity 0 gives the identity value
    /// (σ 0, factor 1, γ 1, 0°, quality 100).
    ///
    /// # Errors
    /// A severity above [`MAX_SEVERITY`].
    pub fn parameter(&self, severity: u32) -> Result<f64> {
        if severity > MAX_SEVERITY {
            bail!("nuisance severity {severity} is out of range 0..={MAX_SEVERITY}");
        }
        if severity == 0 {
            return Ok(match self {
                NuisanceKind::Noise | NuisanceKind::Blur | NuisanceKind::Rotation => 0.0,
                NuisanceKind::Contrast | NuisanceKind::Gamma | NuisanceKind::Downsample => 1.0,
                NuisanceKind::Jpeg => 100.0,
            });
        }
        Ok(self.table()[severity as usize - 1])
    }

    fn id(&self) -> u64 {
        Self::ALL.iter().position(|k| k == self).unwrap_or(0) as u64
    }
}

impl fmt::Display for NuisanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NuisanceKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        NuisanceKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| {
                let names: Vec<_> = NuisanceKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown nuisance {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One corruption: a kind at a severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nuisance {
    /// What is done to the image.
    pub kind: NuisanceKind,
    /// How strongly, `0..=MAX_SEVERITY` (0 = untouched).
    pub severity: u32,
}

impl Nuisance {
    /// A validated corruption.
    ///
    /// # Errors
    /// A severity above [`MAX_SEVERITY`].
    pub fn new(kind: NuisanceKind, severity: u32) -> Result<Self> {
        kind.parameter(severity)?;
        Ok(Nuisance { kind, severity })
    }

    /// The parameter value of this corruption (see [`NuisanceKind::parameter`]).
    pub fn parameter(&self) -> f64 {
        self.kind
            .parameter(self.severity)
            .expect("validated by Nuisance::new")
    }

    /// Applies the corruption to `img` (values in `[0, 1]`; the result is clamped to
    /// `[0, 1]` and has the same size). Random parts are drawn from
    /// `rng_for([seed, kind, severity, index])`: deterministic per (seed, image index).
    /// Severity 0 returns an exact copy.
    pub fn apply(&self, img: &GrayImage, seed: u64, index: u64) -> GrayImage {
        if self.severity == 0 || img.data.is_empty() {
            return img.clone();
        }
        let p = self.parameter();
        let mut rng = rng_for(&[
            seed,
            0x4E55_4953,
            self.kind.id(),
            self.severity as u64,
            index,
        ]);
        let out = match self.kind {
            NuisanceKind::Noise => {
                let data = img
                    .data
                    .iter()
                    .map(|&v| v + (p * standard_normal(&mut rng)) as f32)
                    .collect();
                GrayImage {
                    width: img.width,
                    height: img.height,
                    data,
                }
            }
            NuisanceKind::Blur => gaussian_blur(img, p * img.width as f64 / 256.0),
            NuisanceKind::Contrast => {
                let mean = img.mean() as f32;
                let c = p as f32;
                map(img, |v| mean + c * (v - mean))
            }
            NuisanceKind::Gamma => map(img, |v| v.max(0.0).powf(p as f32)),
            NuisanceKind::Rotation => {
                let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                rotate(img, sign * p)
            }
            NuisanceKind::Jpeg => jpeg_round_trip(img, p as u8),
            NuisanceKind::Downsample => {
                let w = ((img.width as f64 / p).round() as u32).max(1);
                let h = ((img.height as f64 / p).round() as u32).max(1);
                img.resize(w, h, Filter::Bilinear)
                    .resize(img.width, img.height, Filter::Bilinear)
            }
        };
        clamp01(out)
    }
}

impl fmt::Display for Nuisance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} severity {}", self.kind, self.severity)
    }
}

/// Every corruption of `kinds` at `severities` (each validated), kind-major.
///
/// # Errors
/// A severity above [`MAX_SEVERITY`].
pub fn grid(kinds: &[NuisanceKind], severities: &[u32]) -> Result<Vec<Nuisance>> {
    let mut out = Vec::with_capacity(kinds.len() * severities.len());
    for &k in kinds {
        for &s in severities {
            out.push(Nuisance::new(k, s)?);
        }
    }
    Ok(out)
}

fn map(img: &GrayImage, f: impl Fn(f32) -> f32) -> GrayImage {
    GrayImage {
        width: img.width,
        height: img.height,
        data: img.data.iter().map(|&v| f(v)).collect(),
    }
}

fn clamp01(mut img: GrayImage) -> GrayImage {
    img.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    img
}

/// A standard normal draw (Box–Muller; `1 - u` keeps the logarithm finite).
fn standard_normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Encodes the image as an 8-bit baseline JPEG at `quality` and decodes it back to `[0, 1]`.
fn jpeg_round_trip(img: &GrayImage, quality: u8) -> GrayImage {
    let luma = img.to_luma8();
    let mut bytes = Vec::new();
    let encoder =
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100));
    let decoded = luma
        .write_with_encoder(encoder)
        .map_err(anyhow::Error::from)
        .and_then(|_| {
            Ok(image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)?.to_luma8())
        });
    match decoded {
        Ok(d) => GrayImage {
            width: d.width(),
            height: d.height(),
            data: d.as_raw().iter().map(|&b| b as f32 / 255.0).collect(),
        },
        // In-memory encoding of a valid 8-bit image cannot fail; keep the image if it ever does.
        Err(e) => {
            tracing::warn!("JPEG round trip failed ({e:#}); image left unchanged");
            img.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth test image with structure (gradient + disc), 64 px.
    fn phantom(size: u32) -> GrayImage {
        let mut img = GrayImage::filled(size, size, 0.0);
        let c = size as f32 / 2.0;
        for y in 0..size {
            for x in 0..size {
                let r = ((x as f32 - c).powi(2) + (y as f32 - c * 0.8).powi(2)).sqrt();
                let v = 0.2
                    + 0.5 * x as f32 / size as f32
                    + if r < size as f32 / 5.0 { 0.3 } else { 0.0 };
                img.set(x, y, v);
            }
        }
        img
    }

    fn variance(img: &GrayImage) -> f64 {
        let m = img.mean();
        img.data
            .iter()
            .map(|&v| (v as f64 - m).powi(2))
            .sum::<f64>()
            / img.data.len() as f64
    }

    fn mad(a: &GrayImage, b: &GrayImage) -> f64 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>()
            / a.data.len() as f64
    }

    /// High-frequency energy: mean squared horizontal difference.
    fn roughness(img: &GrayImage) -> f64 {
        let w = img.width as usize;
        let mut s = 0.0;
        let mut n = 0;
        for row in img.data.chunks_exact(w) {
            for p in row.windows(2) {
                s += ((p[1] - p[0]) as f64).powi(2);
                n += 1;
            }
        }
        s / n as f64
    }

    #[test]
    fn severity_zero_is_identity_for_every_kind() {
        let img = phantom(48);
        for k in NuisanceKind::ALL {
            let n = Nuisance::new(k, 0).unwrap();
            assert_eq!(n.apply(&img, 3, 7), img, "{k}");
        }
    }

    #[test]
    fn every_kind_changes_the_image_and_keeps_size_and_range() {
        let img = phantom(64);
        for n in grid(&NuisanceKind::ALL, &[1, 3, 5]).unwrap() {
            let out = n.apply(&img, 1, 0);
            assert_eq!((out.width, out.height), (64, 64), "{n}");
            assert!(
                out.data.iter().all(|v| (0.0..=1.0).contains(v)),
                "{n}: out of [0,1]"
            );
            assert!(mad(&out, &img) > 1e-4, "{n}: image unchanged");
        }
    }

    #[test]
    fn damage_grows_with_severity() {
        let img = phantom(64);
        for k in NuisanceKind::ALL {
            let d1 = mad(&Nuisance::new(k, 1).unwrap().apply(&img, 0, 0), &img);
            let d5 = mad(&Nuisance::new(k, 5).unwrap().apply(&img, 0, 0), &img);
            assert!(d5 > d1, "{k}: severity 5 ({d5}) not worse than 1 ({d1})");
        }
    }

    #[test]
    fn noise_increases_variance_and_is_deterministic() {
        let img = GrayImage::filled(32, 32, 0.5);
        let n = Nuisance::new(NuisanceKind::Noise, 3).unwrap();
        let a = n.apply(&img, 9, 4);
        assert!(
            variance(&a) > 0.5 * 0.08 * 0.08,
            "variance {}",
            variance(&a)
        );
        assert!(
            (variance(&a).sqrt() - 0.08).abs() < 0.01,
            "σ {}",
            variance(&a).sqrt()
        );
        assert_eq!(
            a,
            n.apply(&img, 9, 4),
            "same (seed, index) must give the same noise"
        );
        assert_ne!(
            a,
            n.apply(&img, 9, 5),
            "another image index must give other noise"
        );
        assert_ne!(
            a,
            n.apply(&img, 10, 4),
            "another seed must give other noise"
        );
        let v1 = variance(
            &Nuisance::new(NuisanceKind::Noise, 1)
                .unwrap()
                .apply(&img, 9, 4),
        );
        assert!(v1 < variance(&a));
    }

    #[test]
    fn blur_smooths_and_scales_with_width() {
        let img = phantom(64);
        let b = Nuisance::new(NuisanceKind::Blur, 4)
            .unwrap()
            .apply(&img, 0, 0);
        assert!(roughness(&b) < roughness(&img));
        // sigma 3.5 px at 256 px is 0.875 px at 64 px: the same as Pillow's blur of that radius.
        assert_eq!(b, clamp01(gaussian_blur(&img, 3.5 * 64.0 / 256.0)));
    }

    #[test]
    fn contrast_and_gamma() {
        let img = phantom(32);
        let c = Nuisance::new(NuisanceKind::Contrast, 2)
            .unwrap()
            .apply(&img, 0, 0);
        assert!(
            (variance(&c) - 0.36 * variance(&img)).abs() < 1e-6,
            "variance scales by c^2"
        );
        assert!((c.mean() - img.mean()).abs() < 1e-5, "mean kept");
        let g = Nuisance::new(NuisanceKind::Gamma, 3)
            .unwrap()
            .apply(&img, 0, 0);
        for (o, n) in img.data.iter().zip(&g.data) {
            assert!((n - o.powf(2.0)).abs() < 1e-6);
        }
    }

    #[test]
    fn jpeg_round_trip_stays_close_and_quality_matters() {
        let img = phantom(64);
        let q75 = Nuisance::new(NuisanceKind::Jpeg, 1)
            .unwrap()
            .apply(&img, 0, 0);
        let q5 = Nuisance::new(NuisanceKind::Jpeg, 5)
            .unwrap()
            .apply(&img, 0, 0);
        assert!(
            mad(&q75, &img) < 0.02,
            "quality 75 error {}",
            mad(&q75, &img)
        );
        assert!(mad(&q5, &img) > mad(&q75, &img));
    }

    #[test]
    fn rotation_zero_identity_and_direction_is_seeded() {
        let img = phantom(40);
        assert_eq!(rotate(&img, 0.0), img);
        let r = Nuisance::new(NuisanceKind::Rotation, 5).unwrap();
        let outs: Vec<_> = (0..16).map(|i| r.apply(&img, 2, i)).collect();
        let plus = rotate(&img, 30.0);
        let minus = rotate(&img, -30.0);
        assert!(outs
            .iter()
            .all(|o| *o == clamp01(plus.clone()) || *o == clamp01(minus.clone())));
        assert!(
            outs.contains(&plus) && outs.contains(&minus),
            "both directions occur"
        );
        assert_eq!(outs[3], r.apply(&img, 2, 3));
    }

    #[test]
    fn downsample_loses_detail_keeps_size() {
        let img = phantom(64);
        let d = Nuisance::new(NuisanceKind::Downsample, 5)
            .unwrap()
            .apply(&img, 0, 0);
        assert_eq!((d.width, d.height), (64, 64));
        assert!(roughness(&d) < roughness(&img));
    }

    #[test]
    fn parse_names_and_reject_bad_severity() {
        for k in NuisanceKind::ALL {
            assert_eq!(k.name().parse::<NuisanceKind>().unwrap(), k);
        }
        let e = "sharpen".parse::<NuisanceKind>().unwrap_err();
        assert!(format!("{e}").contains("expected one of noise"), "{e}");
        assert!(Nuisance::new(NuisanceKind::Noise, 6).is_err());
        assert_eq!(NuisanceKind::Jpeg.parameter(0).unwrap(), 100.0);
        assert_eq!(NuisanceKind::Blur.parameter(5).unwrap(), 5.0);
        assert_eq!(grid(&[NuisanceKind::Gamma], &[0, 1, 2]).unwrap().len(), 3);
    }
}
