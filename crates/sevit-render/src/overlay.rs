//! Heat-map overlays and titled image grids, rendered to PNG in pure Rust (attention maps of
//! `sevit visualize` and `sevit predict --attention`).
//!
//! * [`upsample_nearest`], [`upsample_bilinear`]: a patch-grid map to image resolution.
//! * [`colormap`]: the "jet"-style blue → cyan → green → yellow → red scale of heat maps.
//! * [`gray_tile`], [`heat_tile`], [`mask_tile`]: one tile each (the image, the image under a
//!   heat map, the image with a kept region highlighted and the rest dimmed).
//! * [`GridPage`] + [`render_grid_png`]: tiles in a grid, each with a caption, a page title and
//!   an optional labelled colour bar; text uses the DejaVu Sans font embedded by
//!   [`crate::plot`], so no system font is needed. Written atomically.

use std::path::Path;

use anyhow::Context;
use image::{Rgb, RgbImage};
use plotters::prelude::*;

use sevit_metrics::io::write_atomic;

use crate::font::{ensure_font, FONT};

/// Upsamples a row-major `gw x gh` map to `w x h` by nearest neighbour (each patch becomes a
/// block, as DINO's `interpolate(..., mode="nearest")`).
pub fn upsample_nearest(map: &[f32], gw: usize, gh: usize, w: usize, h: usize) -> Vec<f32> {
    assert_eq!(map.len(), gw * gh, "map size does not match its grid");
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let gy = (y * gh / h).min(gh - 1);
        for x in 0..w {
            let gx = (x * gw / w).min(gw - 1);
            out.push(map[gy * gw + gx]);
        }
    }
    out
}

/// Upsamples a row-major `gw x gh` map to `w x h` bilinearly (cell centres aligned, edges
/// clamped), for smooth heat maps.
pub fn upsample_bilinear(map: &[f32], gw: usize, gh: usize, w: usize, h: usize) -> Vec<f32> {
    assert_eq!(map.len(), gw * gh, "map size does not match its grid");
    let coord = |i: usize, n: usize, gn: usize| -> (usize, usize, f32) {
        let g = ((i as f32 + 0.5) * gn as f32 / n as f32 - 0.5).clamp(0.0, (gn - 1) as f32);
        let g0 = g.floor() as usize;
        let g1 = (g0 + 1).min(gn - 1);
        (g0, g1, g - g0 as f32)
    };
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let (y0, y1, fy) = coord(y, h, gh);
        for x in 0..w {
            let (x0, x1, fx) = coord(x, w, gw);
            let top = map[y0 * gw + x0] * (1.0 - fx) + map[y0 * gw + x1] * fx;
            let bot = map[y1 * gw + x0] * (1.0 - fx) + map[y1 * gw + x1] * fx;
            out.push(top * (1.0 - fy) + bot * fy);
        }
    }
    out
}

/// Scales a map to `[0, 1]` by its maximum (a map of zeros stays zero); negative values are 0.
pub fn normalize_by_max(map: &[f32]) -> Vec<f32> {
    let max = map.iter().cloned().fold(0.0f32, f32::max);
    if max > 0.0 && max.is_finite() {
        map.iter().map(|&v| (v / max).clamp(0.0, 1.0)).collect()
    } else {
        vec![0.0; map.len()]
    }
}

/// The heat-map colour of `v` in `[0, 1]`: blue (0) → cyan → green → yellow → red (1).
pub fn colormap(v: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 0.6],
        [0.0, 0.75, 1.0],
        [0.1, 0.85, 0.2],
        [1.0, 0.9, 0.0],
        [0.85, 0.0, 0.0],
    ];
    let t = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let mut out = [0u8; 3];
    for c in 0..3 {
        let x = STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f;
        out[c] = (x * 255.0).round().clamp(0.0, 255.0) as u8;
    }
    out
}

fn to_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

fn check_size(what: &str, len: usize, w: u32, h: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        len == w as usize * h as usize,
        "{what} has {len} values, expected {w}x{h} = {}",
        w as usize * h as usize
    );
    Ok(())
}

/// The gray image (`[0, 1]`, row-major `w x h`) as an RGB tile.
pub fn gray_tile(gray: &[f32], w: u32, h: u32) -> anyhow::Result<RgbImage> {
    check_size("image", gray.len(), w, h)?;
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let g = to_u8(gray[(y * w + x) as usize]);
        Rgb([g, g, g])
    }))
}

/// The gray image under a heat map (`heat` in `[0, 1]`, same size): each pixel blends the
/// [`colormap`] colour with opacity `0.25 + 0.45·heat`, so low-attention anatomy stays visible.
pub fn heat_tile(gray: &[f32], heat: &[f32], w: u32, h: u32) -> anyhow::Result<RgbImage> {
    check_size("image", gray.len(), w, h)?;
    check_size("heat map", heat.len(), w, h)?;
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let g = gray[i].clamp(0.0, 1.0);
        let v = heat[i].clamp(0.0, 1.0);
        let c = colormap(v);
        let a = 0.25 + 0.45 * v;
        let mix = |k: usize| to_u8(g * (1.0 - a) + c[k] as f32 / 255.0 * a);
        Rgb([mix(0), mix(1), mix(2)])
    }))
}

/// The gray image with the pixels where `mask` is true tinted orange and the others dimmed to
/// 40 %, so the kept region stands out.
pub fn mask_tile(gray: &[f32], mask: &[bool], w: u32, h: u32) -> anyhow::Result<RgbImage> {
    check_size("image", gray.len(), w, h)?;
    check_size("mask", mask.len(), w, h)?;
    const TINT: [f32; 3] = [1.0, 0.55, 0.0];
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let g = gray[i].clamp(0.0, 1.0);
        if mask[i] {
            let mix = |k: usize| to_u8(g * 0.6 + TINT[k] * 0.4);
            Rgb([mix(0), mix(1), mix(2)])
        } else {
            let d = to_u8(g * 0.4);
            Rgb([d, d, d])
        }
    }))
}

/// One captioned image of a [`GridPage`].
#[derive(Debug, Clone)]
pub struct Tile {
    /// Caption drawn above the image.
    pub caption: String,
    /// The image (every tile of a page is drawn at the page's tile size).
    pub image: RgbImage,
}

/// A page of captioned tiles in a grid, with a title and an optional colour bar.
#[derive(Debug, Clone)]
pub struct GridPage {
    /// Title lines at the top of the page.
    pub title: Vec<String>,
    /// The tiles, row by row.
    pub tiles: Vec<Tile>,
    /// Tiles per row; 0 chooses a near-square grid (`ceil(sqrt(tiles))` columns).
    pub columns: usize,
    /// Side of each tile in pixels (tiles are resized to it, nearest neighbour when enlarging).
    pub tile_size: u32,
    /// A [`colormap`] colour bar at the bottom with this caption (e.g. "attention, share of the
    /// map's maximum"), labelled 0 and 1 at its ends.
    pub colorbar: Option<String>,
}

const MARGIN: u32 = 16;
const GAP: u32 = 12;
const TITLE_LINE: u32 = 30;
const CAPTION: u32 = 26;
const BAR: u32 = 60;

/// Renders `page` to `path` as PNG, atomically. Title lines and captions too wide for the
/// page or the tile are shortened from the left with an ellipsis.
///
/// Returns the PNG bytes written (to embed them elsewhere without reading the file back).
///
/// # Errors
/// A page without tiles, a zero tile size, or a drawing/I-O failure.
pub fn render_grid_png(path: &Path, page: &GridPage) -> anyhow::Result<Vec<u8>> {
    let png = render_grid(page).with_context(|| format!("drawing {}", path.display()))?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    png.write_to(&mut bytes, image::ImageFormat::Png)
        .context("encoding PNG")?;
    write_atomic(path, bytes.get_ref()).with_context(|| format!("saving {}", path.display()))?;
    tracing::debug!(path = %path.display(), "wrote image grid");
    Ok(bytes.into_inner())
}

/// Renders `page` into an RGB image (see [`render_grid_png`]).
pub fn render_grid(page: &GridPage) -> anyhow::Result<RgbImage> {
    anyhow::ensure!(
        !page.tiles.is_empty(),
        "an image grid needs at least one tile"
    );
    anyhow::ensure!(page.tile_size > 0, "the tile size must be positive");
    ensure_font()?;
    let columns = if page.columns == 0 {
        (page.tiles.len() as f64).sqrt().ceil() as usize
    } else {
        page.columns
    };
    let cols = columns.min(page.tiles.len()) as u32;
    let rows = page.tiles.len().div_ceil(columns) as u32;
    let t = page.tile_size;
    let title_h = page.title.len() as u32 * TITLE_LINE + if page.title.is_empty() { 0 } else { 8 };
    let bar_h = if page.colorbar.is_some() { BAR } else { 0 };
    let width = (2 * MARGIN + cols * t + (cols - 1) * GAP).max(520);
    let height = 2 * MARGIN + title_h + rows * (CAPTION + t) + (rows - 1) * GAP + bar_h;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));

    let origin = |k: u32| -> (u32, u32) {
        let (r, c) = (k / cols, k % cols);
        (
            MARGIN + c * (t + GAP),
            MARGIN + title_h + r * (CAPTION + t + GAP),
        )
    };
    for (k, tile) in page.tiles.iter().enumerate() {
        let img = if tile.image.dimensions() == (t, t) {
            tile.image.clone()
        } else {
            let filter = if tile.image.width() < t {
                image::imageops::FilterType::Nearest
            } else {
                image::imageops::FilterType::Triangle
            };
            image::imageops::resize(&tile.image, t, t, filter)
        };
        let (x0, y0) = origin(k as u32);
        image::imageops::replace(&mut canvas, &img, x0 as i64, (y0 + CAPTION) as i64);
    }
    let bar_top = height - MARGIN - bar_h + 6;
    let bar_w = (width - 2 * MARGIN).min(480);
    let bar_x0 = (width - bar_w) / 2;
    if page.colorbar.is_some() {
        for x in 0..bar_w {
            let c = colormap(x as f32 / (bar_w - 1).max(1) as f32);
            for y in 0..16 {
                canvas.put_pixel(bar_x0 + x, bar_top + 22 + y, Rgb(c));
            }
        }
    }

    let (w, h) = canvas.dimensions();
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let perr = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing text: {e}");
        // Shortens `text` from the left with an ellipsis until it fits `max_w` pixels.
        let fit = |text: &str, style: &TextStyle, max_w: u32| -> String {
            let width = |t: &str| {
                root.estimate_text_size(t, style)
                    .map(|(w, _)| w)
                    .unwrap_or(0)
            };
            if width(text) <= max_w {
                return text.to_string();
            }
            let chars: Vec<char> = text.chars().collect();
            for start in 1..chars.len() {
                let t: String = std::iter::once('…')
                    .chain(chars[start..].iter().copied())
                    .collect();
                if width(&t) <= max_w {
                    return t;
                }
            }
            "…".to_string()
        };
        let title_style = TextStyle::from((FONT, 22).into_font()).color(&BLACK);
        for (i, line) in page.title.iter().enumerate() {
            let line = fit(line, &title_style, width - 2 * MARGIN);
            root.draw_text(
                &line,
                &title_style,
                (MARGIN as i32, (MARGIN + i as u32 * TITLE_LINE) as i32),
            )
            .map_err(perr)?;
        }
        let cap_style = TextStyle::from((FONT, 17).into_font()).color(&BLACK);
        for (k, tile) in page.tiles.iter().enumerate() {
            let (x0, y0) = origin(k as u32);
            let caption = fit(&tile.caption, &cap_style, t + GAP / 2);
            root.draw_text(&caption, &cap_style, (x0 as i32, (y0 + 3) as i32))
                .map_err(perr)?;
        }
        if let Some(caption) = &page.colorbar {
            let small = TextStyle::from((FONT, 16).into_font()).color(&BLACK);
            root.draw_text(caption, &small, (bar_x0 as i32, bar_top as i32))
                .map_err(perr)?;
            let y = (bar_top + 22) as i32;
            root.draw_text("0", &small, (bar_x0 as i32 - 14, y))
                .map_err(perr)?;
            root.draw_text("1", &small, ((bar_x0 + bar_w) as i32 + 5, y))
                .map_err(perr)?;
        }
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing text: {e}"))?;
    }
    RgbImage::from_raw(w, h, buf).context("RGB buffer of the wrong size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling() {
        let m = [0.0, 1.0, 2.0, 3.0];
        let n = upsample_nearest(&m, 2, 2, 4, 4);
        assert_eq!(&n[0..4], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(&n[12..16], &[2.0, 2.0, 3.0, 3.0]);
        let b = upsample_bilinear(&m, 2, 2, 4, 4);
        assert_eq!(b[0], 0.0); // corner clamped to the first cell centre
        assert_eq!(b[15], 3.0);
        assert!(b[1] > 0.0 && b[1] < 1.0);
        // Same size: identity.
        assert_eq!(upsample_bilinear(&m, 2, 2, 2, 2), m.to_vec());
        assert_eq!(normalize_by_max(&[1.0, 2.0, 4.0]), vec![0.25, 0.5, 1.0]);
        assert_eq!(normalize_by_max(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn colormap_ends() {
        assert_eq!(colormap(0.0), [0, 0, 153]);
        assert_eq!(colormap(1.0), [217, 0, 0]);
        assert_eq!(colormap(-3.0), colormap(0.0));
        let mid = colormap(0.5);
        assert!(
            mid[1] > mid[0] && mid[1] > mid[2],
            "green in the middle: {mid:?}"
        );
    }

    #[test]
    fn tiles_and_grid() {
        let (w, h) = (8u32, 8u32);
        let gray: Vec<f32> = (0..64).map(|i| i as f32 / 63.0).collect();
        let heat: Vec<f32> = (0..64).map(|i| if i < 32 { 0.0 } else { 1.0 }).collect();
        let mask: Vec<bool> = (0..64).map(|i| i % 2 == 0).collect();
        let g = gray_tile(&gray, w, h).unwrap();
        assert_eq!(g.get_pixel(7, 7), &Rgb([255, 255, 255]));
        let ht = heat_tile(&gray, &heat, w, h).unwrap();
        assert!(
            ht.get_pixel(0, 7)[0] > ht.get_pixel(0, 7)[2],
            "hot rows are red"
        );
        let mt = mask_tile(&gray, &mask, w, h).unwrap();
        let kept = mt.get_pixel(6, 7);
        let dimmed = mt.get_pixel(7, 7);
        assert!(kept[0] > dimmed[0]);
        assert!(heat_tile(&gray, &heat[..10], w, h).is_err());

        let page = GridPage {
            title: vec!["case.png".into(), "P = 0.9".into()],
            tiles: vec![
                Tile {
                    caption: "original".into(),
                    image: g,
                },
                Tile {
                    caption: "mean".into(),
                    image: ht,
                },
                Tile {
                    caption: "mask".into(),
                    image: mt,
                },
            ],
            columns: 2,
            tile_size: 64,
            colorbar: Some("attention".into()),
        };
        let img = render_grid(&page).unwrap();
        assert_eq!(
            img.height(),
            2 * MARGIN + 2 * TITLE_LINE + 8 + 2 * (CAPTION + 64) + GAP + BAR
        );
        // Some text was drawn in the title area (dark pixels on the white margin).
        let dark = (0..img.width()).flat_map(|x| (MARGIN..MARGIN + 20).map(move |y| (x, y)));
        assert!(dark.into_iter().any(|(x, y)| img.get_pixel(x, y)[0] < 100));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        render_grid_png(&p, &page).unwrap();
        assert_eq!(image::open(&p).unwrap().width(), img.width());
        // Auto columns: 3 tiles -> 2 columns; a very long title still renders.
        let auto = GridPage {
            columns: 0,
            title: vec!["x".repeat(400)],
            ..page.clone()
        };
        assert_eq!(render_grid(&auto).unwrap().width(), img.width());
        assert!(render_grid(&GridPage {
            tiles: vec![],
            ..page
        })
        .is_err());
    }
}
