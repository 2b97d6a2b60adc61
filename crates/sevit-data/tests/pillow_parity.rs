//! Parity of the individual transforms with Pillow (the library torchvision uses on PIL
//! images), run through `$SEVIT_TORCH_PYTHON` when that interpreter has Pillow; skipped with a
//! printed note otherwise. Pillow works on 8-bit images, so results are compared to within its
//! rounding (and, for nearest-neighbour rotation, allowing a few boundary pixels to differ).

use sevit_data::augment::{autocontrast, equalize, gaussian_blur, hflip, resized_crop, rotate};
use sevit_data::GrayImage;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = r#"
import sys
from PIL import Image, ImageOps, ImageFilter
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("L")
res = {
    "rotate": im.rotate(13.7, resample=Image.NEAREST, fillcolor=0),
    "rotate_neg": im.rotate(-8.2, resample=Image.NEAREST, fillcolor=0),
    "equalize": ImageOps.equalize(im),
    "autocontrast": ImageOps.autocontrast(im),
    "blur": im.filter(ImageFilter.GaussianBlur(radius=1.3)),
    "blur_small": im.filter(ImageFilter.GaussianBlur(radius=0.5)),
    "crop_bicubic": im.crop((5, 3, 5 + 30, 3 + 22)).resize((24, 24), Image.BICUBIC),
    "up_bicubic": im.crop((2, 2, 2 + 14, 2 + 12)).resize((32, 32), Image.BICUBIC),
    "flip": im.transpose(Image.FLIP_LEFT_RIGHT),
}
for k, v in res.items():
    v.save(f"{out}/{k}.png")
"#;

fn gray8(path: &Path) -> GrayImage {
    let im = image::open(path).unwrap().to_luma8();
    GrayImage::from_vec(
        im.width(),
        im.height(),
        im.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
    )
    .unwrap()
}

/// (max abs difference in 8-bit levels, share of pixels differing by more than `tol` levels).
fn compare(ours: &GrayImage, pil: &GrayImage, tol: f32) -> (f32, f64) {
    assert_eq!((ours.width, ours.height), (pil.width, pil.height));
    let mut max = 0f32;
    let mut bad = 0usize;
    for (a, b) in ours.data.iter().zip(&pil.data) {
        let d = (a - b).abs() * 255.0;
        max = max.max(d);
        if d > tol {
            bad += 1;
        }
    }
    (max, bad as f64 / ours.data.len() as f64)
}

#[test]
fn transforms_match_pillow() {
    let Ok(py) = std::env::var("SEVIT_TORCH_PYTHON") else {
        eprintln!("note: SEVIT_TORCH_PYTHON not set; skipping the Pillow parity test");
        return;
    };
    let has_pil = Command::new(&py)
        .args(["-c", "import PIL"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_pil {
        eprintln!("note: {py} has no Pillow (bench/torchvision_augment.py installs it); skipping the Pillow parity test");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.png");
    // A 40x32 test pattern: gradient + bright block + pseudo-random texture, skewed histogram.
    let img = image::GrayImage::from_fn(40, 32, |x, y| {
        let t = (x * 37 + y * 91) % 23;
        let base = (x * 3 + y * 2 + t * 2).min(200);
        let block = if (10..18).contains(&x) && (8..20).contains(&y) {
            50
        } else {
            0
        };
        image::Luma([(base + block).min(255) as u8])
    });
    img.save(&src).unwrap();
    let status = Command::new(&py)
        .args([
            "-c",
            SCRIPT,
            src.to_str().unwrap(),
            d.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let ours_in = gray8(&src);
    let pil = |k: &str| gray8(&d.path().join(format!("{k}.png")));

    let (max, share) = compare(&rotate(&ours_in, 13.7), &pil("rotate"), 0.5);
    eprintln!("rotate 13.7: max {max} levels, {share} of pixels differ");
    assert!(share < 0.02, "rotate: {share} of pixels differ (max {max})");
    let (max, share) = compare(&rotate(&ours_in, -8.2), &pil("rotate_neg"), 0.5);
    assert!(
        share < 0.02,
        "rotate -8.2: {share} of pixels differ (max {max})"
    );
    let (max, _) = compare(&equalize(&ours_in), &pil("equalize"), 0.5);
    eprintln!("equalize: max {max} levels");
    assert!(max < 0.5, "equalize differs by {max} levels");
    // Pillow truncates the autocontrast LUT to integers: within 1 level.
    let (max, _) = compare(&autocontrast(&ours_in), &pil("autocontrast"), 1.0);
    assert!(max <= 1.0 + 1e-3, "autocontrast differs by {max} levels");
    // Pillow rounds to 8 bit after every box pass: within 2 levels.
    let (max, _) = compare(&gaussian_blur(&ours_in, 1.3), &pil("blur"), 2.0);
    eprintln!("blur 1.3: max {max} levels");
    assert!(max <= 2.0 + 1e-3, "blur 1.3 differs by {max} levels");
    let (max, _) = compare(&gaussian_blur(&ours_in, 0.5), &pil("blur_small"), 2.0);
    assert!(max <= 2.0 + 1e-3, "blur 0.5 differs by {max} levels");
    let (max, _) = compare(
        &resized_crop(&ours_in, 3, 5, 22, 30, 24),
        &pil("crop_bicubic"),
        1.0,
    );
    eprintln!("bicubic crop: max {max} levels");
    assert!(
        max <= 1.0 + 1e-3,
        "bicubic downscale differs by {max} levels"
    );
    let (max, _) = compare(
        &resized_crop(&ours_in, 2, 2, 12, 14, 32),
        &pil("up_bicubic"),
        1.0,
    );
    assert!(max <= 1.0 + 1e-3, "bicubic upscale differs by {max} levels");
    let (max, _) = compare(&hflip(&ours_in), &pil("flip"), 0.0);
    assert_eq!(max, 0.0);
}
