//! Tests of the inference module on a micro network with random weights and synthetic
//! images (seconds on a CPU).

use std::path::{Path, PathBuf};

use sevit_data::nuisance::NuisanceKind;
use sevit_data::{load_gray, Dataset, SynthConfig};
use sevit_metrics::{EvalOptions, EvalReport, NuisanceTable};
use sevit_model::import::MODEL_CONFIG_KEY;
use sevit_model::Checkpoint;
use tch::Device;

use super::*;
use sevit_distill::config::{TrainConfig, Weights};
use sevit_distill::trainer::{Net, TRAIN_CONFIG_KEY};

const MICRO: &str = r#"
device = "cpu"
threads = 1
[model]
preset = "micro"
out_dim = 64
hidden_dim = 64
bottleneck_dim = 16
nlayers = 3
cls_hidden_dim = 32
[views]
global_size = 32
local_size = 16
n_local = 2
[eval]
batch_size = 5
"#;

/// A checkpoint with random student and teacher weights of the micro model.
fn micro_checkpoint(path: &Path) -> TrainConfig {
    let cfg = TrainConfig::from_toml_str(MICRO, "test").unwrap();
    let model_cfg = cfg.model.model_config().unwrap();
    let student = Net::build(&model_cfg, Device::Cpu, 0.0, 7);
    let teacher = Net::build(&model_cfg, Device::Cpu, 0.0, 8);
    let mut ck = Checkpoint::new();
    ck.put_vars("student.", &student.vs);
    ck.put_vars("teacher.", &teacher.vs);
    ck.put_json(MODEL_CONFIG_KEY, &model_cfg).unwrap();
    ck.put_json(TRAIN_CONFIG_KEY, &cfg).unwrap();
    ck.save(path).unwrap();
    cfg
}

fn synth(dir: &Path, n: usize) -> PathBuf {
    sevit_data::synth::generate(
        dir,
        n,
        &SynthConfig {
            size: 40,
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn scorer_matches_the_engine_predict() {
    let d = tempfile::tempdir().unwrap();
    let ckp = d.path().join("ck.safetensors");
    let cfg = micro_checkpoint(&ckp);
    let ds = Dataset::from_descriptor(&synth(&d.path().join("data"), 12)).unwrap();
    let engine = sevit_distill::scoring::predict(
        &ckp,
        Weights::Student,
        &ds.samples,
        32,
        5,
        0.5,
        Device::Cpu,
        None,
    )
    .unwrap();
    let model =
        InferenceModel::load(&ckp, Weights::Student, None, &SettingOverrides::default()).unwrap();
    assert_eq!(model.settings, InferenceSettings::from_train_config(&cfg));
    assert_eq!(model.settings.image_size, 32);
    let imgs: Vec<_> = ds
        .samples
        .iter()
        .map(|s| load_gray(&s.path, 32).unwrap())
        .collect();
    let ours = model.score(&imgs).unwrap();
    assert_eq!(ours.len(), 12);
    for (a, b) in engine.iter().zip(&ours) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let teacher =
        InferenceModel::load(&ckp, Weights::Teacher, None, &SettingOverrides::default()).unwrap();
    assert_ne!(
        teacher.score(&imgs).unwrap(),
        ours,
        "teacher weights must be used"
    );
    // Wrong size is a clear error.
    let big = load_gray(&ds.samples[0].path, 40).unwrap();
    assert!(format!("{:#}", model.score(&[big]).unwrap_err()).contains("expects 32x32"));
}

#[test]
fn attention_maps_are_patch_distributions() {
    let d = tempfile::tempdir().unwrap();
    let ckp = d.path().join("ck.safetensors");
    micro_checkpoint(&ckp);
    let ds = Dataset::from_descriptor(&synth(&d.path().join("data"), 2)).unwrap();
    let model =
        InferenceModel::load(&ckp, Weights::Student, None, &SettingOverrides::default()).unwrap();
    let img = load_gray(&ds.samples[0].path, 32).unwrap();
    let maps = model.attention(&img).unwrap();
    assert_eq!((maps.grid_w, maps.grid_h, maps.heads.len()), (4, 4, 2));
    for h in &maps.heads {
        let s: f32 = h.iter().sum();
        assert!(s > 0.0 && s < 1.0 + 1e-5, "patch attention sums to {s}");
        assert!(h.iter().all(|&v| v >= 0.0));
    }
    let m = maps.mean();
    assert!((m[3] - (maps.heads[0][3] + maps.heads[1][3]) / 2.0).abs() < 1e-7);
    let png = d.path().join("grid.png");
    let grid = write_attention_grid(
        &model,
        &img,
        &["test".into()],
        &png,
        &GridOptions::default(),
    )
    .unwrap();
    let p = grid.probability;
    assert!((0.0..=1.0).contains(&p));
    let out = sevit_data::load::load_gray_native(&png).unwrap();
    // A near-square grid of 256 px tiles: 3 columns, 2 rows (image, mean, mask | head 1, head 2).
    assert!(
        out.width >= 3 * 256 && out.height >= 2 * 256,
        "{}x{}",
        out.width,
        out.height
    );
}

#[test]
fn evaluate_writes_reports_and_robustness() {
    let d = tempfile::tempdir().unwrap();
    let ckp = d.path().join("run/pretrain/checkpoint.safetensors");
    std::fs::create_dir_all(ckp.parent().unwrap()).unwrap();
    micro_checkpoint(&ckp);
    let desc = synth(&d.path().join("data"), 16);
    let out = d.path().join("out");
    let req = EvalRequest {
        checkpoint: ckp.clone(),
        stage: "pretrain".into(),
        weights: Weights::Student,
        run: None,
        cases: CaseSource::Descriptor(desc),
        out_dir: out.clone(),
        overrides: SettingOverrides::default(),
        metrics: EvalOptions::default(),
        robustness: Some(RobustnessOptions {
            kinds: vec![NuisanceKind::Noise, NuisanceKind::Jpeg],
            severities: vec![1, 5],
            seed: 1,
            level: 0.95,
        }),
    };
    let o = evaluate_checkpoint(&req).unwrap();
    for f in [
        &o.files.report,
        &o.files.predictions,
        &o.files.roc,
        &o.files.reliability,
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    let back = EvalReport::load_json(&o.files.report).unwrap();
    assert_eq!(back.n, 16);
    assert_eq!(back.info["image_size"], 32);
    // One key per count, `fn` as TP/FP/TN/FN are written everywhere else.
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&o.files.report).unwrap()).unwrap();
    let youden = &raw["thresholds"]["youden"];
    assert!(
        youden.get("fn").is_some() && youden.get("fn_").is_none(),
        "{youden}"
    );
    let preds = sevit_metrics::read_predictions_csv(&o.files.predictions).unwrap();
    assert_eq!(preds.ids.len(), 16);
    assert!(preds.ids[0].starts_with("images/"), "{}", preds.ids[0]);
    let rob = o.robustness.unwrap();
    assert!(
        (rob.clean.auc - back.auc).abs() < 1e-9,
        "clean AUC {} vs report {}",
        rob.clean.auc,
        back.auc
    );
    assert_eq!(rob.rows.len(), 4);
    let rf = o.files.robustness.unwrap();
    let table = NuisanceTable::read_csv(&rf.csv).unwrap();
    assert_eq!(table.rows.len(), 6, "clean + 2 severities per kind");
    assert!(rf.png.is_file());
    assert_eq!(RobustnessReport::load_json(&rf.json).unwrap(), rob);
    assert!(rob.to_string().contains("jpeg"));
    let series = rob.series();
    assert_eq!(series.len(), 2);
    assert_eq!(series[1].label, "JPEG: quality 75 to 5");
    assert_eq!(
        series[0].points.iter().map(|p| p.x).collect::<Vec<_>>(),
        vec![0.0, 1.0, 5.0]
    );
    assert_eq!(series[0].points[0].y, rob.clean.auc);
    // Same seed: same numbers.
    let again = evaluate_robustness(
        &InferenceModel::load(&ckp, Weights::Student, None, &SettingOverrides::default()).unwrap(),
        &req.cases.load().unwrap(),
        req.robustness.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(again.rows, rob.rows);
    assert_eq!(
        default_out_dir(None, &ckp, "pretrain", Weights::Teacher, "synth"),
        d.path().join("run/eval/pretrain-teacher-synth")
    );
}

#[test]
fn predict_errors_or_skips_unreadable_images() {
    let d = tempfile::tempdir().unwrap();
    let ckp = d.path().join("ck.safetensors");
    micro_checkpoint(&ckp);
    synth(&d.path().join("data"), 3);
    std::fs::write(d.path().join("data/images/zz_bad.png"), b"not a png").unwrap();
    let list = ImageList::from_folder(&d.path().join("data/images")).unwrap();
    assert_eq!(list.paths.len(), 4);
    let model =
        InferenceModel::load(&ckp, Weights::Student, None, &SettingOverrides::default()).unwrap();
    let e = predict_images(&model, &list, &PredictOptions::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("zz_bad.png") && format!("{e:#}").contains("--skip-bad"),
        "{e:#}"
    );
    let o = predict_images(
        &model,
        &list,
        &PredictOptions {
            threshold: 0.0,
            skip_bad: true,
        },
    )
    .unwrap();
    assert_eq!(o.rows.len(), 3);
    assert_eq!(o.skipped.len(), 1);
    assert!(
        o.rows.iter().all(|r| r.predicted),
        "threshold 0 predicts everything positive"
    );
    assert!(predict_images(
        &model,
        &list,
        &PredictOptions {
            threshold: 1.5,
            skip_bad: true
        }
    )
    .is_err());
}

#[test]
fn checkpoint_resolution() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path();
    for s in ["pretrain", "step1", "step2", "supervised1"] {
        std::fs::create_dir_all(run.join(s)).unwrap();
        std::fs::write(run.join(s).join("checkpoint.safetensors"), b"x").unwrap();
    }
    std::fs::create_dir_all(run.join("step10")).unwrap(); // no checkpoint: ignored
    let (p, s) = resolve_checkpoint(None, Some(run), None).unwrap();
    assert_eq!(
        (p, s.as_str()),
        (run.join("step2/checkpoint.safetensors"), "step2")
    );
    assert_eq!(
        resolve_checkpoint(None, Some(run), Some("pretrain"))
            .unwrap()
            .1,
        "pretrain"
    );
    let e = format!(
        "{:#}",
        resolve_checkpoint(None, Some(run), Some("step3")).unwrap_err()
    );
    assert!(e.contains("pretrain, step1, step2, supervised1"), "{e}");
    assert!(resolve_checkpoint(None, None, None).is_err());
    let (_, label) =
        resolve_checkpoint(Some(&run.join("step1/checkpoint.safetensors")), None, None).unwrap();
    assert_eq!(label, "step1");
}

#[test]
fn torchscript_export_runs_in_pytorch_as_in_sevit() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("model.safetensors");
    micro_checkpoint(&ck);
    let model =
        InferenceModel::load(&ck, Weights::Teacher, None, &SettingOverrides::default()).unwrap();
    let out = dir.path().join("out/model.pt");
    let info = export_torchscript(&model, &out, Some("pneumonia".into())).unwrap();
    assert!(out.is_file());
    assert_eq!(info.input_shape, [-1, 3, 32, 32]);
    assert!(info.self_check_max_abs_diff < 1e-5, "{info:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(json["positive_label"], "pneumonia");
    assert_eq!(json["weights"], "teacher");

    // In PyTorch itself, on a batch of another size than the traced one.
    let Some(py) = std::env::var_os("SEVIT_TORCH_PYTHON") else {
        eprintln!("SKIPPED the PyTorch half: SEVIT_TORCH_PYTHON is unset");
        return;
    };
    let x = tch::Tensor::rand([5, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
    let (logits, features) = tch::no_grad(|| {
        let net = model.network();
        let f = net.features(&x, false);
        (net.class_head(&f).reshape([-1]), f)
    });
    let npz = dir.path().join("io.npz");
    tch::Tensor::write_npz(
        &[("x", &x), ("logits", &logits), ("features", &features)],
        &npz,
    )
    .unwrap();
    let script = r#"
import sys, numpy as np, torch
m = torch.jit.load(sys.argv[1])
d = np.load(sys.argv[2])
with torch.no_grad():
    out = m(torch.from_numpy(d["x"]))
logits, features = out[:, 0], out[:, 1:]
err = max(float(np.abs(logits.numpy() - d["logits"]).max() / np.abs(d["logits"]).max()),
          float(np.abs(features.numpy() - d["features"]).max() / np.abs(d["features"]).max()))
print(f"{err:.3e}")
"#;
    let run = std::process::Command::new(py)
        .args(["-c", script])
        .arg(&out)
        .arg(&npz)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let err: f64 = String::from_utf8_lossy(&run.stdout).trim().parse().unwrap();
    println!("torch.jit.load parity (relative): {err:.3e}");
    assert!(err <= 1e-5, "TorchScript in PyTorch differs by {err:.3e}");
}
