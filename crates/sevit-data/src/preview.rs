//! A labelled PNG grid of the multi-crop views of one image, to see what training sees.
//!
//! Layout: the two global views side by side on top (`G1` = the image itself, `G2` = the
//! augmented global view), the local views (`L1`..) below in two rows; tiles separated by a gray
//! gutter; each tile labelled in its top-left corner with a small built-in bitmap font.

use crate::augment::{multi_crop, MultiCropConfig};
use crate::gray::GrayImage;
use crate::load::load_gray;
use crate::rng::derive_seed;
use anyhow::{Context, Result};
use std::path::Path;

const GAP: u32 = 6;

/// 3x5 glyphs (rows top to bottom, 3 bits each, MSB = left) for `0-9`, `G`, `L`.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'G' => [7, 4, 5, 5, 7],
        'L' => [4, 4, 4, 4, 7],
        _ => return None,
    })
}

/// Draws `text` at `(x0, y0)` with pixel `scale`, white on a black box.
fn draw_label(canvas: &mut image::GrayImage, x0: u32, y0: u32, text: &str, scale: u32) {
    let n = text.chars().count() as u32;
    let (bw, bh) = ((4 * n + 1) * scale, 7 * scale);
    for y in y0..(y0 + bh).min(canvas.height()) {
        for x in x0..(x0 + bw).min(canvas.width()) {
            canvas.put_pixel(x, y, image::Luma([0]));
        }
    }
    for (k, c) in text.chars().enumerate() {
        let Some(g) = glyph(c) else { continue };
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3u32 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let x = x0 + (1 + 4 * k as u32 + col) * scale + dx;
                            let y = y0 + (1 + row as u32) * scale + dy;
                            if x < canvas.width() && y < canvas.height() {
                                canvas.put_pixel(x, y, image::Luma([255]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Arranges `views` (`[global1, global2, locals..]`) into one labelled 8-bit image.
pub fn grid(views: &[GrayImage]) -> image::GrayImage {
    let g = views[0]
        .width
        .max(views.get(1).map(|v| v.width).unwrap_or(0));
    let l = views.iter().skip(2).map(|v| v.width).max().unwrap_or(0);
    let n_local = views.len().saturating_sub(2) as u32;
    // Locals in (at most) two rows, or as many rows as fit the width of the global row.
    let top_width = GAP + 2 * (g + GAP);
    let per_row = n_local
        .div_ceil(2)
        .max(((top_width - GAP) / (l + GAP).max(1)).min(n_local))
        .max(1);
    let width = top_width.max(GAP + per_row * (l + GAP));
    let local_rows = n_local.div_ceil(per_row);
    let height = GAP + g + GAP + local_rows * (l + GAP);
    let mut canvas = image::GrayImage::from_pixel(width, height, image::Luma([96]));
    let scale = (g / 64).clamp(1, 3);
    let mut place = |v: &GrayImage, x0: u32, y0: u32, label: &str| {
        let img = v.to_luma8();
        for y in 0..img.height() {
            for x in 0..img.width() {
                canvas.put_pixel(x0 + x, y0 + y, *img.get_pixel(x, y));
            }
        }
        draw_label(&mut canvas, x0, y0, label, scale);
    };
    for (k, v) in views.iter().take(2).enumerate() {
        place(v, GAP + k as u32 * (g + GAP), GAP, &format!("G{}", k + 1));
    }
    for (k, v) in views.iter().skip(2).enumerate() {
        let (row, col) = (k as u32 / per_row, k as u32 % per_row);
        place(
            v,
            GAP + col * (l + GAP),
            2 * GAP + g + row * (l + GAP),
            &format!("L{}", k + 1),
        );
    }
    canvas
}

/// Loads `image`, makes its views with `seed` (the loader's draw for epoch 0, index 0 of a
/// run with that seed) and returns the labelled grid.
pub fn augment_preview(
    image: &Path,
    crop: &MultiCropConfig,
    seed: u64,
) -> Result<image::GrayImage> {
    crop.validate()?;
    let img = load_gray(image, crop.global_size)?;
    let views = multi_crop(&img, crop, derive_seed(&[seed, 0, 0]));
    Ok(grid(&views))
}

/// [`augment_preview`] written to `out` as PNG (atomically).
pub fn write_augment_preview(
    image: &Path,
    out: &Path,
    crop: &MultiCropConfig,
    seed: u64,
) -> Result<()> {
    let g = augment_preview(image, crop, seed)?;
    crate::util::write_png_atomic(out, &g)
        .with_context(|| format!("writing preview {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_all_tiles_and_labels() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.png");
        image::GrayImage::from_fn(40, 40, |x, y| image::Luma([(x * 6 + y) as u8]))
            .save(&p)
            .unwrap();
        let crop = MultiCropConfig {
            global_size: 32,
            local_size: 16,
            n_local: 8,
            ..Default::default()
        };
        let out = d.path().join("grid.png");
        write_augment_preview(&p, &out, &crop, 1).unwrap();
        let g = image::open(&out).unwrap().to_luma8();
        // Global row: 6 + 2 * 38 = 82 wide; 8 locals in 2 rows of 4: 6 + 4 * 22 = 94 wide.
        assert_eq!(g.width(), 94);
        assert_eq!(g.height(), 6 + 32 + 6 + 2 * 22);
        // Label box of G1 at the top-left of the first tile: black box with white strokes.
        assert_eq!(g.get_pixel(GAP, GAP)[0], 0);
        assert_eq!(g.get_pixel(GAP + 1, GAP + 1)[0], 255);
        assert_eq!(augment_preview(&p, &crop, 1).unwrap(), g);
    }
}
