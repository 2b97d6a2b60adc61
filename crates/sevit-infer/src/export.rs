//! `sevit export --format torchscript`: a checkpoint's network as a TorchScript module that
//! PyTorch loads with `torch.jit.load`, without sevit.
//!
//! The module is traced from sevit's own forward pass with libtorch's operators only (sevit's
//! CPU kernels are switched off while tracing, so every step is in the graph). Its `forward`
//! takes the network input `[B, 3, S, S]` (f32, any batch size B, the side S of the model's
//! inference size) and returns one tensor `[B, 1 + D]` (a traced method has one output):
//! column 0 is the class logit, whose `sigmoid` is the probability `sevit predict` writes,
//! columns `1..=D` the CLS features. The weights are constants of the graph, on the device
//! the module was traced on. A JSON file beside the module states the input, the
//! preprocessing that makes it, and the outputs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use tch::{CModule, Device, Kind, Tensor};

use super::model::InferenceModel;
use sevit_distill::layout::write_atomic;

/// What the exported module computes and how to feed it (written beside it as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct ExportInfo {
    /// `torchscript`.
    pub format: String,
    /// The module file.
    pub module: PathBuf,
    /// The checkpoint and network it was exported from.
    pub checkpoint: PathBuf,
    /// `student` or `teacher`.
    pub weights: String,
    /// Input shape, `-1` for the batch.
    pub input_shape: [i64; 4],
    /// How sevit makes the input from an image file.
    pub preprocessing: Vec<String>,
    /// What the output holds.
    pub outputs: Vec<String>,
    /// The positive class that `sigmoid(logits)` is the probability of, where known.
    pub positive_label: Option<String>,
    /// Device the weights live on inside the module.
    pub device: String,
    /// Largest difference between the traced module and sevit's forward pass on a batch of
    /// another size than the traced one (logits, features), checked at export.
    pub self_check_max_abs_diff: f64,
}

/// sevit's own forward pass as the module computes it: `[B, 1 + D]`, the class logit then the
/// CLS features.
fn forward(model: &InferenceModel, x: &Tensor) -> Tensor {
    let net = model.network();
    let features = net.features(x, false);
    let logits = net.class_head(&features).reshape([-1, 1]);
    Tensor::cat(&[logits, features], 1)
}

/// Traces `model` and writes the TorchScript module to `out` (atomically) and its description
/// to `out` with the extension `.json`.
///
/// # Errors
/// Tracing or saving fails; the traced module disagrees with sevit's forward pass on a batch
/// of another size (more than 1e-4 relative).
pub fn export_torchscript(
    model: &InferenceModel,
    out: &Path,
    positive_label: Option<String>,
) -> anyhow::Result<ExportInfo> {
    let s = i64::from(model.settings.image_size);
    let opts = (Kind::Float, model.device);
    let example = Tensor::rand([2, 3, s, s], opts);
    let module = sevit_model::kernels::with_plain_ops(|| {
        tch::no_grad(|| {
            CModule::create_by_tracing("SevitClassifier", "forward", &[example], &mut |inputs| {
                vec![forward(model, &inputs[0])]
            })
        })
    })
    .context("tracing the network")?;

    // The trace must generalise beyond the traced batch: check on 3 images.
    let check = Tensor::rand([3, 3, s, s], opts);
    let got = tch::no_grad(|| module.forward_ts(&[check.shallow_clone()]))
        .context("running the traced module")?;
    let want = tch::no_grad(|| forward(model, &check));
    if got.size() != want.size() {
        bail!(
            "the traced module gives shape {:?} for a batch of 3, sevit {:?}",
            got.size(),
            want.size()
        );
    }
    let diff = f64::try_from((&got - &want).abs().max())?;
    let scale = f64::try_from(want.abs().max())?.max(1e-12);
    if diff > 1e-4 * scale {
        bail!("the traced module differs from sevit's forward pass by {diff:.3e}");
    }

    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a file name", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    module
        .save(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;

    let info = ExportInfo {
        format: "torchscript".into(),
        module: out.to_path_buf(),
        checkpoint: model.checkpoint.clone(),
        weights: model.weights.name().into(),
        input_shape: [-1, 3, s, s],
        preprocessing: vec![
            "read as one gray channel (colour: luminance 0.299 R + 0.587 G + 0.114 B; DICOM: \
             rescale slope/intercept, first VOI window)"
                .into(),
            "min-max scaled to [0, 1] per image".into(),
            format!("resized to {s}x{s} (antialiased bilinear, as torchvision's Resize)"),
            format!(
                "Gaussian blur of radius {} (sevit's inference transform)",
                model.settings.blur_radius
            ),
            "the gray channel repeated 3 times: [B, 3, S, S], f32".into(),
        ],
        outputs: vec![
            "[B, 1 + D]: column 0 the class logit (sigmoid: the probability of the positive \
             label), columns 1..=D the CLS features"
                .into(),
        ],
        positive_label,
        device: format!("{:?}", model.device),
        self_check_max_abs_diff: diff,
    };
    let json = out.with_extension("json");
    write_atomic(&json, serde_json::to_string_pretty(&info)?.as_bytes())?;
    tracing::info!(module = %out.display(), diff, "exported");
    if model.device != Device::Cpu {
        tracing::warn!(
            "the module's weights are on {:?}: load it on a machine with that device",
            model.device
        );
    }
    Ok(info)
}
