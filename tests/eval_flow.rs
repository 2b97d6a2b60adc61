//! Using a trained checkpoint end to end, on a micro model trained for a few iterations on
//! synthetic 32 px images: evaluation (report.json, predictions.csv, roc.png,
//! reliability.png, nuisance table), the paired comparison of two prediction files,
//! attention grids, and prediction on a folder of new images.
//!
//! Set `SEVIT_EVAL_FLOW_OUT=DIR` to keep the outputs (to look at the PNGs).

use std::path::{Path, PathBuf};

use sevit_data::nuisance::NuisanceKind;
use sevit_data::{Split, Subset};
use sevit_distill::{PretrainOptions, RunLayout, Weights};
use sevit_infer::{
    compare_predictions, evaluate_checkpoint, resolve_checkpoint, visualize, CaseSource,
    EvalRequest, GridOptions, ImageList, ImageSelection, InferenceModel, PredictOptions,
    RobustnessOptions, SettingOverrides,
};
use sevit_metrics::{EvalOptions, EvalReport, NuisanceTable};
use sevit_suite::SyntheticSplit;

fn work_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("SEVIT_EVAL_FLOW_OUT") {
        Some(d) => {
            let p = PathBuf::from(d);
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            (None, p)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

/// Synthetic data, a split and a micro initial model trained for 2 epochs.
fn trained_run(root: &Path) -> (RunLayout, PathBuf) {
    let split = SyntheticSplit {
        n: 64,
        synth_seed: 11,
        split_seed: 2,
        labeled: 0.4,
        folds: 1,
        test: 0.3,
    };
    let run = sevit_suite::synthetic_run(root, "run", &split);
    let cfg = sevit_suite::micro_config(2, &["pretrain.epochs=2"]);
    run.write_config_once(&cfg).unwrap();
    let opts = PretrainOptions {
        run: sevit_distill::RunOptions {
            progress: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = sevit_distill::pretrain(&run, &cfg, &opts).unwrap();
    (run, outcome.checkpoint)
}

#[test]
fn eval_compare_visualize_predict() {
    let (_keep, root) = work_dir();
    let (run, ckpt) = trained_run(&root);
    let (resolved, stage) = resolve_checkpoint(None, Some(&run.root), None).unwrap();
    assert_eq!(
        (resolved.as_path(), stage.as_str()),
        (ckpt.as_path(), "pretrain")
    );

    // --- eval: test subset of the run, with a small nuisance table ---
    let eval_dir = run.root.join("eval/pretrain");
    let req = EvalRequest {
        checkpoint: ckpt.clone(),
        stage: stage.clone(),
        weights: Weights::Student,
        run: Some(run.root.clone()),
        cases: CaseSource::Run {
            run: run.root.clone(),
            subset: Subset::Test,
        },
        out_dir: eval_dir.clone(),
        overrides: SettingOverrides::default(),
        metrics: EvalOptions {
            bootstrap: Some(sevit_metrics::BootstrapOptions {
                n_boot: 200,
                seed: 1,
            }),
            ..Default::default()
        },
        robustness: Some(RobustnessOptions {
            kinds: NuisanceKind::ALL.to_vec(),
            severities: vec![1, 3, 5],
            seed: 0,
            level: 0.95,
        }),
    };
    let out = evaluate_checkpoint(&req).unwrap();
    let report = EvalReport::load_json(&eval_dir.join("report.json")).unwrap();
    let n_test = Split::read_csv(&run.split_csv())
        .unwrap()
        .samples(Subset::Test)
        .len();
    assert_eq!(report.n, n_test);
    assert!(report.bootstrap_ci.is_some());
    assert_eq!(report.auc, out.report.auc);
    let preds = sevit_metrics::read_predictions_csv(&eval_dir.join("predictions.csv")).unwrap();
    assert_eq!(preds.ids.len(), n_test);
    for png in ["roc.png", "reliability.png", "nuisance.png"] {
        let p = eval_dir.join(png);
        assert!(
            sevit_data::load::load_gray_native(&p).is_ok(),
            "{} is not a readable PNG",
            p.display()
        );
    }
    // One self-contained page: the AUC, the class names, the attention grids of the extreme
    // cases (embedded, and kept in attention/), nothing fetched from elsewhere.
    let html = std::fs::read_to_string(&out.files.html).unwrap();
    assert!(
        html.contains(&format!("AUC {:.4}", report.auc)),
        "AUC missing"
    );
    let positive = report.info["positive_label"].as_str().unwrap();
    assert!(html.contains(&format!("<b>{positive}</b> (positive)")));
    let grids = std::fs::read_dir(eval_dir.join("attention"))
        .unwrap()
        .count();
    assert!((2..=4).contains(&grids), "{grids} attention grids");
    assert_eq!(html.matches("data:image/png;base64,").count(), grids);
    assert_eq!(
        html.matches("http://").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(!html.contains("https://") && !html.contains("<script"));
    let table = NuisanceTable::read_csv(&eval_dir.join("nuisance.csv")).unwrap();
    assert_eq!(table.rows.len(), 7 * 4);
    assert!(table
        .rows
        .iter()
        .filter(|r| r.severity == 0.0)
        .all(|r| (r.auc - report.auc).abs() < 1e-9));

    // --- a second prediction set on the same cases (no inference blur), then compare ---
    let eval_b = run.root.join("eval/pretrain-noblur");
    let req_b = EvalRequest {
        out_dir: eval_b.clone(),
        overrides: SettingOverrides {
            blur_radius: Some(0.0),
            ..Default::default()
        },
        robustness: None,
        metrics: EvalOptions::default(),
        ..req.clone()
    };
    evaluate_checkpoint(&req_b).unwrap();
    let cmp = compare_predictions(&eval_dir, &eval_b, "blur 0.5", "no blur", 0.95).unwrap();
    assert_eq!(cmp.n, n_test);
    assert_eq!(cmp.test.auc_a, report.auc);
    assert!(cmp.test.p_value.is_nan() || (0.0..=1.0).contains(&cmp.test.p_value));
    // Another case set is refused.
    let train_preds = root.join("train_predictions.csv");
    let labeled = CaseSource::Run {
        run: run.root.clone(),
        subset: Subset::Labeled,
    };
    evaluate_checkpoint(&EvalRequest {
        cases: labeled,
        out_dir: root.join("eval-labeled"),
        robustness: None,
        ..req.clone()
    })
    .unwrap();
    std::fs::copy(root.join("eval-labeled/predictions.csv"), &train_preds).unwrap();
    let e = compare_predictions(&eval_dir, &train_preds, "test", "labeled", 0.95).unwrap_err();
    assert!(format!("{e:#}").contains("not on the same cases"), "{e:#}");

    // --- attention grids of 3 test images ---
    let model = InferenceModel::load(
        &ckpt,
        Weights::Student,
        Some(&run.root),
        &SettingOverrides::default(),
    )
    .unwrap();
    let images = ImageSelection::Run {
        run: run.root.clone(),
        subset: Subset::Test,
        n: 3,
    }
    .resolve()
    .unwrap();
    assert_eq!(images.len(), 3);
    assert_ne!(
        images[0].label, images[1].label,
        "alternates positive and negative"
    );
    let att_dir = run.root.join("attention/pretrain");
    let done = visualize(
        &model,
        &images,
        &att_dir,
        "pretrain (student)",
        &GridOptions::default(),
    )
    .unwrap();
    assert_eq!(done.len(), 3);
    for v in &done {
        let g = sevit_data::load::load_gray_native(&v.png).unwrap();
        assert!(g.width >= 3 * 256, "grid of {}x{}", g.width, g.height);
    }

    // --- predict on the folder of images (no labels) ---
    let list = ImageList::from_folder(&root.join("data/images")).unwrap();
    let pred = sevit_infer::predict_images(&model, &list, &PredictOptions::default()).unwrap();
    let csv = root.join("new_predictions.csv");
    pred.write_csv(&csv, "opacity").unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 1 + 64);
    // The schema of the evaluation's predictions.csv, label empty.
    let eval_header = std::fs::read_to_string(eval_dir.join("predictions.csv")).unwrap();
    assert_eq!(text.lines().next(), eval_header.lines().next());
    assert!(text.starts_with("id,label,p_opacity,predicted,threshold\n"));
    // The test images get the same probabilities as in the evaluation.
    let first_test = &preds.ids[0];
    let row = text
        .lines()
        .find(|l| first_test.ends_with(l.split(',').next().unwrap()))
        .unwrap();
    let p: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
    assert!(
        (p - preds.scores[0]).abs() < 1e-6,
        "{p} vs {}",
        preds.scores[0]
    );
}
