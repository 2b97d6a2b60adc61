//! Import of other implementations' ViTs: small random models built with the real `timm` and
//! Hugging Face `transformers` packages (`tests/foreign_reference.py`, run with
//! `$SEVIT_TORCH_PYTHON`), imported by sevit, give the same CLS features (≤ 1e-4 relative).
//! Skipped (with a message) when `SEVIT_TORCH_PYTHON` is unset or not executable; fails when it
//! is set and the packages are missing (`scripts/setup.sh` installs them).

use std::collections::HashMap;
mod common;

use std::path::Path;

use common::python;
use std::process::Command;

use sevit_model::import::{import_weights, ConfigSource, ImportOptions};
use sevit_model::{Checkpoint, DistlNet};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Builds the foreign models once per test binary.
fn reference() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<tempfile::TempDir>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let py = python()?;
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign_reference.py");
        let out = Command::new(py)
            .arg(&script)
            .arg(dir.path())
            .output()
            .expect("running the python reference");
        assert!(
            out.status.success(),
            "foreign_reference.py failed (timm and transformers come from scripts/setup.sh):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{}", String::from_utf8_lossy(&out.stdout));
        Some(dir)
    })
    .as_ref()
    .map(|d| d.path())
}

macro_rules! need_reference {
    () => {
        match reference() {
            Some(d) => d,
            None => {
                eprintln!("SKIPPED: SEVIT_TORCH_PYTHON is unset or not executable");
                return;
            }
        }
    };
}

fn npz(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_npz(path).unwrap().into_iter().collect()
}

/// Imports `file`, runs the imported student on the reference inputs of `tag` and returns the
/// largest difference to the reference features relative to their largest magnitude.
fn parity(
    dir: &Path,
    file: &str,
    tag: &str,
    opts: &ImportOptions,
) -> (f64, sevit_model::ModelConfig) {
    let (ck, summary) =
        import_weights(&dir.join(file), opts).unwrap_or_else(|e| panic!("importing {file}: {e:#}"));
    let student = &summary.roles[0];
    assert!(
        student.missing.iter().all(|k| !k.starts_with("backbone.")),
        "{file}: {student:?}"
    );
    assert!(student.unexpected.is_empty(), "{file}: {student:?}");
    let out = dir.join(format!("{tag}.sevit.safetensors"));
    ck.save(&out).unwrap();
    let ck = Checkpoint::load(&out).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let net = DistlNet::new(&vs.root(), &summary.config, 0.0);
    ck.load_vars("student.", &mut vs).unwrap();
    let x = &npz(&dir.join("inputs.npz"))[tag];
    let want = &npz(&dir.join("outputs.npz"))[tag];
    let got = tch::no_grad(|| net.features(x, false));
    assert_eq!(got.size(), want.size(), "{tag}");
    let diff = f64::try_from((&got - want).abs().max()).unwrap();
    let scale = f64::try_from(want.abs().max()).unwrap();
    let err = diff / scale;
    println!("{tag} ({file}): max |sevit - reference| / max |reference| = {err:.2e}");
    assert!(err <= 1e-4, "{tag}: relative error {err:.2e}");
    (err, summary.config)
}

fn heads(n: i64) -> ImportOptions {
    ImportOptions {
        num_heads: Some(n),
        ..Default::default()
    }
}

#[test]
fn timm_vit_with_its_classifier() {
    let d = need_reference!();
    let (_, cfg) = parity(d, "timm.pth", "timm", &heads(3));
    assert_eq!(
        (cfg.vit.embed_dim, cfg.vit.depth, cfg.vit.num_heads),
        (48, 2, 3)
    );
    assert_eq!(cfg.vit.layer_scale, None);
    assert_eq!(cfg.vit.ln_eps, 1e-6);
}

#[test]
fn timm_vit_with_layer_scale_from_safetensors() {
    let d = need_reference!();
    let (_, cfg) = parity(d, "timm_ls.safetensors", "timm_ls", &heads(3));
    assert!(cfg.vit.layer_scale.is_some());
    // a backbone without LayerScale has no place for the gammas: refused, not dropped
    let e = import_weights(
        &d.join("timm_ls.safetensors"),
        &ImportOptions {
            config: ConfigSource::Exact({
                let mut c = cfg.clone();
                c.vit.layer_scale = None;
                c
            }),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("ls1.gamma"), "{e:#}");
}

#[test]
fn hugging_face_vit_folder_and_state_dict() {
    let d = need_reference!();
    // save_pretrained folder: heads and LayerNorm epsilon (1e-12) from its config.json
    let (_, cfg) = parity(d, "hf_vit", "hf_vit", &ImportOptions::default());
    assert_eq!(cfg.vit.num_heads, 4);
    assert_eq!(cfg.vit.ln_eps, 1e-12);
    // the same weights in transformers 5's module names, without config.json
    let e = import_weights(&d.join("hf_vit_state.pth"), &ImportOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--num-heads"), "{e:#}");
    parity(d, "hf_vit_state.pth", "hf_vit", &heads(4));
}

#[test]
fn hugging_face_dinov2_folder() {
    let d = need_reference!();
    let (_, cfg) = parity(d, "hf_dinov2", "hf_dinov2", &ImportOptions::default());
    assert_eq!((cfg.vit.patch_size, cfg.vit.img_size), (14, 28));
    assert_eq!(cfg.vit.layer_scale, Some(0.5));
    assert_eq!(cfg.vit.ln_eps, 1e-6);
}
