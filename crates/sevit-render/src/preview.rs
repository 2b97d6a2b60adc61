//! A captioned PNG grid of the multi-crop views of one image, to see what training sees: the
//! two global views (`G1` = the image itself, `G2` = the augmented global view), then the local
//! views (`L1`..), drawn with the same grid renderer and font as the attention maps
//! ([`crate::overlay`]).

use std::path::Path;

use anyhow::Result;
use sevit_data::augment::{multi_crop, MultiCropConfig};
use sevit_data::rng::derive_seed;
use sevit_data::{load_gray, GrayImage};

use crate::overlay::{gray_tile, render_grid, render_grid_png, GridPage, Tile};

/// The page of `views` (`[global1, global2, locals..]`) of `image`, drawn with `seed`, in
/// reading order: the two global views, then the local views (enlarged to the global size).
pub fn preview_page(image: &Path, views: &[GrayImage], seed: u64) -> Result<GridPage> {
    let global = views.first().map_or(0, |v| v.width);
    let local = views.get(2).map_or(0, |v| v.width);
    let mut tiles = Vec::with_capacity(views.len());
    for (k, v) in views.iter().enumerate() {
        let caption = match k {
            0 => format!("G1 global {}px", v.width),
            1 => format!("G2 global {}px", v.width),
            _ => format!("L{} local {}px", k - 1, v.width),
        };
        tiles.push(Tile {
            caption,
            image: gray_tile(&v.data, v.width, v.height)?,
        });
    }
    let n_local = views.len().saturating_sub(2);
    Ok(GridPage {
        title: vec![
            format!("training views of {}", image.display()),
            format!(
                "seed {seed}: 2 global views of {global} px, {n_local} local views of {local} px"
            ),
        ],
        columns: n_local.div_ceil(2).max(2),
        tiles,
        tile_size: global.max(96),
        colorbar: None,
    })
}

fn views_of(image: &Path, crop: &MultiCropConfig, seed: u64) -> Result<Vec<GrayImage>> {
    crop.validate()?;
    let img = load_gray(image, crop.global_size)?;
    Ok(multi_crop(&img, crop, derive_seed(&[seed, 0, 0])))
}

/// Loads `image`, makes its views with `seed` (the loader's draw for epoch 0, index 0 of a run
/// with that seed) and returns the grid.
pub fn augment_preview(image: &Path, crop: &MultiCropConfig, seed: u64) -> Result<image::RgbImage> {
    let views = views_of(image, crop, seed)?;
    render_grid(&preview_page(image, &views, seed)?)
}

/// [`augment_preview`] written to `out` as PNG (atomically).
pub fn write_augment_preview(
    image: &Path,
    out: &Path,
    crop: &MultiCropConfig,
    seed: u64,
) -> Result<()> {
    let views = views_of(image, crop, seed)?;
    render_grid_png(out, &preview_page(image, &views, seed)?).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_every_view_captioned() {
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
        let views = views_of(&p, &crop, 1).unwrap();
        let page = preview_page(&p, &views, 1).unwrap();
        let captions: Vec<&str> = page.tiles.iter().map(|t| t.caption.as_str()).collect();
        assert_eq!(captions.len(), 10);
        assert_eq!(captions[0], "G1 global 32px");
        assert_eq!(captions[2], "L1 local 16px");
        assert_eq!(captions[9], "L8 local 16px");
        assert_eq!(page.columns, 4);
        let out = d.path().join("grid.png");
        write_augment_preview(&p, &out, &crop, 1).unwrap();
        let g = image::open(&out).unwrap().to_rgb8();
        // the same seed draws the same views
        assert_eq!(augment_preview(&p, &crop, 1).unwrap(), g);
        assert_ne!(augment_preview(&p, &crop, 2).unwrap(), g);
    }
}
