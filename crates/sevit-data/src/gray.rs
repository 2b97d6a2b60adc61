//! [`GrayImage`]: the crate's image type (single channel, `f32`, row-major), with min-max
//! normalisation, cropping and Pillow-style antialiased resampling.

use anyhow::{bail, Result};

/// A single-channel `f32` image, row-major (`data[y * width + x]`). Images produced by
/// [`crate::load_gray`] and by the augmentations hold values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixel values, row by row.
    pub data: Vec<f32>,
}

/// Resampling filter of [`GrayImage::resize`], with Pillow's definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Triangle filter, support 1 (Pillow `BILINEAR`).
    Bilinear,
    /// Keys cubic with a = -0.5, support 2 (Pillow `BICUBIC`).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }
    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                let a = -0.5;
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
        }
    }
}

impl GrayImage {
    /// An image filled with `value`.
    pub fn filled(width: u32, height: u32, value: f32) -> Self {
        GrayImage {
            width,
            height,
            data: vec![value; width as usize * height as usize],
        }
    }

    /// Wraps `data` (row-major); fails when the length is not `width * height`.
    pub fn from_vec(width: u32, height: u32, data: Vec<f32>) -> Result<Self> {
        if data.len() != width as usize * height as usize {
            bail!(
                "image buffer has {} values, expected {}x{}",
                data.len(),
                width,
                height
            );
        }
        Ok(GrayImage {
            width,
            height,
            data,
        })
    }

    /// Pixel at `(x, y)`.
    #[inline]
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// Sets the pixel at `(x, y)`.
    #[inline]
    pub fn set(&mut self, x: u32, y: u32, v: f32) {
        let w = self.width as usize;
        self.data[y as usize * w + x as usize] = v;
    }

    /// Smallest and largest value (`(0, 0)` for an empty image).
    pub fn min_max(&self) -> (f32, f32) {
        if self.data.is_empty() {
            return (0.0, 0.0);
        }
        self.data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }

    /// Mean value.
    pub fn mean(&self) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len() as f64
    }

    /// Per-image min-max normalisation to `[0, 1]` in place; a constant image becomes all 0.
    ///
    /// Returns false when the image had no range to scale (constant, or not finite).
    pub fn normalize_min_max(&mut self) -> bool {
        let (lo, hi) = self.min_max();
        let range = hi - lo;
        if range.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !range.is_finite() {
            self.data.iter_mut().for_each(|v| *v = 0.0);
            return false;
        }
        self.data
            .iter_mut()
            .for_each(|v| *v = ((*v - lo) / range).clamp(0.0, 1.0));
        true
    }

    /// The sub-image with top-left corner `(left, top)` and size `w x h`; the region must lie
    /// inside the image.
    pub fn crop(&self, left: u32, top: u32, w: u32, h: u32) -> GrayImage {
        assert!(
            left + w <= self.width && top + h <= self.height,
            "crop outside the image"
        );
        let mut data = Vec::with_capacity(w as usize * h as usize);
        for y in top..top + h {
            let row = y as usize * self.width as usize;
            data.extend_from_slice(&self.data[row + left as usize..row + (left + w) as usize]);
        }
        GrayImage {
            width: w,
            height: h,
            data,
        }
    }

    /// Resizes to `w x h` with Pillow's separable convolution resampling (antialiased when
    /// downscaling: the filter support is stretched by the scale factor). Bicubic results are
    /// clamped to `[0, 1]` as 8-bit Pillow images are clamped to `[0, 255]`.
    pub fn resize(&self, w: u32, h: u32, filter: Filter) -> GrayImage {
        if w == self.width && h == self.height {
            return self.clone();
        }
        // Horizontal pass then vertical pass (Pillow order).
        let horiz = if w != self.width {
            resample_rows(self, w, filter)
        } else {
            self.clone()
        };
        let out = if h != self.height {
            resample_cols(&horiz, h, filter)
        } else {
            horiz
        };
        if filter == Filter::Bicubic {
            let mut out = out;
            out.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            out
        } else {
            out
        }
    }

    /// Converts to an 8-bit image (`round(v * 255)`, clamped).
    pub fn to_luma8(&self) -> image::GrayImage {
        let buf = self
            .data
            .iter()
            .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        image::GrayImage::from_raw(self.width, self.height, buf).expect("buffer size matches")
    }
}

/// Vertical pass: each output row is a weighted sum of input rows (vectorised over x).
fn resample_cols(img: &GrayImage, out_h: u32, filter: Filter) -> GrayImage {
    let (w, in_h) = (img.width as usize, img.height as usize);
    let (starts, weights) = coefficients(in_h, out_h as usize, filter);
    let mut data = vec![0.0f32; w * out_h as usize];
    for (yy, out) in data.chunks_exact_mut(w).enumerate() {
        for (k, &wt) in weights[yy].iter().enumerate() {
            let y = starts[yy] + k;
            let row = &img.data[y * w..(y + 1) * w];
            for (o, &v) in out.iter_mut().zip(row) {
                *o += wt * v;
            }
        }
    }
    GrayImage {
        width: img.width,
        height: out_h,
        data,
    }
}

/// Pillow `precompute_coeffs`: for each output index, the first input index and the weights.
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> (Vec<usize>, Vec<Vec<f32>>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut starts = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
        let xmax = ((center + support + 0.5).floor() as isize)
            .min(in_size as isize)
            .max(xmin as isize) as usize;
        let mut ws: Vec<f64> = (xmin..xmax)
            .map(|x| filter.eval((x as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = ws.iter().sum();
        if total != 0.0 {
            ws.iter_mut().for_each(|w| *w /= total);
        }
        starts.push(xmin);
        weights.push(ws.into_iter().map(|w| w as f32).collect());
    }
    (starts, weights)
}

/// Horizontal pass. The windows are padded to one length `kmax` (zero weights, start shifted
/// left where a window would run past the row end: same sums), and four rows are processed
/// together so that the four accumulations are independent.
fn resample_rows(img: &GrayImage, out_w: u32, filter: Filter) -> GrayImage {
    let (in_w, h) = (img.width as usize, img.height as usize);
    let ow = out_w as usize;
    let (starts, weights) = coefficients(in_w, ow, filter);
    let kmax = weights.iter().map(Vec::len).max().unwrap_or(0).min(in_w);
    let mut flat = vec![0f32; ow * kmax];
    let mut st = vec![0usize; ow];
    for xx in 0..ow {
        let n = weights[xx].len().min(kmax);
        let shift = (starts[xx] + kmax).saturating_sub(in_w);
        st[xx] = starts[xx] - shift;
        flat[xx * kmax + shift..xx * kmax + shift + n].copy_from_slice(&weights[xx][..n]);
    }
    let mut data = vec![0.0f32; ow * h];
    let src = &img.data;
    let mut y = 0;
    while y + 4 <= h {
        let r: [&[f32]; 4] = std::array::from_fn(|i| &src[(y + i) * in_w..(y + i + 1) * in_w]);
        for xx in 0..ow {
            let w = &flat[xx * kmax..(xx + 1) * kmax];
            let s = st[xx];
            let (r0, r1, r2, r3) = (
                &r[0][s..s + kmax],
                &r[1][s..s + kmax],
                &r[2][s..s + kmax],
                &r[3][s..s + kmax],
            );
            let mut acc = [0f32; 4];
            for k in 0..kmax {
                let wk = w[k];
                acc[0] += wk * r0[k];
                acc[1] += wk * r1[k];
                acc[2] += wk * r2[k];
                acc[3] += wk * r3[k];
            }
            for (i, a) in acc.iter().enumerate() {
                data[(y + i) * ow + xx] = *a;
            }
        }
        y += 4;
    }
    for y in y..h {
        let row = &src[y * in_w..(y + 1) * in_w];
        for xx in 0..ow {
            let s = st[xx];
            data[y * ow + xx] = flat[xx * kmax..(xx + 1) * kmax]
                .iter()
                .zip(&row[s..s + kmax])
                .map(|(w, v)| w * v)
                .sum();
        }
    }
    GrayImage {
        width: out_w,
        height: img.height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> GrayImage {
        let data = (0..w * h)
            .map(|i| ((i % w) + (i / w)) as f32 / (w + h) as f32)
            .collect();
        GrayImage::from_vec(w, h, data).unwrap()
    }

    #[test]
    fn min_max_normalisation_spans_unit_interval() {
        let mut img = GrayImage::from_vec(2, 2, vec![3.0, 5.0, 7.0, 4.0]).unwrap();
        img.normalize_min_max();
        assert_eq!(img.data, vec![0.0, 0.5, 1.0, 0.25]);
        let mut flat = GrayImage::filled(3, 3, 9.0);
        flat.normalize_min_max();
        assert!(flat.data.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn resize_same_size_is_identity_and_constant_stays_constant() {
        let img = ramp(7, 5);
        assert_eq!(img.resize(7, 5, Filter::Bicubic), img);
        let c = GrayImage::filled(40, 30, 0.25);
        for f in [Filter::Bilinear, Filter::Bicubic] {
            let r = c.resize(13, 17, f);
            assert_eq!((r.width, r.height), (13, 17));
            assert!(r.data.iter().all(|&v| (v - 0.25).abs() < 1e-5));
            let up = c.resize(61, 45, f);
            assert!(up.data.iter().all(|&v| (v - 0.25).abs() < 1e-5));
        }
    }

    #[test]
    fn downscale_by_two_bilinear_averages_pairs() {
        // Pillow bilinear 2x downscale: support 2, weights (1/8, 3/8, 3/8, 1/8) inside.
        let img = GrayImage::from_vec(4, 1, vec![0.0, 1.0, 0.0, 1.0]).unwrap();
        let r = img.resize(2, 1, Filter::Bilinear);
        // x=0: inputs 0..3 (center 1): weights over 0,1,2 = 0.75,0.75,0.25 normalised.
        assert!((r.data[0] - (0.75 / 1.75)).abs() < 1e-6, "{:?}", r.data);
    }

    #[test]
    fn crop_takes_the_right_pixels() {
        let img = ramp(6, 4);
        let c = img.crop(2, 1, 3, 2);
        assert_eq!((c.width, c.height), (3, 2));
        assert_eq!(c.get(0, 0), img.get(2, 1));
        assert_eq!(c.get(2, 1), img.get(4, 2));
    }
}
