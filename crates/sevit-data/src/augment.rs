//! The DISTL multi-crop augmentation and the inference transform, on `f32` grayscale images.
//!
//! Each transform is a separate function following torchvision (on PIL images) / Pillow
//! semantics:
//! * [`random_resized_crop_params`]: torchvision `RandomResizedCrop.get_params` (area scale,
//!   log-uniform aspect ratio in 3/4..4/3, 10 tries, then the centre-crop fallback);
//!   [`resized_crop`]: crop then Pillow antialiased bicubic resize.
//! * [`hflip`]; [`rotate`]: Pillow `Image.rotate(angle)` as used by `RandomRotation` (counter-
//!   clockwise degrees about the centre `(w/2, h/2)`, nearest neighbour, no expand, fill 0).
//! * [`autocontrast`]: `ImageOps.autocontrast` (cutoff 0) as the continuous map
//!   `(x - min) / (max - min)` (Pillow truncates to 8 bit; we keep `f32`).
//! * [`equalize`]: `ImageOps.equalize` on the 256-level histogram of `round(255 x)` (output
//!   quantised to the 256 levels, as Pillow's).
//! * [`gaussian_blur`]: `ImageFilter.GaussianBlur(radius)`: Pillow's three-pass extended box
//!   blur approximating a Gaussian with sigma = radius, edges extended.
//!
//! Views ([`multi_crop`]): global view 1 = the image itself resized to the global size; global
//! view 2 and the local views = crop, flip, rotation, autocontrast, equalisation, blur, in that
//! order, with [`ViewAugment`] parameters. The random stream of view `v` is ChaCha8 seeded with
//! `derive_seed([seed, v])`, so views are independent of each other and of thread timing.

use crate::gray::{Filter, GrayImage};
use crate::rng::rng_for;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Parameters of one augmented view (global view 2 or a local view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewAugment {
    /// RandomResizedCrop area scale range.
    pub scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio range.
    pub ratio: [f64; 2],
    /// Horizontal flip probability.
    pub flip_p: f64,
    /// Rotation range: uniform in `[-rotation_deg, rotation_deg]` degrees (0 disables).
    pub rotation_deg: f64,
    /// Autocontrast probability.
    pub autocontrast_p: f64,
    /// Histogram equalisation probability.
    pub equalize_p: f64,
    /// Gaussian blur probability.
    pub blur_p: f64,
    /// Blur radius range (uniform).
    pub blur_radius: [f64; 2],
}

impl ViewAugment {
    /// DISTL global view 2: scale 0.75–1.0, flip 0.5, rotation ±15°, autocontrast 0.3,
    /// equalisation 0.3, blur 0.3 with radius 0.1–2.0.
    pub fn distl_global() -> Self {
        ViewAugment {
            scale: [0.75, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip_p: 0.5,
            rotation_deg: 15.0,
            autocontrast_p: 0.3,
            equalize_p: 0.3,
            blur_p: 0.3,
            blur_radius: [0.1, 2.0],
        }
    }

    /// DISTL local views: scale 0.2–0.6, flip 0.5, rotation ±15°, autocontrast, equalisation
    /// and blur each with p = 0.5.
    pub fn distl_local() -> Self {
        ViewAugment {
            scale: [0.2, 0.6],
            autocontrast_p: 0.5,
            equalize_p: 0.5,
            blur_p: 0.5,
            ..Self::distl_global()
        }
    }

    /// Checks ranges (probabilities in [0,1], ordered ranges, positive scales).
    pub fn validate(&self, what: &str) -> anyhow::Result<()> {
        let p_ok = |p: f64| (0.0..=1.0).contains(&p);
        anyhow::ensure!(
            p_ok(self.flip_p)
                && p_ok(self.autocontrast_p)
                && p_ok(self.equalize_p)
                && p_ok(self.blur_p),
            "{what}: probabilities must be in [0, 1]"
        );
        anyhow::ensure!(
            self.scale[0] > 0.0 && self.scale[0] <= self.scale[1] && self.scale[1] <= 1.0,
            "{what}: scale must satisfy 0 < min <= max <= 1"
        );
        anyhow::ensure!(
            self.ratio[0] > 0.0 && self.ratio[0] <= self.ratio[1],
            "{what}: ratio must satisfy 0 < min <= max"
        );
        anyhow::ensure!(
            self.blur_radius[0] >= 0.0 && self.blur_radius[0] <= self.blur_radius[1],
            "{what}: blur radius must satisfy 0 <= min <= max"
        );
        anyhow::ensure!(
            self.rotation_deg >= 0.0,
            "{what}: rotation_deg must be >= 0"
        );
        Ok(())
    }
}

impl Default for ViewAugment {
    /// The DISTL global view 2 parameters.
    fn default() -> Self {
        Self::distl_global()
    }
}

/// Partial [`ViewAugment`] used when reading TOML: missing fields keep the defaults of the view
/// kind (global or local).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewAugmentPatch {
    scale: Option<[f64; 2]>,
    ratio: Option<[f64; 2]>,
    flip_p: Option<f64>,
    rotation_deg: Option<f64>,
    autocontrast_p: Option<f64>,
    equalize_p: Option<f64>,
    blur_p: Option<f64>,
    blur_radius: Option<[f64; 2]>,
}

impl ViewAugmentPatch {
    fn apply(self, mut base: ViewAugment) -> ViewAugment {
        macro_rules! set { ($($f:ident),*) => { $( if let Some(v) = self.$f { base.$f = v; } )* } }
        set!(
            scale,
            ratio,
            flip_p,
            rotation_deg,
            autocontrast_p,
            equalize_p,
            blur_p,
            blur_radius
        );
        base
    }
}

/// Multi-crop configuration. `Default` = DISTL (256 px global, 8 local views of 128 px, the
/// [`ViewAugment::distl_global`] / [`ViewAugment::distl_local`] parameters, inference blur
/// radius 0.5). In TOML every field is optional; a partial `[global2]` or `[local]` table
/// overrides only the fields it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "MultiCropConfigRaw")]
pub struct MultiCropConfig {
    /// Side of the global views (and of the loaded image).
    pub global_size: u32,
    /// Side of the local views.
    pub local_size: u32,
    /// Number of local views.
    pub n_local: usize,
    /// Global view 2 parameters.
    pub global2: ViewAugment,
    /// Local view parameters.
    pub local: ViewAugment,
    /// Gaussian blur radius of the inference transform.
    pub inference_blur_radius: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiCropConfigRaw {
    global_size: Option<u32>,
    local_size: Option<u32>,
    n_local: Option<usize>,
    global2: Option<ViewAugmentPatch>,
    local: Option<ViewAugmentPatch>,
    inference_blur_radius: Option<f64>,
}

impl From<MultiCropConfigRaw> for MultiCropConfig {
    fn from(r: MultiCropConfigRaw) -> Self {
        let d = MultiCropConfig::default();
        MultiCropConfig {
            global_size: r.global_size.unwrap_or(d.global_size),
            local_size: r.local_size.unwrap_or(d.local_size),
            n_local: r.n_local.unwrap_or(d.n_local),
            global2: r.global2.unwrap_or_default().apply(d.global2),
            local: r.local.unwrap_or_default().apply(d.local),
            inference_blur_radius: r.inference_blur_radius.unwrap_or(d.inference_blur_radius),
        }
    }
}

impl Default for MultiCropConfig {
    fn default() -> Self {
        MultiCropConfig {
            global_size: 256,
            local_size: 128,
            n_local: 8,
            global2: ViewAugment::distl_global(),
            local: ViewAugment::distl_local(),
            inference_blur_radius: 0.5,
        }
    }
}

impl MultiCropConfig {
    /// Total number of views (2 global + `n_local`).
    pub fn num_views(&self) -> usize {
        2 + self.n_local
    }

    /// Reads a TOML file of (some) `MultiCropConfig` fields and validates it.
    pub fn from_toml_file(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read multi-crop config {}", path.display()))?;
        // A training config (or any file with a [views] table) gives its [views] table;
        // otherwise the file is the table's fields themselves.
        let mut table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("invalid TOML in multi-crop config {}", path.display()))?;
        let views = match table.remove("views") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => anyhow::bail!("{}: `views` is not a table", path.display()),
            None => table,
        };
        let cfg: MultiCropConfig = views.try_into().with_context(|| {
            format!(
                "invalid multi-crop config {} (a training config, its [views] table, or the fields of that table)",
                path.display()
            )
        })?;
        cfg.validate()
            .with_context(|| format!("multi-crop config {}", path.display()))?;
        Ok(cfg)
    }

    /// Checks sizes and the view parameters.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.global_size > 0 && self.local_size > 0,
            "multi-crop sizes must be positive"
        );
        anyhow::ensure!(
            self.inference_blur_radius >= 0.0,
            "inference blur radius must be >= 0"
        );
        self.global2.validate("global2")?;
        self.local.validate("local")
    }
}

/// torchvision `RandomResizedCrop.get_params`: returns `(top, left, height, width)` of a crop
/// whose area is a `scale` fraction of the image and whose aspect ratio is log-uniform in
/// `ratio`; after 10 failed tries, the central crop clamped to the ratio range.
pub fn random_resized_crop_params<R: Rng>(
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut R,
) -> (u32, u32, u32, u32) {
    let area = (width as f64) * (height as f64);
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale[0], scale[1]);
        let aspect = uniform(rng, lr0, lr1).exp();
        let w = (target_area * aspect).sqrt().round() as i64;
        let h = (target_area / aspect).sqrt().round() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let i = rng.gen_range(0..=(height as i64 - h)) as u32;
            let j = rng.gen_range(0..=(width as i64 - w)) as u32;
            return (i, j, h as u32, w as u32);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio[0] {
        (
            width,
            ((width as f64 / ratio[0]).round() as u32).clamp(1, height),
        )
    } else if in_ratio > ratio[1] {
        (
            ((height as f64 * ratio[1]).round() as u32).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

fn uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

/// Crops `(top, left, h, w)` and resizes to `size x size` with Pillow's antialiased bicubic.
pub fn resized_crop(img: &GrayImage, top: u32, left: u32, h: u32, w: u32, size: u32) -> GrayImage {
    img.crop(left, top, w, h)
        .resize(size, size, Filter::Bicubic)
}

/// Mirror left-right.
pub fn hflip(img: &GrayImage) -> GrayImage {
    let w = img.width as usize;
    let mut out = img.clone();
    for row in out.data.chunks_exact_mut(w) {
        row.reverse();
    }
    out
}

/// Pillow `Image.rotate(angle_deg)` (counter-clockwise, about `(w/2, h/2)`, nearest
/// neighbour, same size, fill 0), including Pillow's 16.16 fixed-point sampling of the NEAREST
/// affine path. An angle that is a multiple of 360 returns a copy.
pub fn rotate(img: &GrayImage, angle_deg: f64) -> GrayImage {
    let angle = angle_deg.rem_euclid(360.0);
    if angle == 0.0 {
        return img.clone();
    }
    let (w, h) = (img.width as f64, img.height as f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let t = -angle.to_radians();
    let r15 = |v: f64| (v * 1e15).round() / 1e15;
    let (a, b, d, e) = (r15(t.cos()), r15(t.sin()), r15(-t.sin()), r15(t.cos()));
    // Inverse map output -> input (Pillow's matrix including the centre translation).
    let c = a * (-cx) + b * (-cy) + cx;
    let f = d * (-cx) + e * (-cy) + cy;
    // Pillow's `affine_fixed` (the NEAREST affine path): 16.16 fixed point, sampling at pixel
    // centres, incremental along rows and columns.
    let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i64;
    let (a0, a1, a3, a4) = (fix(a), fix(b), fix(d), fix(e));
    let (mut a2, mut a5) = (fix(a * 0.5 + b * 0.5 + c), fix(d * 0.5 + e * 0.5 + f));
    let (wu, hu) = (img.width as usize, img.height as usize);
    let (wi, hi) = (img.width as i64, img.height as i64);
    let src = &img.data[..];
    let mut data = vec![0f32; wu * hu];
    for out_row in data.chunks_exact_mut(wu) {
        let (mut xx, mut yy) = (a2, a5);
        for o in out_row.iter_mut() {
            let (xin, yin) = (xx >> 16, yy >> 16);
            if xin >= 0 && xin < wi && yin >= 0 && yin < hi {
                *o = src[yin as usize * wu + xin as usize];
            }
            xx += a0;
            yy += a3;
        }
        a2 += a1;
        a5 += a4;
    }
    GrayImage {
        width: img.width,
        height: img.height,
        data,
    }
}

/// `ImageOps.autocontrast` (cutoff 0): stretches `[min, max]` to `[0, 1]`; a constant image
/// is returned unchanged.
pub fn autocontrast(img: &GrayImage) -> GrayImage {
    let (lo, hi) = img.min_max();
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return img.clone();
    }
    let range = hi - lo;
    GrayImage {
        width: img.width,
        height: img.height,
        data: img
            .data
            .iter()
            .map(|&v| ((v - lo) / range).clamp(0.0, 1.0))
            .collect(),
    }
}

/// The 8-bit level of a value: `round(255 v)` clamped to 0..=255 (half away from zero, as
/// `f32::round` for non-negative values, without the libm call).
#[inline]
fn level(v: f32) -> usize {
    ((v * 255.0).clamp(0.0, 255.0) + 0.5) as usize
}

/// `ImageOps.equalize`: the Pillow look-up table built from the 256-level histogram
/// (`step = (n - count of the last level) / 256`); images with one level or a zero step are
/// only quantised.
pub fn equalize(img: &GrayImage) -> GrayImage {
    let levels: Vec<u8> = img.data.iter().map(|&v| level(v) as u8).collect();
    let mut hist = [0usize; 256];
    for &l in &levels {
        hist[l as usize] += 1;
    }
    let nonzero: Vec<usize> = hist.iter().copied().filter(|&c| c > 0).collect();
    let mut lut = [0f32; 256];
    let step = if nonzero.len() <= 1 {
        0
    } else {
        (nonzero.iter().sum::<usize>() - nonzero[nonzero.len() - 1]) / 256
    };
    if step == 0 {
        for (i, l) in lut.iter_mut().enumerate() {
            *l = i as f32 / 255.0;
        }
    } else {
        let mut n = step / 2;
        for i in 0..256 {
            lut[i] = (n / step).min(255) as f32 / 255.0;
            n += hist[i];
        }
    }
    GrayImage {
        width: img.width,
        height: img.height,
        data: levels.iter().map(|&l| lut[l as usize]).collect(),
    }
}

/// Pillow's box radius for a Gaussian of standard deviation `sigma` approximated by `passes`
/// extended box blurs (Gwosdek et al. 2011).
pub fn box_radius_for_sigma(sigma: f64, passes: u32) -> f64 {
    let sigma2 = sigma * sigma / passes as f64;
    let big_l = (12.0 * sigma2 + 1.0).sqrt();
    let l = ((big_l - 1.0) / 2.0).floor();
    let a =
        (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2) / (6.0 * (sigma2 - (l + 1.0) * (l + 1.0)));
    l + a
}

/// The extended box of `radius`: whole radius `r = floor(radius)`, the weight `ww` of the
/// `2r + 1` whole pixels and the weight `fw` of the two fractional ones (Pillow).
fn box_weights(radius: f64) -> (usize, f32, f32) {
    let r = radius.floor() as usize;
    let ww = (1.0 / (2.0 * radius + 1.0)) as f32;
    let fw = ((radius - r as f64) / (2.0 * radius + 1.0)) as f32;
    (r, ww, fw)
}

/// One extended-box pass along the vertical axis of a row-major `w x h` buffer, all columns at
/// once (vectorisable): `out[y] = ww * sum(in[y-r..=y+r]) + fw * (in[y-r-1] + in[y+r+1])`
/// with rows clamped at the edges, `r = floor(radius)`, `ww = 1 / (2 radius + 1)`,
/// `fw = (radius - r) ww` (Pillow `ImagingLineBoxBlur`).
fn box_blur_vertical(
    src: &[f32],
    dst: &mut [f32],
    w: usize,
    h: usize,
    radius: f64,
    acc: &mut Vec<f32>,
) {
    let (r, ww, fw) = box_weights(radius);
    let r = r as i64;
    let row = |y: i64| -> &[f32] {
        let y = y.clamp(0, h as i64 - 1) as usize;
        &src[y * w..(y + 1) * w]
    };
    acc.clear();
    acc.resize(w, 0.0);
    for k in -r..=r {
        for (a, &v) in acc.iter_mut().zip(row(k)) {
            *a += v;
        }
    }
    for y in 0..h as i64 {
        let (far_lo, far_hi) = (row(y - r - 1), row(y + r + 1));
        let out = &mut dst[y as usize * w..(y as usize + 1) * w];
        for (((o, &a), &lo), &hi) in out.iter_mut().zip(acc.iter()).zip(far_lo).zip(far_hi) {
            *o = a * ww + (lo + hi) * fw;
        }
        // Slide the window: add row y+r+1 (= far_hi), drop row y-r.
        let sub = row(y - r);
        for ((a, &add), &sub) in acc.iter_mut().zip(far_hi).zip(sub) {
            *a += add - sub;
        }
    }
}

/// One extended-box pass along each row (same formula as [`box_blur_vertical`]), rows padded
/// with their edge values and processed four at a time so the running sums are independent.
fn box_blur_rows(
    src: &[f32],
    dst: &mut [f32],
    w: usize,
    h: usize,
    radius: f64,
    pad: &mut Vec<f32>,
) {
    let (r, ww, fw) = box_weights(radius);
    let pw = w + 2 * r + 2;
    pad.clear();
    pad.resize(4 * pw, 0.0);
    let mut y0 = 0;
    while y0 < h {
        let nrows = (h - y0).min(4);
        for i in 0..4 {
            // Rows past the end repeat the last one (results discarded).
            let row = &src[(y0 + i.min(nrows - 1)) * w..(y0 + i.min(nrows - 1) + 1) * w];
            let p = &mut pad[i * pw..(i + 1) * pw];
            p[..r + 1].fill(row[0]);
            p[r + 1..r + 1 + w].copy_from_slice(row);
            p[r + 1 + w..].fill(row[w - 1]);
        }
        let (p0, rest) = pad.split_at(pw);
        let (p1, rest) = rest.split_at(pw);
        let (p2, p3) = rest.split_at(pw);
        let p = [p0, p1, p2, p3];
        // Padded index of original x is x + r + 1; window x-r..=x+r is p[x+1..=x+2r+1].
        let mut acc = [0f32; 4];
        for i in 0..4 {
            acc[i] = p[i][1..2 * r + 2].iter().sum();
        }
        for x in 0..w {
            for i in 0..4 {
                let (lo, hi) = (p[i][x], p[i][x + 2 * r + 2]);
                let v = acc[i] * ww + (lo + hi) * fw;
                if i < nrows {
                    dst[(y0 + i) * w + x] = v;
                }
                acc[i] += hi - p[i][x + 1];
            }
        }
        y0 += 4;
    }
}

/// Pillow `ImageFilter.GaussianBlur(radius)`: three extended box blurs per axis whose combined
/// variance is `radius²` (sigma = radius), edge pixels extended. Radius 0 is the identity.
pub fn gaussian_blur(img: &GrayImage, radius: f64) -> GrayImage {
    if radius <= 0.0 || img.data.is_empty() {
        return img.clone();
    }
    let br = box_radius_for_sigma(radius, 3);
    let (w, h) = (img.width as usize, img.height as usize);
    let mut tmp = Vec::new();
    // Horizontal passes then vertical passes (Pillow's order).
    let mut a = img.data.clone();
    let mut b = vec![0f32; w * h];
    for _ in 0..3 {
        box_blur_rows(&a, &mut b, w, h, br, &mut tmp);
        std::mem::swap(&mut a, &mut b);
    }
    for _ in 0..3 {
        box_blur_vertical(&a, &mut b, w, h, br, &mut tmp);
        std::mem::swap(&mut a, &mut b);
    }
    GrayImage {
        width: img.width,
        height: img.height,
        data: a,
    }
}

/// One augmented view: random resized crop to `size`, flip, rotation, autocontrast,
/// equalisation and blur with the probabilities of `aug` (in that order), drawing from `rng`.
pub fn augment_view<R: Rng>(
    img: &GrayImage,
    size: u32,
    aug: &ViewAugment,
    rng: &mut R,
) -> GrayImage {
    let (top, left, h, w) =
        random_resized_crop_params(img.width, img.height, aug.scale, aug.ratio, rng);
    let mut v = resized_crop(img, top, left, h, w, size);
    if rng.gen::<f64>() < aug.flip_p {
        v = hflip(&v);
    }
    if aug.rotation_deg > 0.0 {
        let angle = uniform(rng, -aug.rotation_deg, aug.rotation_deg);
        v = rotate(&v, angle);
    }
    if rng.gen::<f64>() < aug.autocontrast_p {
        v = autocontrast(&v);
    }
    if rng.gen::<f64>() < aug.equalize_p {
        v = equalize(&v);
    }
    if rng.gen::<f64>() < aug.blur_p {
        let r = uniform(rng, aug.blur_radius[0], aug.blur_radius[1]);
        v = gaussian_blur(&v, r);
    }
    v
}

/// The DISTL views of one image: `[global1, global2, local1..local_n]`. `seed` identifies the
/// image draw (the loader passes `derive_seed([seed, epoch, index])`); view `v` uses its own
/// ChaCha8 stream `derive_seed([seed, v])`.
pub fn multi_crop(img: &GrayImage, cfg: &MultiCropConfig, seed: u64) -> Vec<GrayImage> {
    let mut views = Vec::with_capacity(cfg.num_views());
    views.push(img.resize(cfg.global_size, cfg.global_size, Filter::Bilinear));
    views.push(augment_view(
        img,
        cfg.global_size,
        &cfg.global2,
        &mut rng_for(&[seed, 1]),
    ));
    for v in 0..cfg.n_local {
        views.push(augment_view(
            img,
            cfg.local_size,
            &cfg.local,
            &mut rng_for(&[seed, 2 + v as u64]),
        ));
    }
    views
}

/// The inference transform: Gaussian blur of `radius` (DISTL: 0.5) on the loaded image.
pub fn inference_transform(img: &GrayImage, radius: f64) -> GrayImage {
    gaussian_blur(img, radius)
}

#[cfg(test)]
mod tests;
