//! Every plot writes a PNG of the expected size that is not blank and has text in its axis
//! label areas (so the embedded font rendered). Set `SEVIT_METRICS_PLOT_DIR` to keep the
//! images for a look.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sevit_metrics::{calibration, delong_ci, roc_curve, NuisanceTable};
use sevit_render::plot::{
    auc_vs_t_png, line_png, nuisance_png, reliability_png, roc_png, LinePlot, RocSeries, Series,
    SeriesPoint, PLOT_SIZE,
};

struct Out {
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
}

fn out_dir(name: &str) -> Out {
    match std::env::var_os("SEVIT_METRICS_PLOT_DIR") {
        Some(d) => {
            let dir = PathBuf::from(d).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            Out { _tmp: None, dir }
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let dir = t.path().to_path_buf();
            Out { _tmp: Some(t), dir }
        }
    }
}

/// Simulated probabilities of a model with separation `shift`.
fn model(seed: u64, n: usize, shift: f64) -> (Vec<bool>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<bool> = (0..n).map(|i| i % 5 < 2).collect();
    let probs = labels
        .iter()
        .map(|&l| {
            let z: f64 = (0..6).map(|_| rng.gen::<f64>()).sum::<f64>() - 3.0; // ~N(0, 0.5)
            1.0 / (1.0 + (-(z * 2.0 + if l { shift } else { -shift })).exp())
        })
        .collect();
    (labels, probs)
}

/// Decodes the PNG and checks size, that it is not blank, and that the strips where the axis
/// descriptions live (left edge, bottom edge) contain dark (text) pixels.
fn check_png(path: &Path) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), PLOT_SIZE, "{}", path.display());
    let (w, h) = img.dimensions();
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        non_white > (w * h / 50) as usize,
        "{}: only {non_white} non-background pixels",
        path.display()
    );
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1)
            .flat_map(|x| (y0..y1).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count()
    };
    // Rotated y-axis description: the leftmost 50 px, middle half of the height.
    assert!(
        dark(0, 50, h / 4, 3 * h / 4) > 100,
        "{}: no y-axis label text",
        path.display()
    );
    // x-axis description: the bottom 40 px, middle half of the width.
    assert!(
        dark(w / 4, 3 * w / 4, h - 40, h) > 100,
        "{}: no x-axis label text",
        path.display()
    );
    // Title: the top 50 px.
    assert!(
        dark(w / 4, 3 * w / 4, 0, 50) > 100,
        "{}: no title text",
        path.display()
    );
}

#[test]
fn roc_plot() {
    let out = out_dir("roc");
    let mut curves = Vec::new();
    for (label, seed, shift) in [("DISTL T=3", 1, 1.2), ("supervised", 2, 0.7)] {
        let (labels, probs) = model(seed, 300, shift);
        curves.push(RocSeries {
            label: label.to_string(),
            points: roc_curve(&labels, &probs).unwrap(),
            ci: delong_ci(&labels, &probs, 0.95).unwrap(),
        });
    }
    let path = out.dir.join("roc.png");
    roc_png(&path, "ROC, test split", &curves).unwrap();
    check_png(&path);
    assert!(roc_png(&out.dir.join("empty.png"), "x", &[]).is_err());
}

fn t_series(label: &str, base: f64, gain: f64) -> Series {
    Series {
        label: label.to_string(),
        points: (0..=4)
            .map(|t| {
                let y = base + gain * (1.0 - (-(t as f64) / 2.0).exp());
                SeriesPoint {
                    x: t as f64,
                    y,
                    lower: Some(y - 0.04),
                    upper: Some((y + 0.04).min(1.0)),
                }
            })
            .collect(),
    }
}

#[test]
fn auc_vs_t_plot() {
    let out = out_dir("auc_vs_t");
    let series = [
        t_series("DISTL", 0.78, 0.1),
        t_series("supervised (labeled only)", 0.78, 0.0),
    ];
    let path = out.dir.join("auc_vs_t.png");
    auc_vs_t_png(&path, "AUC by DISTL step", &series).unwrap();
    check_png(&path);
}

#[test]
fn nuisance_plot() {
    let out = out_dir("nuisance");
    let mut table = NuisanceTable::new();
    for (model, seed, shift) in [("DISTL", 10, 1.2), ("supervised", 20, 1.0)] {
        for (kind, k) in [("noise", 0.5), ("blur", 0.3)] {
            for s in 0..4 {
                let severity = s as f64 * 0.25;
                let (labels, probs) = model_fn(seed + s, shift - k * severity * 2.0);
                table.push(
                    model,
                    kind,
                    severity,
                    &delong_ci(&labels, &probs, 0.95).unwrap(),
                );
            }
        }
    }
    let csv = out.dir.join("nuisance.csv");
    table.write_csv(&csv).unwrap();
    assert_eq!(NuisanceTable::read_csv(&csv).unwrap(), table);
    let path = out.dir.join("nuisance.png");
    sevit_render::plot::nuisance_table_png(&table, &path, "AUC under nuisances").unwrap();
    check_png(&path);
    let path = out.dir.join("nuisance_generic.png");
    let series = sevit_render::plot::nuisance_series(&table);
    nuisance_png(&path, "AUC under noise", &series[..1]).unwrap();
    check_png(&path);
    // one series per (model, kind) in first-seen order, points sorted by severity
    assert_eq!(series.len(), 4);
    assert_eq!(series[0].label, "DISTL: noise");
    assert_eq!(series[2].label, "supervised: noise");
    assert_eq!(
        series[0].points.iter().map(|p| p.x).collect::<Vec<_>>(),
        vec![0.0, 0.25, 0.5, 0.75]
    );
}

fn model_fn(seed: u64, shift: f64) -> (Vec<bool>, Vec<f64>) {
    model(seed, 200, shift)
}

#[test]
fn reliability_plot() {
    let out = out_dir("reliability");
    let (l1, p1) = model(5, 500, 1.2);
    let (l2, p2) = model(6, 500, 0.6);
    let p2: Vec<f64> = p2.iter().map(|p| p * p).collect(); // miscalibrated
    let series = [
        ("DISTL".to_string(), calibration(&l1, &p1, 10).unwrap()),
        ("supervised".to_string(), calibration(&l2, &p2, 10).unwrap()),
    ];
    let path = out.dir.join("reliability.png");
    reliability_png(&path, "Reliability diagram", &series).unwrap();
    check_png(&path);
}

#[test]
fn line_plot_rejects_bad_input() {
    let out = out_dir("bad");
    let empty = Series {
        label: "e".into(),
        points: vec![],
    };
    assert!(auc_vs_t_png(&out.dir.join("a.png"), "t", &[empty]).is_err());
    let nan = Series {
        label: "n".into(),
        points: vec![SeriesPoint {
            x: 0.0,
            y: f64::NAN,
            lower: None,
            upper: None,
        }],
    };
    let err = auc_vs_t_png(&out.dir.join("b.png"), "t", &[nan]).unwrap_err();
    assert!(err.to_string().contains("non-finite"), "{err}");
    assert!(!out.dir.join("b.png").exists());
    let one = Series {
        label: "one".into(),
        points: vec![SeriesPoint {
            x: 1.0,
            y: 0.8,
            lower: None,
            upper: None,
        }],
    };
    let bad_range = LinePlot {
        title: "t",
        x_label: "x",
        y_label: "y",
        series: std::slice::from_ref(&one),
        y_range: Some((1.0, 0.0)),
    };
    assert!(line_png(&out.dir.join("c.png"), &bad_range).is_err());
}

#[test]
fn single_point_and_fixed_range() {
    let out = out_dir("single");
    let one = Series {
        label: "only step".into(),
        points: vec![SeriesPoint {
            x: 1.0,
            y: 0.8,
            lower: Some(0.7),
            upper: Some(0.9),
        }],
    };
    let path = out.dir.join("single.png");
    auc_vs_t_png(&path, "one point", std::slice::from_ref(&one)).unwrap();
    check_png(&path);
    let plot = LinePlot {
        title: "fixed range",
        x_label: "severity",
        y_label: "AUC",
        series: std::slice::from_ref(&one),
        y_range: Some((0.5, 1.0)),
    };
    let path = out.dir.join("fixed.png");
    line_png(&path, &plot).unwrap();
    check_png(&path);
}
