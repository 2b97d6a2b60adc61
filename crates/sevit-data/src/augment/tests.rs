//! Tests of [`super`] (`augment.rs`).

use super::*;

fn noise(w: u32, h: u32, seed: u64) -> GrayImage {
    let mut rng = rng_for(&[seed]);
    GrayImage::from_vec(w, h, (0..w * h).map(|_| rng.gen::<f32>()).collect()).unwrap()
}

#[test]
fn crops_stay_inside_and_follow_scale_and_ratio() {
    let mut rng = rng_for(&[1]);
    for &(w, h) in &[(256u32, 256u32), (300, 200), (50, 400), (7, 5)] {
        for _ in 0..500 {
            let (top, left, ch, cw) =
                random_resized_crop_params(w, h, [0.2, 0.6], [0.75, 4.0 / 3.0], &mut rng);
            assert!(
                ch >= 1 && cw >= 1 && top + ch <= h && left + cw <= w,
                "{w}x{h}: {top} {left} {ch} {cw}"
            );
        }
    }
    for _ in 0..200 {
        let (_, _, ch, cw) =
            random_resized_crop_params(256, 256, [0.75, 1.0], [0.75, 4.0 / 3.0], &mut rng);
        let frac = (ch * cw) as f64 / 65536.0;
        assert!(frac > 0.7 && frac <= 1.0, "{frac}");
        let ratio = cw as f64 / ch as f64;
        assert!(ratio > 0.74 && ratio < 1.35, "{ratio}");
    }
    // Impossible scale forces the fallback: central crop clamped to the ratio range.
    assert_eq!(
        random_resized_crop_params(100, 400, [2.0, 3.0], [0.75, 4.0 / 3.0], &mut rng),
        (133, 0, 133, 100)
    );
}

#[test]
fn resized_crop_of_constant_is_constant() {
    let img = GrayImage::filled(64, 48, 0.3);
    let v = resized_crop(&img, 5, 7, 30, 20, 16);
    assert_eq!((v.width, v.height), (16, 16));
    assert!(v.data.iter().all(|&x| (x - 0.3).abs() < 1e-5));
}

#[test]
fn flip_twice_is_identity_and_flip_mirrors() {
    let img = noise(9, 4, 2);
    let f = hflip(&img);
    assert_eq!(f.get(0, 1), img.get(8, 1));
    assert_eq!(hflip(&f), img);
}

#[test]
fn rotation_by_zero_is_identity_and_90_matches_transpose() {
    let img = noise(8, 8, 3);
    assert_eq!(rotate(&img, 0.0), img);
    assert_eq!(rotate(&img, 360.0), img);
    let r = rotate(&img, 90.0);
    // Counter-clockwise: output (x, y) = input (w-1-y, x).
    for y in 0..8 {
        for x in 0..8 {
            assert_eq!(r.get(x, y), img.get(7 - y, x), "({x},{y})");
        }
    }
    // Corners are filled with 0 at 45 degrees.
    let ones = GrayImage::filled(16, 16, 1.0);
    let r = rotate(&ones, 45.0);
    assert_eq!(r.get(0, 0), 0.0);
    assert_eq!(r.get(8, 8), 1.0);
}

#[test]
fn autocontrast_spans_unit_interval() {
    let mut img = noise(16, 16, 4);
    img.data.iter_mut().for_each(|v| *v = 0.3 + 0.2 * *v);
    let a = autocontrast(&img);
    let (lo, hi) = a.min_max();
    assert!(lo == 0.0 && (hi - 1.0).abs() < 1e-6);
    let flat = GrayImage::filled(4, 4, 0.5);
    assert_eq!(autocontrast(&flat), flat);
}

#[test]
fn equalization_yields_a_flat_histogram() {
    // A strongly skewed image (sqrt of uniform noise: density 2x), with no large atom in
    // any of the 256 levels.
    let mut img = noise(128, 128, 5);
    img.data.iter_mut().for_each(|v| *v = v.sqrt());
    let mut before = [0usize; 8];
    for &v in &img.data {
        before[((v * 8.0) as usize).min(7)] += 1;
    }
    assert!(before[7] > 5 * before[0], "the input is skewed: {before:?}");
    let e = equalize(&img);
    let mut bins = [0usize; 8];
    for &v in &e.data {
        bins[((v * 8.0) as usize).min(7)] += 1;
    }
    let expect = e.data.len() as f64 / 8.0;
    for b in bins {
        assert!((b as f64 - expect).abs() / expect < 0.1, "{bins:?}");
    }
    // One-level image: only quantised.
    let flat = GrayImage::filled(4, 4, 0.5);
    assert!(equalize(&flat).data.iter().all(|&v| v == 128.0 / 255.0));
}

#[test]
fn blur_preserves_mean_and_constants_and_smooths() {
    // Zero border wider than the blur support: the mean is exactly preserved.
    let mut img = GrayImage::filled(64, 64, 0.0);
    let n = noise(32, 32, 6);
    for y in 0..32 {
        for x in 0..32 {
            img.set(x + 16, y + 16, n.get(x, y));
        }
    }
    for r in [0.1, 0.5, 2.0] {
        let b = gaussian_blur(&img, r);
        assert!((b.mean() - img.mean()).abs() < 1e-5, "radius {r}");
    }
    let c = GrayImage::filled(10, 7, 0.7);
    assert!(gaussian_blur(&c, 1.3)
        .data
        .iter()
        .all(|&v| (v - 0.7).abs() < 1e-5));
    let var = |g: &GrayImage| {
        let m = g.mean();
        g.data.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>()
    };
    assert!(var(&gaussian_blur(&n, 2.0)) < 0.2 * var(&n));
    assert_eq!(gaussian_blur(&n, 0.0), n);
}

#[test]
fn blur_matches_a_gaussian_of_sigma_radius() {
    // Impulse response: variance of the blurred delta = radius^2 (Pillow's construction).
    let mut img = GrayImage::filled(101, 1, 0.0);
    img.set(50, 0, 1.0);
    for r in [0.5f64, 1.0, 2.0] {
        let b = gaussian_blur(&img, r);
        let var: f64 = b
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * (i as f64 - 50.0).powi(2))
            .sum();
        assert!(
            (var - r * r).abs() < 0.02 * r * r + 1e-3,
            "radius {r}: variance {var}"
        );
    }
}

#[test]
fn multi_crop_shapes_ranges_and_determinism() {
    let img = noise(64, 64, 7);
    let cfg = MultiCropConfig {
        global_size: 32,
        local_size: 16,
        n_local: 4,
        ..Default::default()
    };
    let a = multi_crop(&img, &cfg, 42);
    assert_eq!(a.len(), 6);
    assert_eq!((a[0].width, a[1].width, a[2].width), (32, 32, 16));
    for v in &a {
        let (lo, hi) = v.min_max();
        assert!(lo >= 0.0 && hi <= 1.0);
    }
    assert_eq!(a, multi_crop(&img, &cfg, 42));
    assert_ne!(a[1], multi_crop(&img, &cfg, 43)[1]);
    assert_eq!(a[0], img.resize(32, 32, Filter::Bilinear));
}

#[test]
fn crop_config_files_take_a_training_config_its_views_table_or_the_fields() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.toml");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // A whole training config (configs/micro.toml: 32 px global, 16 px local, 2 local).
    let micro = MultiCropConfig::from_toml_file(&repo.join("configs/micro.toml")).unwrap();
    assert_eq!(
        (micro.global_size, micro.local_size, micro.n_local),
        (32, 16, 2)
    );
    for text in [
        "[views]\nglobal_size = 64\nn_local = 4\n",
        "global_size = 64\nn_local = 4\n",
    ] {
        std::fs::write(&p, text).unwrap();
        let c = MultiCropConfig::from_toml_file(&p).unwrap();
        assert_eq!((c.global_size, c.n_local), (64, 4), "{text}");
    }
    std::fs::write(&p, "[views]\nbogus = 1\n").unwrap();
    let e = format!("{:#}", MultiCropConfig::from_toml_file(&p).unwrap_err());
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn config_default_is_distl_and_toml_patches_keep_defaults() {
    let d = MultiCropConfig::default();
    assert_eq!((d.global_size, d.local_size, d.n_local), (256, 128, 8));
    assert_eq!(d.local.scale, [0.2, 0.6]);
    assert_eq!(d.global2.autocontrast_p, 0.3);
    let c: MultiCropConfig = toml::from_str("n_local = 6\n[local]\nblur_p = 0.1\n").unwrap();
    assert_eq!(c.n_local, 6);
    assert_eq!(c.local.blur_p, 0.1);
    assert_eq!(c.local.scale, [0.2, 0.6]);
    assert_eq!(c.global2, ViewAugment::distl_global());
    let round: MultiCropConfig = toml::from_str(&toml::to_string(&d).unwrap()).unwrap();
    assert_eq!(round, d);
    assert!(toml::from_str::<MultiCropConfig>("bogus = 1").is_err());
    let bad = MultiCropConfig {
        local: ViewAugment {
            blur_p: 1.5,
            ..ViewAugment::distl_local()
        },
        ..Default::default()
    };
    assert!(bad.validate().is_err());
}
