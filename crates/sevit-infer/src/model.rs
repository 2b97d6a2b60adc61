//! A trained network loaded once for inference: which checkpoint and weights, at which image
//! size and inference blur, on which device; scoring of in-memory images and last-layer
//! attention maps.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sevit_data::loader::stack_gray;
use sevit_data::{inference_transform, GrayImage, MultiCropConfig};
use sevit_model::import::MODEL_CONFIG_KEY;
use sevit_model::{Checkpoint, ModelConfig};
use tch::{Device, Kind, Tensor};

use sevit_distill::config::{parse_device, TrainConfig, Weights};
use sevit_distill::layout::{stage_name, RunLayout};
use sevit_distill::trainer::{Net, TRAIN_CONFIG_KEY};

/// Preprocessing and device settings of an [`InferenceModel`], resolved from the checkpoint's
/// training config (see [`InferenceSettings::resolve`]) and optionally overridden.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceSettings {
    /// Side of the square input images.
    pub image_size: u32,
    /// Gaussian blur radius of the inference transform (DISTL: 0.5).
    pub blur_radius: f64,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Device name (`cpu`, `cuda`, `cuda:N`, `auto`).
    pub device: String,
    /// Confidence level of the AUC intervals.
    pub ci_level: f64,
}

/// Flags that override what the checkpoint says; `None` keeps the checkpoint's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingOverrides {
    /// Image side.
    pub image_size: Option<u32>,
    /// Blur radius of the inference transform.
    pub blur_radius: Option<f64>,
    /// Batch size.
    pub batch_size: Option<usize>,
    /// Device.
    pub device: Option<String>,
}

impl InferenceSettings {
    /// Settings from a training config: `eval.image_size` (or the global view size),
    /// `views.inference_blur_radius`, `eval.batch_size`, `device`, `eval.ci_level`.
    pub fn from_train_config(cfg: &TrainConfig) -> Self {
        InferenceSettings {
            image_size: cfg.eval_image_size(),
            blur_radius: cfg.views.inference_blur_radius,
            batch_size: cfg.eval.batch_size,
            device: cfg.device.clone(),
            ci_level: cfg.eval.ci_level,
        }
    }

    /// Settings for a checkpoint: its stored training config; else `RUN/config.toml` of
    /// `run`; else the model's own input size with the reference blur (0.5), batch 32 and
    /// device `auto`. `overrides` are applied last.
    pub fn resolve(
        ck: &Checkpoint,
        model_cfg: &ModelConfig,
        run: Option<&Path>,
        overrides: &SettingOverrides,
    ) -> anyhow::Result<Self> {
        let mut s = match ck.get_json::<TrainConfig>(TRAIN_CONFIG_KEY) {
            Ok(cfg) => Self::from_train_config(&cfg),
            Err(_) => match run
                .map(|r| RunLayout::new(r).config_toml())
                .filter(|p| p.is_file())
            {
                Some(p) => Self::from_train_config(&TrainConfig::load(&p, &[])?),
                None => InferenceSettings {
                    image_size: model_cfg.vit.img_size as u32,
                    blur_radius: MultiCropConfig::default().inference_blur_radius,
                    batch_size: 32,
                    device: "auto".into(),
                    ci_level: 0.95,
                },
            },
        };
        if let Some(v) = overrides.image_size {
            s.image_size = v;
        }
        if let Some(v) = overrides.blur_radius {
            s.blur_radius = v;
        }
        if let Some(v) = overrides.batch_size {
            s.batch_size = v;
        }
        if let Some(v) = &overrides.device {
            s.device = v.clone();
        }
        if s.image_size == 0 || s.batch_size == 0 {
            bail!("image size and batch size must be positive");
        }
        sevit_distill::config::check_patch_multiple(
            "the image size",
            s.image_size,
            model_cfg.vit.patch_size,
        )?;
        if s.blur_radius < 0.0 {
            bail!(
                "the inference blur radius must not be negative, got {}",
                s.blur_radius
            );
        }
        Ok(s)
    }
}

/// The positive class of the run a checkpoint belongs to: the split of `run` when given,
/// else of the run folder two levels above the checkpoint (`RUN/<stage>/checkpoint...`).
pub fn positive_label_of(checkpoint: &Path, run: Option<&Path>) -> Option<String> {
    let run = match run {
        Some(r) => r.to_path_buf(),
        None => checkpoint.parent()?.parent()?.to_path_buf(),
    };
    let split = RunLayout::new(run).split_csv();
    if !split.is_file() {
        return None;
    }
    sevit_data::Split::read_csv(&split)
        .ok()
        .map(|s| s.positive_label().to_string())
}

/// Picks a checkpoint: `checkpoint` when given; otherwise `RUN/<stage>/checkpoint.safetensors`
/// of `run`, where `stage` defaults to the highest `stepT` present, else `pretrain`. Returns the
/// path and a stage label (the stage, or the checkpoint's parent folder name).
///
/// # Errors
/// Neither a checkpoint nor a run; a missing checkpoint file (the message lists the stages the
/// run has).
pub fn resolve_checkpoint(
    checkpoint: Option<&Path>,
    run: Option<&Path>,
    stage: Option<&str>,
) -> anyhow::Result<(PathBuf, String)> {
    if let Some(p) = checkpoint {
        if !p.is_file() {
            bail!("checkpoint {} does not exist", p.display());
        }
        let label = match stage {
            Some(s) => s.to_string(),
            None => p
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
        };
        return Ok((p.to_path_buf(), label));
    }
    let Some(run) = run else {
        bail!("give a checkpoint (--checkpoint PATH) or a run directory (--run DIR [--stage pretrain|stepT])");
    };
    let layout = RunLayout::new(run);
    let stages = run_stages(run);
    let stage = match stage {
        Some(s) => s.to_string(),
        None => latest_stage(&stages).with_context(|| {
            format!(
                "run {} has no trained stage (no pretrain/ or stepT/ checkpoint)",
                run.display()
            )
        })?,
    };
    let p = layout.checkpoint(&stage);
    if !p.is_file() {
        bail!(
            "{} does not exist (stages with a checkpoint in {}: {})",
            p.display(),
            run.display(),
            if stages.is_empty() {
                "none".to_string()
            } else {
                stages.join(", ")
            }
        );
    }
    Ok((p, stage))
}

/// Stage folders of a run that hold a checkpoint, sorted by name.
pub fn run_stages(run: &Path) -> Vec<String> {
    let layout = RunLayout::new(run);
    let mut out: Vec<String> = std::fs::read_dir(run)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| layout.checkpoint(n).is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The DISTL stage to evaluate by default: the highest `stepT`, else `pretrain`.
fn latest_stage(stages: &[String]) -> Option<String> {
    let best_step = stages
        .iter()
        .filter_map(|s| stage_name::parse_step(s))
        .max();
    match best_step {
        Some(t) => Some(stage_name::step(t)),
        None => stages.iter().find(|s| *s == stage_name::PRETRAIN).cloned(),
    }
}

/// Last-layer CLS attention of one image: `heads` maps of `grid_w x grid_h` patches, each
/// summing to (at most) 1 over the patches (the CLS token's attention to itself is left out).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMaps {
    /// Patch columns.
    pub grid_w: usize,
    /// Patch rows.
    pub grid_h: usize,
    /// One row-major map per head.
    pub heads: Vec<Vec<f32>>,
}

impl AttentionMaps {
    /// The mean over heads.
    pub fn mean(&self) -> Vec<f32> {
        let n = self.grid_w * self.grid_h;
        let mut m = vec![0f32; n];
        for h in &self.heads {
            for (a, b) in m.iter_mut().zip(h) {
                *a += *b;
            }
        }
        let k = self.heads.len().max(1) as f32;
        m.iter_mut().for_each(|v| *v /= k);
        m
    }
}

/// A checkpoint's network ready for inference.
pub struct InferenceModel {
    net: Net,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Student or teacher.
    pub weights: Weights,
    /// The model configuration.
    pub model_config: ModelConfig,
    /// Preprocessing and device.
    pub settings: InferenceSettings,
    /// The resolved device.
    pub device: Device,
}

impl InferenceModel {
    /// Loads the `weights` network of checkpoint `path` (model config from its metadata),
    /// with settings resolved by [`InferenceSettings::resolve`].
    pub fn load(
        path: &Path,
        weights: Weights,
        run: Option<&Path>,
        overrides: &SettingOverrides,
    ) -> anyhow::Result<Self> {
        let ck = Checkpoint::load(path)?;
        let model_config: ModelConfig = ck.get_json(MODEL_CONFIG_KEY).with_context(|| {
            format!(
                "{}: no model configuration stored in the checkpoint",
                path.display()
            )
        })?;
        let settings = InferenceSettings::resolve(&ck, &model_config, run, overrides)
            .with_context(|| format!("inference settings of {}", path.display()))?;
        let device = parse_device(&settings.device)?;
        let mut net = Net::build(&model_config, device, 0.0, 0);
        ck.load_vars(weights.prefix(), &mut net.vs)
            .with_context(|| format!("loading the {weights:?} of {}", path.display()))?;
        // Inference never needs gradients, and a traced export (TorchScript) can only embed
        // weights that do not require them.
        net.vs.freeze();
        tracing::info!(
            checkpoint = %path.display(),
            ?weights,
            image_size = settings.image_size,
            blur = settings.blur_radius,
            ?device,
            "model loaded"
        );
        Ok(InferenceModel {
            net,
            checkpoint: path.to_path_buf(),
            weights,
            model_config,
            settings,
            device,
        })
    }

    /// The same architecture, settings and device with freshly initialised weights (drawn
    /// with `seed`): what a probe of these weights is compared against.
    pub fn random_like(&self, seed: u64) -> Self {
        let mut net = Net::build(&self.model_config, self.device, 0.0, seed);
        net.vs.freeze();
        InferenceModel {
            net,
            checkpoint: self.checkpoint.clone(),
            weights: self.weights,
            model_config: self.model_config.clone(),
            settings: self.settings.clone(),
            device: self.device,
        }
    }

    /// One-line description: checkpoint, weights and preprocessing.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {}x{} px, inference blur {})",
            self.checkpoint.display(),
            self.weights.name(),
            self.settings.image_size,
            self.settings.image_size,
            self.settings.blur_radius
        )
    }

    /// The network (student or teacher, as loaded).
    pub(crate) fn network(&self) -> &sevit_model::DistlNet {
        &self.net.net
    }

    pub(crate) fn batch_tensor(&self, images: &[GrayImage]) -> anyhow::Result<Tensor> {
        let s = self.settings.image_size;
        for (i, im) in images.iter().enumerate() {
            if (im.width, im.height) != (s, s) {
                bail!(
                    "image {i} is {}x{}, the model expects {s}x{s}",
                    im.width,
                    im.height
                );
            }
        }
        let blurred: Vec<GrayImage> = images
            .iter()
            .map(|im| inference_transform(im, self.settings.blur_radius))
            .collect();
        Ok(stack_gray(&blurred.iter().collect::<Vec<_>>()).to_device(self.device))
    }

    /// Probabilities `sigmoid(logit)` of loaded images (`image_size` square, values in
    /// `[0, 1]`, *before* the inference transform, which is applied here), in order, scored in
    /// batches of `batch_size`.
    pub fn score(&self, images: &[GrayImage]) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.settings.batch_size.max(1)) {
            let x = self.batch_tensor(chunk)?;
            let p = tch::no_grad(|| self.net.net.classify(&x, false))
                .sigmoid()
                .to_kind(Kind::Double)
                .to_device(Device::Cpu)
                .reshape([-1]);
            out.extend(Vec::<f64>::try_from(p)?);
        }
        Ok(out)
    }

    /// Last-layer CLS attention of one loaded image (as [`InferenceModel::score`]'s input).
    pub fn attention(&self, image: &GrayImage) -> anyhow::Result<AttentionMaps> {
        let x = self.batch_tensor(std::slice::from_ref(image))?;
        let attn = tch::no_grad(|| self.net.net.last_self_attention(&x));
        let size = attn.size();
        let (heads, tokens) = (size[1], size[3]);
        let p = self.model_config.vit.patch_size;
        let s = self.settings.image_size as i64;
        let (gw, gh) = ((s / p) as usize, (s / p) as usize);
        if (tokens - 1) as usize != gw * gh {
            bail!(
                "attention has {} patch tokens, expected {gw}x{gh}",
                tokens - 1
            );
        }
        let cls = attn
            .select(0, 0)
            .narrow(1, 0, 1)
            .squeeze_dim(1)
            .narrow(1, 1, tokens - 1);
        let cls = cls.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        let flat = Vec::<f32>::try_from(cls.reshape([-1]))?;
        let n = gw * gh;
        Ok(AttentionMaps {
            grid_w: gw,
            grid_h: gh,
            heads: (0..heads as usize)
                .map(|h| flat[h * n..(h + 1) * n].to_vec())
                .collect(),
        })
    }
}
