//! Scoring images with a trained checkpoint, and the test AUC with its DeLong interval.

use std::path::Path;

use anyhow::Context;
use sevit_data::Sample;
use sevit_metrics::{delong_ci, AucCi};
use sevit_model::import::MODEL_CONFIG_KEY;
use sevit_model::{Checkpoint, DistlNet, ModelConfig};
use tch::{Device, Kind, Tensor};

use crate::config::{TrainConfig, Weights};
use crate::data::eval_batches;
use crate::trainer::Net;

/// Probabilities `sigmoid(logit)` of the `weights` network of checkpoint `ckpt` for `samples`
/// (loaded at `image_size`, Gaussian blur of `blur_radius`), in sample order. The model configuration is read
/// from the checkpoint (`model_config` metadata), falling back to `fallback`.
#[allow(clippy::too_many_arguments)]
pub fn predict(
    ckpt: &Path,
    weights: Weights,
    samples: &[Sample],
    image_size: u32,
    batch_size: usize,
    blur_radius: f64,
    device: Device,
    fallback: Option<&ModelConfig>,
) -> anyhow::Result<Vec<f64>> {
    let ck = Checkpoint::load(ckpt)?;
    let model_cfg: ModelConfig = match ck.get_json(MODEL_CONFIG_KEY) {
        Ok(c) => c,
        Err(e) => fallback
            .cloned()
            .with_context(|| format!("{}: {e:#}", ckpt.display()))?,
    };
    let mut net = Net::build(&model_cfg, device, 0.0, 0);
    ck.load_vars(weights.prefix(), &mut net.vs)
        .with_context(|| format!("loading the {weights:?} of {}", ckpt.display()))?;
    predict_with(
        &net.net,
        samples,
        image_size,
        batch_size,
        blur_radius,
        device,
    )
}

/// [`predict`] with a network already loaded on `device`.
pub fn predict_with(
    net: &DistlNet,
    samples: &[Sample],
    image_size: u32,
    batch_size: usize,
    blur_radius: f64,
    device: Device,
) -> anyhow::Result<Vec<f64>> {
    let mut scores = Vec::with_capacity(samples.len());
    for b in eval_batches(samples, image_size, batch_size, blur_radius, false, device)? {
        let (images, _) = b?;
        scores.extend(score_images(net, &images)?);
    }
    anyhow::ensure!(
        scores.len() == samples.len(),
        "{} images scored out of {} (unreadable images skipped?)",
        scores.len(),
        samples.len()
    );
    Ok(scores)
}

/// Probabilities `sigmoid(logit)` of network `net` (in inference mode, no gradient) for one
/// batch of images `[B, 3, H, W]`, in batch order.
pub fn score_images(net: &DistlNet, images: &Tensor) -> anyhow::Result<Vec<f64>> {
    let p = tch::no_grad(|| {
        net.classify(images, false)
            .sigmoid()
            .to_kind(Kind::Double)
            .to_device(Device::Cpu)
    });
    Ok(Vec::<f64>::try_from(p.reshape([-1]))?)
}

/// Test AUC of a checkpoint with its DeLong interval at `cfg.eval.ci_level`.
pub fn test_auc(ckpt: &Path, cfg: &TrainConfig, samples: &[Sample]) -> anyhow::Result<AucCi> {
    let e = &cfg.eval;
    let model_cfg = cfg.model.model_config()?;
    let scores = predict(
        ckpt,
        e.weights,
        samples,
        cfg.eval_image_size(),
        e.batch_size,
        cfg.views.inference_blur_radius,
        cfg.device()?,
        Some(&model_cfg),
    )?;
    let labels: Vec<bool> = samples.iter().map(|s| s.target > 0.5).collect();
    delong_ci(&labels, &scores, e.ci_level)
        .with_context(|| format!("AUC of {} on {} test images", ckpt.display(), samples.len()))
}
