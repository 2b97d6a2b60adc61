//! [`TrainConfig`]: every setting of the engine, loaded from TOML (unknown keys rejected),
//! with `key=value` overrides. The defaults are the DISTL reference (`configs/paper.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sevit_correction::CorrectionConfig;
use sevit_data::MultiCropConfig;
use sevit_model::{DinoHeadConfig, ModelConfig, ViTConfig};

/// The network: a backbone preset (or a custom backbone) and the heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Backbone preset: `micro`, `tiny/P`, `small/P`, `base/P` (P = 8 or 16).
    pub preset: String,
    /// A custom backbone; replaces `preset` when given.
    pub vit: Option<ViTConfig>,
    /// Overrides the size the position embeddings are built for (other input sizes are
    /// interpolated, as DINO does).
    pub img_size: Option<i64>,
    /// Feature-head output dimension (65536).
    pub out_dim: i64,
    /// Feature-head hidden width (2048).
    pub hidden_dim: i64,
    /// Feature-head bottleneck width (256).
    pub bottleneck_dim: i64,
    /// Feature-head MLP layers (3).
    pub nlayers: i64,
    /// Weight-normalised last layer with its norm fixed to 1 (true).
    pub norm_last_layer: bool,
    /// Class-head hidden width (256).
    pub cls_hidden_dim: i64,
    /// Stochastic depth of the student (0.1); the teacher has none.
    pub drop_path: f64,
    /// `[mean, std]` to standardise the input pixels with inside the backbone (unset: pixels
    /// in [0, 1] as DISTL feeds them); replaces a custom `vit`'s own setting when given.
    pub input_norm: Option<(f64, f64)>,
}

/// The keys (`section.key`) whose values differ between two configs, sorted.
pub fn differing_keys(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    fn leaves(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let flat = |c: &TrainConfig| {
        let mut out = BTreeMap::new();
        if let Ok(v) = toml::Value::try_from(c) {
            leaves("", &v, &mut out);
        }
        out
    };
    let (fa, fb) = (flat(a), flat(b));
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .cloned()
        .collect()
}

/// `model.preset` of a config whose backbone is given by a `[model.vit]` table.
pub const CUSTOM_PRESET: &str = "custom";

impl Default for ModelSection {
    fn default() -> Self {
        let h = DinoHeadConfig::default();
        Self {
            preset: "small/8".into(),
            vit: None,
            img_size: None,
            out_dim: h.out_dim,
            hidden_dim: h.hidden_dim,
            bottleneck_dim: h.bottleneck_dim,
            nlayers: h.nlayers,
            norm_last_layer: h.norm_last_layer,
            cls_hidden_dim: 256,
            drop_path: 0.1,
            input_norm: None,
        }
    }
}

impl ModelSection {
    /// The resolved, validated [`ModelConfig`].
    pub fn model_config(&self) -> anyhow::Result<ModelConfig> {
        let mut vit = match &self.vit {
            Some(v) => v.clone(),
            None => ViTConfig::preset(&self.preset)?,
        };
        if let Some(s) = self.img_size {
            vit.img_size = s;
        }
        if let Some((mean, std)) = self.input_norm {
            if !(mean.is_finite() && std.is_finite() && std > 0.0) {
                bail!("model.input_norm = [{mean}, {std}]: expected [mean, std] with std > 0");
            }
            vit.input_norm = Some((mean, std));
        }
        let cfg = ModelConfig {
            vit,
            head: DinoHeadConfig {
                out_dim: self.out_dim,
                hidden_dim: self.hidden_dim,
                bottleneck_dim: self.bottleneck_dim,
                nlayers: self.nlayers,
                norm_last_layer: self.norm_last_layer,
            },
            cls_hidden_dim: self.cls_hidden_dim,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Fails unless `side` is a positive multiple of the model's `patch` size: other sizes would
/// silently drop the image's last rows and columns of pixels in the patch embedding.
pub fn check_patch_multiple(name: &str, side: u32, patch: i64) -> anyhow::Result<()> {
    if side == 0 || patch <= 0 || i64::from(side) % patch != 0 {
        let below = (i64::from(side) / patch.max(1)) * patch;
        bail!(
            "{name} = {side} is not a multiple of the model's patch size {patch} \
             (nearest: {} or {})",
            below.max(patch),
            below + patch
        );
    }
    Ok(())
}

/// Optimisation: AdamW, schedules, clipping, EMA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimSection {
    /// Images per batch (8).
    pub batch_size: usize,
    /// Epochs of each DISTL step T (5).
    pub epochs: usize,
    /// Learning rate per 16 images: the peak lr is `lr * batch_size / 16` (5e-5).
    pub lr: f64,
    /// Final learning rate of the cosine decay (1e-6).
    pub min_lr: f64,
    /// Epochs of linear lr warm-up from 0 (1).
    pub warmup_epochs: usize,
    /// Weight decay at the start of the cosine schedule (0.01).
    pub weight_decay: f64,
    /// Weight decay at the end (0.01).
    pub weight_decay_end: f64,
    /// Per-tensor gradient-norm clip; 0 disables (3.0).
    pub clip_grad: f64,
    /// Epochs during which the feature head's last layer is not updated (1).
    pub freeze_last_layer: usize,
    /// Teacher EMA momentum at the start; cosine to 1 (0.9995).
    pub momentum_teacher: f64,
    /// Drop the last incomplete batch of the unlabeled loader (true, as the reference). Sets
    /// smaller than one batch keep their single short batch.
    pub drop_last: bool,
}

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            batch_size: 8,
            epochs: 5,
            lr: 5e-5,
            min_lr: 1e-6,
            warmup_epochs: 1,
            weight_decay: 0.01,
            weight_decay_end: 0.01,
            clip_grad: 3.0,
            freeze_last_layer: 1,
            momentum_teacher: 0.9995,
            drop_last: true,
        }
    }
}

impl OptimSection {
    /// The peak learning rate after the linear scaling rule: `lr * batch_size / 16`.
    pub fn peak_lr(&self) -> f64 {
        self.lr * self.batch_size as f64 / 16.0
    }
}

/// The DISTL losses and the correction policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistlSection {
    /// λ: weight of the DINO loss (0.5).
    pub lambda: f64,
    /// Epochs of a DISTL step with the DINO term; afterwards only self-training (None = every
    /// epoch). (Called `ssl_epochs` before; checkpoints that say so still load.)
    #[serde(alias = "ssl_epochs")]
    pub dino_epochs: Option<usize>,
    /// Scale the self-training loss by α(e) = 2 (e + 1) / E (true).
    pub alpha: bool,
    /// Train the student on the teacher's pseudo-labels of the unlabeled images (true, the
    /// method); `false` keeps only the DINO term on them (and the correction passes), an
    /// ablation.
    pub self_training: bool,
    /// Teacher temperature at the start of the warm-up (0.04).
    pub warmup_teacher_temp: f64,
    /// Teacher temperature after the warm-up (0.04).
    pub teacher_temp: f64,
    /// Epochs of linear teacher-temperature warm-up (0, as the DISTL reference).
    pub warmup_teacher_temp_epochs: usize,
    /// Student temperature (0.1).
    pub student_temp: f64,
    /// Momentum of the DINO centre (0.9).
    pub center_momentum: f64,
    /// When correction passes over the labeled set run.
    pub correction: CorrectionConfig,
    /// Epochs of DINO-head warm-up before the first DISTL step (0: none, as the reference,
    /// whose initial model comes with a DINO-pretrained head). The student's feature head
    /// (and, through the EMA, the teacher's) learns the DINO loss alone on step 1's
    /// unlabeled images while the backbone and the class head stay frozen
    /// (`RUN/head-warmup/`); step 1 then starts, teacher and student, from the warmed-up
    /// student. An initial model trained with labels only has a random feature head, whose
    /// first DINO gradients into the backbone would otherwise follow random prototypes.
    pub head_warmup_epochs: usize,
}

impl Default for DistlSection {
    fn default() -> Self {
        Self {
            lambda: 0.5,
            dino_epochs: None,
            alpha: true,
            self_training: true,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 0,
            student_temp: 0.1,
            center_momentum: 0.9,
            correction: CorrectionConfig::default(),
            head_warmup_epochs: 0,
        }
    }
}

/// The initial model (supervised) and the optional self-supervised pretraining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainSection {
    /// Epochs of supervised training of the initial model (5, as the reference).
    pub epochs: usize,
    /// Epochs of DINO-only self-supervised pretraining (`--self-supervised`) (5). (Called
    /// `ssl_epochs` before; checkpoints that say so still load.)
    #[serde(alias = "ssl_epochs")]
    pub self_supervised_epochs: usize,
    /// Which weights a supervised stage (the initial model, the supervised baselines) ends
    /// with: those of its last epoch (`"last"`, the reference), or those of the epoch with the
    /// best AUC on the run's validation split (`"best_val"`; needs `sevit split
    /// --val-fraction`).
    pub select: ModelSelection,
    /// With `select = "best_val"`: evaluate the validation split every this many epochs (and
    /// after the last) (1).
    pub val_every: usize,
    /// Independent trainings of each supervised stage, each from its own seed (restart 0 from
    /// `seed` itself), of which the one with the best validation AUC becomes the stage; needs
    /// `select = "best_val"` (1: a single training). From random weights a small labeled set
    /// can leave a ViT on the chance-loss plateau for a whole run, depending on the seed.
    pub restarts: usize,
}

impl Default for PretrainSection {
    fn default() -> Self {
        Self {
            epochs: 5,
            self_supervised_epochs: 5,
            select: ModelSelection::Last,
            val_every: 1,
            restarts: 1,
        }
    }
}

/// Model selection of a supervised stage ([`PretrainSection::select`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSelection {
    /// The weights after the last epoch.
    Last,
    /// The weights of the epoch with the best validation AUC.
    BestVal,
}

/// Data loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Skip unreadable images (with a warning) instead of failing.
    pub skip_bad: bool,
    /// Batches prepared ahead by the loader thread.
    pub prefetch: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            skip_bad: false,
            prefetch: 2,
        }
    }
}

/// Test-set evaluation after each stage of `evolve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// Side of the evaluated images (default: `views.global_size`, 256).
    pub image_size: Option<u32>,
    /// Batch size of evaluation.
    pub batch_size: usize,
    /// Evaluate the `student` (default) or the `teacher`.
    pub weights: Weights,
    /// Confidence level of the DeLong interval (0.95).
    pub ci_level: f64,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            image_size: None,
            batch_size: 32,
            weights: Weights::Student,
            ci_level: 0.95,
        }
    }
}

/// Which network of a checkpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    /// The student (default for evaluation, and what the next stage starts from).
    Student,
    /// The EMA teacher.
    Teacher,
}

impl Weights {
    /// `student` or `teacher`.
    pub fn name(&self) -> &'static str {
        match self {
            Weights::Student => "student",
            Weights::Teacher => "teacher",
        }
    }

    /// Checkpoint prefix: `student.` or `teacher.`.
    pub fn prefix(&self) -> &'static str {
        match self {
            Weights::Student => "student.",
            Weights::Teacher => "teacher.",
        }
    }
}

impl std::str::FromStr for Weights {
    type Err = String;

    /// `student` or `teacher`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "student" => Ok(Weights::Student),
            "teacher" => Ok(Weights::Teacher),
            _ => Err(format!("expected student or teacher, got {s:?}")),
        }
    }
}

/// Every engine setting. Defaults are the DISTL reference (the `paper` preset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of everything random (data order and augmentation, initialisation, drop-path).
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
    pub device: String,
    /// libtorch intra-op threads; 0 = all available cores.
    pub threads: usize,
    /// Forward-pass precision: `f32`, or `bf16` autocast (CUDA or CPU); see
    /// [`crate::precision`].
    pub precision: String,
    /// The network.
    pub model: ModelSection,
    /// Multi-crop views (sevit-data).
    pub views: MultiCropConfig,
    /// Optimisation.
    pub optim: OptimSection,
    /// DISTL losses and correction.
    pub distl: DistlSection,
    /// Initial model.
    pub pretrain: PretrainSection,
    /// Data loading.
    pub data: DataSection,
    /// Evaluation.
    pub eval: EvalSection,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            device: "auto".into(),
            threads: 0,
            precision: "f32".into(),
            model: ModelSection::default(),
            views: MultiCropConfig::default(),
            optim: OptimSection::default(),
            distl: DistlSection::default(),
            pretrain: PretrainSection::default(),
            data: DataSection::default(),
            eval: EvalSection::default(),
        }
    }
}

impl TrainConfig {
    /// Parses TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> anyhow::Result<Self> {
        let mut cfg: TrainConfig =
            toml::from_str(text).with_context(|| format!("invalid training config {origin}"))?;
        // (parsed once more as a table: the error keeps the line of a bad value above)
        if let Ok(table) = toml::from_str::<toml::Table>(text) {
            refuse_renamed_keys(&table).with_context(|| format!("training config {origin}"))?;
        }
        // A `[model.vit]` table replaces the preset: name it so, rather than keep the default
        // preset's name beside a different model (in config.toml, `sevit info`, reports).
        if cfg.model.vit.is_some() {
            let p = cfg.model.preset.as_str();
            if p != CUSTOM_PRESET && p != ModelSection::default().preset {
                bail!(
                    "invalid training config {origin}: model.preset = {p:?} and a [model.vit] table: \
                     the table replaces the preset; keep one of them"
                );
            }
            cfg.model.preset = CUSTOM_PRESET.into();
        }
        cfg.validate()
            .with_context(|| format!("invalid training config {origin}"))?;
        Ok(cfg)
    }

    /// Loads a TOML file, then applies `overrides` (`section.key=value`, the value in TOML
    /// syntax; bare words are taken as strings).
    pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading training config {}", path.display()))?;
        Self::from_toml_with_overrides(&text, &path.display().to_string(), overrides)
    }

    /// The defaults (paper preset) with `overrides` applied.
    pub fn default_with_overrides(overrides: &[String]) -> anyhow::Result<Self> {
        Self::from_toml_with_overrides("", "(defaults)", overrides)
    }

    /// Parses `text`, applies `overrides`, validates.
    pub fn from_toml_with_overrides(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> anyhow::Result<Self> {
        let mut value: toml::Table = toml::from_str(text)
            .with_context(|| format!("invalid TOML in training config {origin}"))?;
        for o in overrides {
            apply_override(&mut value, o).with_context(|| format!("override `{o}`"))?;
        }
        let merged = toml::to_string(&value)?;
        let what = if overrides.is_empty() {
            origin.to_string()
        } else {
            format!("{origin} with overrides {overrides:?}")
        };
        Self::from_toml_str(&merged, &what)
    }

    /// Serialises to TOML (the resolved config written into run directories).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks value ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        let model = self.model.model_config()?;
        self.precision()?;
        let o = &self.optim;
        if o.batch_size == 0 || o.epochs == 0 {
            bail!("optim.batch_size and optim.epochs must be at least 1");
        }
        for (name, v) in [
            ("optim.lr", o.lr),
            ("optim.min_lr", o.min_lr),
            ("optim.weight_decay", o.weight_decay),
            ("optim.weight_decay_end", o.weight_decay_end),
            ("optim.clip_grad", o.clip_grad),
            ("optim.momentum_teacher", o.momentum_teacher),
        ] {
            if !v.is_finite() {
                bail!("{name} = {v} is not a finite number");
            }
        }
        if o.lr <= 0.0 || o.min_lr < 0.0 {
            bail!("optim.lr must be positive and optim.min_lr non-negative");
        }
        if !(0.0..=1.0).contains(&o.momentum_teacher) {
            bail!(
                "optim.momentum_teacher must be in [0, 1], got {}",
                o.momentum_teacher
            );
        }
        let d = &self.distl;
        if !(0.0..=1.0).contains(&d.lambda) {
            bail!("distl.lambda must be in [0, 1], got {}", d.lambda);
        }
        if !(d.teacher_temp > 0.0 && d.warmup_teacher_temp > 0.0 && d.student_temp > 0.0) {
            bail!("temperatures must be positive");
        }
        d.correction.build()?;
        if !d.self_training && self.dino_epochs() < o.epochs {
            bail!(
                "distl.self_training = false leaves the unlabeled images no loss after \
                 distl.dino_epochs = {} of optim.epochs = {}: keep the DINO term in every epoch",
                self.dino_epochs(),
                o.epochs
            );
        }
        if self.pretrain.epochs == 0 {
            bail!("pretrain.epochs must be at least 1");
        }
        if self.pretrain.val_every == 0 {
            bail!("pretrain.val_every must be at least 1");
        }
        if self.pretrain.restarts == 0 {
            bail!("pretrain.restarts must be at least 1");
        }
        if self.pretrain.restarts > 1 && self.pretrain.select != ModelSelection::BestVal {
            bail!(
                "pretrain.restarts = {} keeps the restart with the best validation AUC: set \
                 pretrain.select = \"best_val\" (and split with `sevit split --val-fraction`)",
                self.pretrain.restarts
            );
        }
        if !(self.eval.ci_level > 0.0 && self.eval.ci_level < 1.0) {
            bail!("eval.ci_level must be in (0, 1)");
        }
        parse_device(&self.device)?;
        self.views.validate()?;
        let patch = model.vit.patch_size;
        for (name, side) in [
            ("views.global_size", Some(self.views.global_size)),
            ("views.local_size", Some(self.views.local_size)),
            ("eval.image_size", self.eval.image_size),
        ] {
            if let Some(side) = side {
                check_patch_multiple(name, side, patch)?;
            }
        }
        Ok(())
    }

    /// Side of evaluated images: `eval.image_size`, else the global view size.
    pub fn eval_image_size(&self) -> u32 {
        self.eval.image_size.unwrap_or(self.views.global_size)
    }

    /// Epochs with the DINO term in DISTL steps (`distl.dino_epochs`, default all).
    pub fn dino_epochs(&self) -> usize {
        self.distl.dino_epochs.unwrap_or(self.optim.epochs)
    }

    /// The resolved device.
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        parse_device(&self.device)
    }

    /// The forward-pass precision (`precision`), checked for training.
    pub fn precision(&self) -> anyhow::Result<crate::precision::Precision> {
        let p: crate::precision::Precision = self
            .precision
            .parse()
            .with_context(|| format!("precision = {:?}", self.precision))?;
        crate::precision::check_training(p)?;
        Ok(p)
    }

    /// Sets libtorch's intra-op threads (`threads`; when 0, `SEVIT_THREADS` if set — `sevit
    /// launch` sets it to the cores per process — else all available cores) and returns the
    /// number used.
    pub fn apply_threads(&self) -> usize {
        let from_env = std::env::var("SEVIT_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0);
        let n = if self.threads == 0 {
            from_env.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
        } else {
            self.threads
        };
        tch::set_num_threads(n as i32);
        n
    }
}

/// Loads `path` (TOML) with `overrides`, or the paper defaults with `overrides` when `path` is
/// `None`.
pub fn load_config(path: Option<&Path>, overrides: &[String]) -> anyhow::Result<TrainConfig> {
    match path {
        Some(p) => TrainConfig::load(p, overrides),
        None => TrainConfig::default_with_overrides(overrides),
    }
}

/// `cpu`, `cuda`, `cuda:N`, `auto`.
pub fn parse_device(s: &str) -> anyhow::Result<tch::Device> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => tch::Device::Cpu,
        "auto" => tch::Device::cuda_if_available(),
        "cuda" | "gpu" => {
            if !tch::Cuda::is_available() {
                bail!("device \"cuda\" requested but libtorch sees no CUDA device");
            }
            tch::Device::Cuda(0)
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => {
                if !tch::Cuda::is_available() || i as i64 >= tch::Cuda::device_count() {
                    bail!("device {other:?} is not available");
                }
                tch::Device::Cuda(i)
            }
            _ => bail!("unknown device {s:?}: expected cpu, cuda, cuda:N or auto"),
        },
    })
}

mod overrides;
use overrides::{apply_override, refuse_renamed_keys};

#[cfg(test)]
mod tests;
