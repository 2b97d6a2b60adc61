//! Importing PyTorch weights (`.pth` from `torch.save`) into a sevit [`Checkpoint`].
//!
//! Understands the DISTL/DINO training checkpoint (a dict with `student` and `teacher`
//! state dicts, `module.` prefixes from DDP, an `args` Namespace), a bare state dict of the
//! whole network, a `{"state_dict": ...}` / `{"model": ...}` wrapper, and DINO's released
//! backbone weights (keys without any prefix). Keys are mapped to sevit names, checked
//! against the model built from the configuration, and written as `student.*` and
//! `teacher.*`; head variables absent from the file are taken from a freshly initialised
//! model (seeded) and listed, keys the model does not have are dropped and listed, and
//! shape mismatches or an incomplete backbone are an error that lists them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{Checkpoint, KeyReport};
use crate::config::{DinoHeadConfig, ModelConfig, ViTConfig};
use crate::layouts::{self, Layout, Mapped};
use crate::net::DistlNet;
use crate::pickle::Value;

mod read;
use read::{hf_hints, read_source};

/// Metadata key under which imported checkpoints store the model configuration (JSON).
pub const MODEL_CONFIG_KEY: &str = "model_config";

/// Where the model configuration comes from.
#[derive(Clone, Debug, Default)]
pub enum ConfigSource {
    /// Infer everything from the tensor shapes; the number of attention heads (which no
    /// shape shows) from [`ImportOptions::num_heads`], else the checkpoint's `args` (`arch`
    /// such as `vit_small`), else the standard ViT widths (192, 384, 768, 1024).
    #[default]
    Infer,
    /// Use this backbone; infer the heads from the weights (reference heads where absent).
    Backbone(ViTConfig),
    /// Use exactly this configuration.
    Exact(ModelConfig),
}

impl ConfigSource {
    /// Parses a `--model-config` value: a path to a JSON file holding a [`ModelConfig`]
    /// (used exactly), or a backbone preset name such as `small/8` (heads inferred).
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if spec.ends_with(".json") || path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading model config {spec}"))?;
            let cfg: ModelConfig = serde_json::from_str(&text)
                .with_context(|| format!("{spec} is not a JSON model config"))?;
            cfg.validate()
                .with_context(|| format!("model config {spec}"))?;
            return Ok(ConfigSource::Exact(cfg));
        }
        Ok(ConfigSource::Backbone(ViTConfig::preset(spec)?))
    }
}

/// Options of [`import_pth`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The model configuration.
    pub config: ConfigSource,
    /// Seed of the fresh initialisation used for variables absent from the file.
    pub seed: i64,
    /// Attention heads of the backbone, for [`ConfigSource::Infer`].
    pub num_heads: Option<i64>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            config: ConfigSource::Infer,
            seed: 0,
            num_heads: None,
        }
    }
}

/// Attention heads named by a checkpoint's `args` (an `argparse.Namespace`): `num_heads`, or
/// the DINO/DISTL `arch` names `vit_tiny`, `vit_small`, `vit_base`, `vit_large`.
fn heads_from_args(args: Option<&Value>) -> Option<i64> {
    let Some(Value::Object(o)) = args else {
        return None;
    };
    let o = o.borrow();
    let state = o.state.as_ref()?;
    if let Some(n) = state.get("num_heads").and_then(|v| v.as_int()) {
        return Some(n);
    }
    match state.get("arch")?.as_str()? {
        "vit_tiny" => Some(3),
        "vit_small" => Some(6),
        "vit_base" => Some(12),
        "vit_large" => Some(16),
        _ => None,
    }
}

/// What happened to one network (`student` or `teacher`).
#[derive(Clone, Debug, Serialize)]
pub struct RoleSummary {
    /// `student` or `teacher`.
    pub role: String,
    /// Where its weights came from in the file (`student`, `teacher`, `(root)`, ...), or
    /// `copy of student`.
    pub source: String,
    /// Variables taken from the file.
    pub loaded: usize,
    /// Model variables absent from the file (freshly initialised).
    pub missing: Vec<String>,
    /// File keys the model does not have (dropped), in sevit naming.
    pub unexpected: Vec<String>,
}

/// Result of an import.
#[derive(Clone, Debug, Serialize)]
pub struct ImportSummary {
    /// The configuration the weights were checked against (also stored in the checkpoint).
    pub config: ModelConfig,
    /// Per network.
    pub roles: Vec<RoleSummary>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.config.vit;
        writeln!(
            f,
            "model: ViT embed {} depth {} heads {} patch {} img {}; DINO head out {} (hidden {}, bottleneck {}, {} layers); class head hidden {}",
            v.embed_dim, v.depth, v.num_heads, v.patch_size, v.img_size, self.config.head.out_dim,
            self.config.head.hidden_dim, self.config.head.bottleneck_dim, self.config.head.nlayers, self.config.cls_hidden_dim
        )?;
        for r in &self.roles {
            writeln!(f, "{}: {} tensors from {}", r.role, r.loaded, r.source)?;
            let report = KeyReport {
                missing: r.missing.clone(),
                unexpected: r.unexpected.clone(),
                mismatched: vec![],
            };
            if !report.is_empty() {
                write!(f, "{report}")?;
            }
        }
        Ok(())
    }
}

/// Maps state-dict keys as found in a file to sevit names: strips DDP's `module.` prefixes,
/// then maps the file's layout (DINO/timm, Hugging Face ViT or DINOv2; see [`crate::layouts`]).
pub fn normalise_keys(tensors: Vec<(String, Tensor)>) -> Result<Mapped> {
    let stripped: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(mut k, t)| {
            while let Some(rest) = k.strip_prefix("module.") {
                k = rest.to_string();
            }
            (k, t)
        })
        .collect();
    layouts::to_sevit(stripped)
}

fn dim(t: &BTreeMap<String, Tensor>, key: &str, i: usize) -> Option<i64> {
    t.get(key).and_then(|x| x.size().get(i).copied())
}

/// Infers a backbone configuration from the shapes of `backbone.*` tensors. The number of
/// attention heads is `num_heads` when given, else the standard one of the ViT widths 192
/// (tiny, 3), 384 (small, 6), 768 (base, 12) and 1024 (large, 16); any other width is an
/// error that asks for it, since a wrong head count loads without complaint and computes a
/// different model.
pub fn infer_vit(t: &BTreeMap<String, Tensor>, num_heads: Option<i64>) -> Result<ViTConfig> {
    let d = dim(t, "backbone.cls_token", 2)
        .ok_or_else(|| anyhow!("no backbone.cls_token in the weights"))?;
    let p = dim(t, "backbone.patch_embed.proj.weight", 3)
        .ok_or_else(|| anyhow!("no backbone.patch_embed.proj.weight in the weights"))?;
    let n = dim(t, "backbone.pos_embed", 1)
        .ok_or_else(|| anyhow!("no backbone.pos_embed in the weights"))?
        - 1;
    let grid = (n as f64).sqrt().round() as i64;
    if grid * grid != n {
        bail!("backbone.pos_embed has {n} patch positions, not a square grid");
    }
    let depth = t
        .keys()
        .filter_map(|k| {
            k.strip_prefix("backbone.blocks.")?
                .split('.')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .max()
        .map(|m| m + 1)
        .ok_or_else(|| anyhow!("no backbone.blocks.* in the weights"))?;
    let num_heads = match (num_heads, d) {
        (Some(h), _) if h > 0 && d % h == 0 => h,
        (Some(h), _) => bail!("{h} attention heads do not divide the embedding width {d}"),
        (None, 192 | 384 | 768 | 1024) => d / 64,
        (None, _) => bail!(
            "the number of attention heads of a {d}-wide backbone is not in the weights and the \
             checkpoint's args do not name it: give --num-heads N (or a full --model-config)"
        ),
    };
    let hidden = dim(t, "backbone.blocks.0.mlp.fc1.weight", 0).unwrap_or(4 * d);
    Ok(ViTConfig {
        img_size: grid * p,
        patch_size: p,
        embed_dim: d,
        depth,
        num_heads,
        mlp_ratio: hidden as f64 / d as f64,
        qkv_bias: t.contains_key("backbone.blocks.0.attn.qkv.bias"),
        ln_eps: 1e-6,
        input_norm: None,
        // the initial value of LayerScale gammas only matters for a fresh model
        layer_scale: t.contains_key("backbone.blocks.0.ls1.gamma").then_some(1.0),
    })
}

/// Infers the heads from `head.*` / `cls_head.*` tensors (reference values where absent).
pub fn infer_heads(
    t: &BTreeMap<String, Tensor>,
    vit: ViTConfig,
    args: Option<&Value>,
) -> ModelConfig {
    let mut cfg = ModelConfig::new(vit);
    if let Some(out) = dim(t, "head.last_layer.weight_v", 0) {
        cfg.head.out_dim = out;
        cfg.head.bottleneck_dim =
            dim(t, "head.last_layer.weight_v", 1).unwrap_or(cfg.head.bottleneck_dim);
        let layers = t
            .keys()
            .filter(|k| k.starts_with("head.mlp.") && k.ends_with(".weight"))
            .count() as i64;
        if t.contains_key("head.mlp.weight") {
            cfg.head.nlayers = 1;
        } else if layers > 0 {
            cfg.head.nlayers = layers;
            cfg.head.hidden_dim = dim(t, "head.mlp.0.weight", 0).unwrap_or(cfg.head.hidden_dim);
        }
        let from_args = args.and_then(|a| match a {
            Value::Object(o) => o
                .borrow()
                .state
                .as_ref()
                .and_then(|s| s.get("norm_last_layer")),
            _ => None,
        });
        cfg.head.norm_last_layer = match from_args {
            Some(Value::Bool(b)) => b,
            _ => t
                .get("head.last_layer.weight_g")
                .map(|g| g.ones_like().allclose(g, 1e-6, 1e-6, false))
                .unwrap_or(true),
        };
    } else if let Some(Value::Object(o)) = args {
        if let Some(out) = o
            .borrow()
            .state
            .as_ref()
            .and_then(|s| s.get("out_dim"))
            .and_then(|v| v.as_int())
        {
            cfg.head = DinoHeadConfig {
                out_dim: out,
                ..cfg.head
            };
        }
    }
    if let Some(h) = dim(t, "cls_head.mlp.0.weight", 0) {
        cfg.cls_hidden_dim = h;
    }
    cfg
}

fn fresh_model(cfg: &ModelConfig, seed: i64) -> HashMap<String, Tensor> {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let _net = DistlNet::new(&vs.root(), cfg, 0.0);
    vs.variables()
}

/// Reads `input` (a `torch.save` file, a `.safetensors` file or a Hugging Face model
/// folder; DINO/DISTL, timm, Hugging Face ViT or DINOv2 names) and builds a sevit checkpoint
/// from it.
pub fn import_weights(input: &Path, opts: &ImportOptions) -> Result<(Checkpoint, ImportSummary)> {
    import_source(input, read_source(input, None)?, opts)
}

/// [`import_weights`] of the weights already read from `input`.
fn import_source(
    input: &Path,
    source: read::Source,
    opts: &ImportOptions,
) -> Result<(Checkpoint, ImportSummary)> {
    let args = source.args;
    let mut maps: Vec<(String, BTreeMap<String, Tensor>)> = Vec::new();
    let mut layout = Layout::Dino;
    let mut dropped = Vec::new();
    for (name, flat) in source.dicts {
        let mapped = normalise_keys(flat).with_context(|| format!("{}", input.display()))?;
        layout = mapped.layout;
        dropped.extend(mapped.dropped);
        let map = mapped
            .tensors
            .into_iter()
            .map(|(k, t)| (k, t.to_kind(Kind::Float)))
            .collect();
        maps.push((name, map));
    }
    if maps.iter().all(|(_, m)| m.is_empty()) {
        bail!(
            "{}: no tensors found in {:?}",
            input.display(),
            maps.iter().map(|(s, _)| s).collect::<Vec<_>>()
        );
    }
    let hints = hf_hints(source.hf_config.as_ref(), layout)
        .with_context(|| format!("{}", input.display()))?;
    if !dropped.is_empty() {
        tracing::info!(layout = %layout, "not a backbone's, dropped: {}", dropped.join(", "));
    }
    let first = &maps[0].1;
    let cfg = match &opts.config {
        ConfigSource::Exact(c) => c.clone(),
        ConfigSource::Backbone(v) => {
            // The preset's image size only sizes pos_embed: take the file's grid instead.
            let mut v = v.clone();
            if let (Some(n), Some(p)) = (
                dim(first, "backbone.pos_embed", 1),
                dim(first, "backbone.patch_embed.proj.weight", 3),
            ) {
                let g = ((n - 1) as f64).sqrt().round() as i64;
                if g * g == n - 1 && p == v.patch_size {
                    v.img_size = g * p;
                }
            }
            infer_heads(first, v, args.as_ref())
        }
        ConfigSource::Infer => {
            let heads = opts
                .num_heads
                .or(hints.num_heads)
                .or_else(|| heads_from_args(args.as_ref()));
            let mut vit = infer_vit(first, heads)
                .with_context(|| format!("inferring the model config from {}", input.display()))?;
            if let Some(eps) = hints.ln_eps {
                vit.ln_eps = eps;
            }
            if vit.layer_scale.is_some() {
                vit.layer_scale = hints.layer_scale.or(vit.layer_scale);
            }
            infer_heads(first, vit, args.as_ref())
        }
    };
    cfg.validate()?;
    let fresh = fresh_model(&cfg, opts.seed);

    let mut ck = Checkpoint::new();
    let mut roles = Vec::new();
    let mut problems = String::new();
    for (source, map) in &maps {
        let role = if source == "teacher" && maps.len() > 1 {
            "teacher"
        } else {
            "student"
        };
        let probe = Checkpoint {
            tensors: map
                .iter()
                .map(|(k, t)| (k.clone(), t.shallow_clone()))
                .collect(),
            metadata: BTreeMap::new(),
        };
        let report: KeyReport = probe.compare("", &fresh);
        let partial_backbone = map.keys().any(|k| k.starts_with("backbone."))
            && report.missing.iter().any(|k| k.starts_with("backbone."));
        if partial_backbone {
            let missing: Vec<String> = report
                .missing
                .iter()
                .filter(|k| k.starts_with("backbone."))
                .cloned()
                .collect();
            let r = KeyReport {
                missing,
                unexpected: report.unexpected.clone(),
                mismatched: report.mismatched.clone(),
            };
            problems.push_str(&format!(
                " {role} (from {source}): backbone incomplete for this config:\n{r}"
            ));
            continue;
        }
        let extra_backbone: Vec<&String> = report
            .unexpected
            .iter()
            .filter(|k| k.starts_with("backbone."))
            .collect();
        if !extra_backbone.is_empty() {
            problems.push_str(&format!(
                " {role} (from {source}): backbone weights this config has no place for \
                 (LayerScale, another depth?): {extra_backbone:?}\n"
            ));
            continue;
        }
        if !report.mismatched.is_empty() {
            problems.push_str(&format!(
                " {role} (from {source}):\n{}",
                KeyReport {
                    missing: vec![],
                    unexpected: vec![],
                    ..report.clone()
                }
            ));
            continue;
        }
        for (name, init) in &fresh {
            let t = map
                .get(name)
                .map(|t| t.shallow_clone())
                .unwrap_or_else(|| init.copy());
            ck.tensors.insert(format!("{role}.{name}"), t);
        }
        roles.push(RoleSummary {
            role: role.to_string(),
            source: source.clone(),
            loaded: fresh.len() - report.missing.len(),
            missing: report.missing,
            unexpected: report.unexpected,
        });
    }
    if !problems.is_empty() {
        bail!(
            "{} does not fit the model configuration {}:\n{problems}",
            input.display(),
            serde_json::to_string(&cfg).unwrap_or_default()
        );
    }
    if !roles.iter().any(|r| r.role == "teacher") {
        let student: Vec<(String, Tensor)> = ck
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("student.")
                    .map(|n| (format!("teacher.{n}"), t.copy()))
            })
            .collect();
        ck.tensors.extend(student);
        let s = &roles[0];
        roles.push(RoleSummary {
            role: "teacher".into(),
            source: "copy of student".into(),
            loaded: s.loaded,
            missing: s.missing.clone(),
            unexpected: vec![],
        });
    }
    ck.put_json(MODEL_CONFIG_KEY, &cfg)?;
    ck.metadata
        .insert("import.source".into(), input.display().to_string());
    ck.metadata.insert("seed".into(), opts.seed.to_string());
    if let Some(a) = &args {
        ck.metadata
            .insert("import.args".into(), a.to_json().to_string());
    }
    for r in &roles {
        tracing::info!(role = %r.role, source = %r.source, loaded = r.loaded, missing = r.missing.len(), unexpected = r.unexpected.len(), "imported");
    }
    Ok((ck, ImportSummary { config: cfg, roles }))
}

/// Whether a checkpoint is sevit's own (networks under `student.`, `teacher.`, or a bare
/// `backbone.`), as opposed to another implementation's weights.
fn is_sevit_checkpoint(ck: &Checkpoint) -> bool {
    ck.tensors.keys().any(|k| {
        k.starts_with("student.") || k.starts_with("teacher.") || k.starts_with("backbone.")
    })
}

/// Loads a starting point for training: a sevit checkpoint as it is, or any file
/// [`import_weights`] reads (DINO/DISTL `.pth`, timm, Hugging Face ViT or DINOv2), imported for
/// a backbone of `vit`'s architecture. An imported backbone that computes something else than
/// `vit` (LayerNorm epsilon, LayerScale, heads, MLP width, qkv bias) is an error naming the
/// `[model.vit]` values that would fit; the image size may differ (position embeddings are
/// resized when loaded).
pub fn load_init(path: &Path, vit: &ViTConfig) -> Result<Checkpoint> {
    let foreign_file = path.is_dir()
        || path
            .extension()
            .is_some_and(|e| e == "pth" || e == "pt" || e == "bin" || e == "tar");
    // A .safetensors file is read once: kept when it is sevit's, imported otherwise.
    let loaded = if foreign_file {
        None
    } else {
        let ck = Checkpoint::load(path)?;
        if is_sevit_checkpoint(&ck) {
            return Ok(ck);
        }
        Some(ck)
    };
    let opts = ImportOptions {
        num_heads: Some(vit.num_heads),
        ..Default::default()
    };
    let (ck, summary) = read_source(path, loaded)
        .and_then(|source| import_source(path, source, &opts))
        .with_context(|| format!("importing {}", path.display()))?;
    let got = &summary.config.vit;
    let same = |a: &ViTConfig| {
        (
            a.patch_size,
            a.embed_dim,
            a.depth,
            a.num_heads,
            a.qkv_bias,
            a.layer_scale.is_some(),
        )
    };
    if same(got) != same(vit) || got.ln_eps != vit.ln_eps || got.mlp_ratio != vit.mlp_ratio {
        let wanted = ViTConfig {
            img_size: vit.img_size,
            input_norm: vit.input_norm,
            ..got.clone()
        };
        bail!(
            "{} holds a {} backbone, not the model's {}: set [model.vit] to {}",
            path.display(),
            describe(got),
            describe(vit),
            toml_table(&wanted)
        );
    }
    tracing::info!("{}: imported ({})", path.display(), describe(got));
    Ok(ck)
}

fn describe(v: &ViTConfig) -> String {
    format!(
        "patch {} embed {} depth {} heads {} mlp x{} ln_eps {:e}{}",
        v.patch_size,
        v.embed_dim,
        v.depth,
        v.num_heads,
        v.mlp_ratio,
        v.ln_eps,
        if v.layer_scale.is_some() {
            " LayerScale"
        } else {
            ""
        }
    )
}

fn toml_table(v: &ViTConfig) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_object().cloned())
        .map(|o| {
            let fields: Vec<String> = o.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("{{ {} }}", fields.join(", "))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
