//! Attention maps as pictures: DINO-style masks that keep a share of the attention mass
//! ([`mass_mask`]) and one PNG grid per image ([`write_attention_grid`]): the image, the mean
//! attention as a heat map, the mask of the mean attention, and every head's heat map.

use std::path::Path;

use sevit_data::GrayImage;
use sevit_render::overlay::{
    gray_tile, heat_tile, mask_tile, render_grid_png, upsample_bilinear, upsample_nearest,
    GridPage, Tile,
};

use super::model::{AttentionMaps, InferenceModel};

/// The smallest set of patches whose attention sums to at least `keep` of the map's total, as
/// a mask in patch order (DINO's `visualize_attention.py --threshold`: patches sorted by
/// attention, the largest kept until the kept mass reaches the share). Ties are broken by
/// patch index (lower first), so the mask is deterministic. `keep <= 0` keeps nothing,
/// `keep >= 1` keeps every patch with non-zero attention (or all, when the map is all zero).
pub fn mass_mask(values: &[f32], keep: f64) -> Vec<bool> {
    let mut mask = vec![false; values.len()];
    if keep <= 0.0 || values.is_empty() {
        return mask;
    }
    let total: f64 = values.iter().map(|&v| v.max(0.0) as f64).sum();
    if total.is_nan() || total <= 0.0 {
        if keep >= 1.0 {
            mask.iter_mut().for_each(|m| *m = true);
        }
        return mask;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let target = keep.min(1.0) * total;
    let mut acc = 0.0f64;
    for i in order {
        if acc >= target * (1.0 - 1e-12) {
            break;
        }
        let v = values[i].max(0.0) as f64;
        if v == 0.0 {
            break;
        }
        mask[i] = true;
        acc += v;
    }
    mask
}

/// The share of the total attention inside `mask`.
pub fn mass_kept(values: &[f32], mask: &[bool]) -> f64 {
    let total: f64 = values.iter().map(|&v| v.max(0.0) as f64).sum();
    let kept: f64 = values
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(&v, _)| v.max(0.0) as f64)
        .sum();
    if total > 0.0 {
        kept / total
    } else {
        0.0
    }
}

/// Scales a map linearly from its minimum (0) to its maximum (1), as matplotlib's `imsave`
/// does for DINO's attention images; a constant map becomes all 0.
pub fn normalize_min_max(map: &[f32]) -> Vec<f32> {
    let lo = map.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = map.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if hi > lo && (hi - lo).is_finite() {
        map.iter().map(|&v| (v - lo) / (hi - lo)).collect()
    } else {
        vec![0.0; map.len()]
    }
}

/// Options of [`write_attention_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct GridOptions {
    /// Share of the attention mass kept by the mask (DINO `--threshold`, e.g. 0.6).
    pub threshold: f64,
    /// Side of each tile in pixels (images are enlarged to it with nearest neighbour).
    pub tile_size: u32,
    /// Tiles per row; 0 = a near-square grid.
    pub columns: usize,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            threshold: 0.6,
            tile_size: 256,
            columns: 0,
        }
    }
}

/// What [`write_attention_grid`] drew.
pub struct AttentionGrid {
    /// The model's probability of the positive class.
    pub probability: f64,
    /// The maps drawn.
    pub maps: AttentionMaps,
    /// The PNG written.
    pub png: Vec<u8>,
}

/// Draws the attention grid of one loaded image (`image`: as [`InferenceModel::score`]'s
/// input) to `out` (PNG): original, mean attention (heat map), mask keeping
/// `opts.threshold` of the mean attention's mass, then each head; the title gives `title`
/// lines followed by the model's probability.
pub fn write_attention_grid(
    model: &InferenceModel,
    image: &GrayImage,
    title: &[String],
    out: &Path,
    opts: &GridOptions,
) -> anyhow::Result<AttentionGrid> {
    anyhow::ensure!(
        opts.threshold > 0.0 && opts.threshold <= 1.0,
        "the attention mask threshold must be in (0, 1], got {}",
        opts.threshold
    );
    let prob = model.score(std::slice::from_ref(image))?[0];
    let maps = model.attention(image)?;
    let (w, h) = (image.width, image.height);
    let up = |m: &[f32]| {
        upsample_bilinear(
            &normalize_min_max(m),
            maps.grid_w,
            maps.grid_h,
            w as usize,
            h as usize,
        )
    };
    let mean = maps.mean();
    let mask = mass_mask(&mean, opts.threshold);
    let mask_f: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let mask_px: Vec<bool> =
        upsample_nearest(&mask_f, maps.grid_w, maps.grid_h, w as usize, h as usize)
            .iter()
            .map(|&v| v > 0.5)
            .collect();
    let n_heads = maps.heads.len();
    let mut tiles = vec![
        Tile {
            caption: "image".into(),
            image: gray_tile(&image.data, w, h)?,
        },
        Tile {
            caption: format!("mean of {n_heads} heads"),
            image: heat_tile(&image.data, &up(&mean), w, h)?,
        },
        Tile {
            caption: format!(
                "{:.0}% mass: {}/{}",
                opts.threshold * 100.0,
                mask.iter().filter(|&&m| m).count(),
                mask.len()
            ),
            image: mask_tile(&image.data, &mask_px, w, h)?,
        },
    ];
    for (i, head) in maps.heads.iter().enumerate() {
        tiles.push(Tile {
            caption: format!("head {}", i + 1),
            image: heat_tile(&image.data, &up(head), w, h)?,
        });
    }
    let mut lines: Vec<String> = title.to_vec();
    lines.push(format!(
        "P(positive) {prob:.3}, {}x{} patches of {} px",
        maps.grid_w, maps.grid_h, model.model_config.vit.patch_size
    ));
    let page = GridPage {
        title: lines,
        tiles,
        columns: opts.columns,
        tile_size: opts.tile_size.max(w.min(opts.tile_size)),
        colorbar: Some("attention, from each map's minimum (0) to its maximum (1)".into()),
    };
    let png = render_grid_png(out, &page)?;
    tracing::info!(path = %out.display(), prob, "attention grid");
    Ok(AttentionGrid {
        probability: prob,
        maps,
        png,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_the_requested_mass_minimally() {
        // Binary fractions, so every sum below is exact.
        let v = [0.0625f32, 0.5, 0.125, 0.25, 0.0625];
        let m = mass_mask(&v, 0.6);
        // 0.5 + 0.25 = 0.75 >= 0.6; 0.5 alone is not enough.
        assert_eq!(m, vec![false, true, false, true, false]);
        assert!(mass_kept(&v, &m) >= 0.6);
        // Exactly reaching the share stops there.
        assert_eq!(mass_mask(&v, 0.75), m);
        assert_eq!(mass_mask(&v, 0.76), vec![false, true, true, true, false]);
        // Ties (the two 0.0625) are broken by patch index.
        assert_eq!(mass_mask(&v, 0.9), vec![true, true, true, true, false]);
        assert!(mass_mask(&v, 0.0).iter().all(|&b| !b));
        assert!(mass_mask(&v, 1.0).iter().all(|&b| b));
    }

    #[test]
    fn mask_is_minimal_on_random_maps() {
        // Uniform draws in [0, 1) from a seeded hash stream.
        let mut k = 0u64;
        let mut next = || {
            k += 1;
            (sevit_data::rng::derive_seed(&[42, k]) >> 11) as f64 / (1u64 << 53) as f64
        };
        for trial in 0..200 {
            let n = 1 + trial % 37;
            let v: Vec<f32> = (0..n).map(|_| (next() as f32).powi(3)).collect();
            let keep = 0.05 + 0.94 * next();
            let m = mass_mask(&v, keep);
            let kept = mass_kept(&v, &m);
            assert!(kept >= keep - 1e-6, "kept {kept} < {keep}");
            // Minimal: dropping the smallest kept patch falls below the share, and no
            // unkept patch is larger than a kept one.
            let smallest = v
                .iter()
                .zip(&m)
                .filter(|(_, &k)| k)
                .map(|(&x, _)| x)
                .fold(f32::INFINITY, f32::min);
            let total: f64 = v.iter().map(|&x| x as f64).sum();
            assert!(kept - smallest as f64 / total < keep + 1e-9, "not minimal");
            assert!(v
                .iter()
                .zip(&m)
                .filter(|(_, &k)| !k)
                .all(|(&x, _)| x <= smallest));
        }
    }

    #[test]
    fn min_max_scaling() {
        assert_eq!(normalize_min_max(&[0.25, 0.5, 0.75]), vec![0.0, 0.5, 1.0]);
        assert_eq!(normalize_min_max(&[0.3, 0.3]), vec![0.0, 0.0]);
    }

    #[test]
    fn mask_ties_and_zeros() {
        let v = [0.25f32; 4];
        assert_eq!(mass_mask(&v, 0.5), vec![true, true, false, false]);
        assert_eq!(mass_mask(&[0.0f32; 3], 0.5), vec![false; 3]);
        assert_eq!(mass_mask(&[0.0f32; 3], 1.0), vec![true; 3]);
    }
}
