//! Reading the files an import starts from: `torch.save` pickles, `.safetensors`, Hugging
//! Face model folders and their `config.json`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tch::Tensor;

use crate::checkpoint::Checkpoint;
use crate::layouts::Layout;
use crate::pickle::Value;
use crate::pth::{flatten_tensors, load_pth};

/// The weights of a file: `(source name, flat tensors)` for the student and, when present,
/// the teacher, with the checkpoint's `args` (`.pth`) and a Hugging Face `config.json`.
pub(super) struct Source {
    pub dicts: Vec<(String, Vec<(String, Tensor)>)>,
    pub args: Option<Value>,
    pub hf_config: Option<serde_json::Value>,
}

fn find_state_dicts(root: &Value) -> Result<Vec<(String, Value)>> {
    let mut found = Vec::new();
    for key in ["student", "teacher"] {
        if let Some(v @ Value::Dict(_)) = root.get(key) {
            found.push((key.to_string(), v));
        }
    }
    if found.is_empty() {
        for key in ["state_dict", "model", "model_state_dict"] {
            if let Some(v @ Value::Dict(_)) = root.get(key) {
                found.push((key.to_string(), v));
                break;
            }
        }
    }
    if found.is_empty() {
        match root {
            Value::Dict(_) => found.push(("(root)".to_string(), root.clone())),
            other => bail!(
                "the file holds a {}, not a dict of weights",
                other.type_name()
            ),
        }
    }
    Ok(found)
}

/// Reads a `torch.save` file, a `.safetensors` file, or a Hugging Face model folder
/// (`model.safetensors` or `pytorch_model.bin`, with `config.json`).
/// `loaded`: the file's checkpoint when the caller has already read a `.safetensors` file.
pub(super) fn read_source(input: &Path, loaded: Option<Checkpoint>) -> Result<Source> {
    let file = if input.is_dir() {
        ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .map(|n| input.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "{} is a folder without model.safetensors or pytorch_model.bin (a Hugging \
                     Face model folder holds one of them)",
                    input.display()
                )
            })?
    } else {
        input.to_path_buf()
    };
    let config_json = file.with_file_name("config.json");
    let hf_config = if config_json.is_file() {
        let text = std::fs::read_to_string(&config_json)
            .with_context(|| format!("reading {}", config_json.display()))?;
        Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", config_json.display()))?,
        )
    } else {
        None
    };
    if file.extension().is_some_and(|e| e == "safetensors") {
        let ck = match loaded {
            Some(ck) => ck,
            None => Checkpoint::load(&file)?,
        };
        return Ok(Source {
            dicts: vec![("(root)".into(), ck.tensors.into_iter().collect())],
            args: None,
            hf_config,
        });
    }
    let root = load_pth(&file)?;
    let dicts = find_state_dicts(&root)
        .with_context(|| format!("{}", file.display()))?
        .into_iter()
        .map(|(s, v)| {
            let mut flat = Vec::new();
            flatten_tensors(&v, "", &mut flat);
            (s, flat)
        })
        .collect();
    Ok(Source {
        dicts,
        args: root.get("args"),
        hf_config,
    })
}

/// What a Hugging Face `config.json` says about the backbone: heads, LayerNorm epsilon and
/// LayerScale; variants sevit's ViT does not compute are an error.
#[derive(Debug, Default)]
pub(super) struct HfHints {
    pub num_heads: Option<i64>,
    pub ln_eps: Option<f64>,
    pub layer_scale: Option<f64>,
}

pub(super) fn hf_hints(config: Option<&serde_json::Value>, layout: Layout) -> Result<HfHints> {
    if layout == Layout::Dino {
        return Ok(HfHints::default());
    }
    let default_eps = if layout == Layout::HfVit { 1e-12 } else { 1e-6 };
    let default_scale = (layout == Layout::HfDinov2).then_some(1.0);
    let Some(c) = config else {
        tracing::warn!(
            "{layout} weights without config.json beside them: LayerNorm epsilon {default_eps} \
             assumed (transformers' default)"
        );
        return Ok(HfHints {
            num_heads: None,
            ln_eps: Some(default_eps),
            layer_scale: default_scale,
        });
    };
    if let Some(act) = c.get("hidden_act").and_then(|v| v.as_str()) {
        if act != "gelu" {
            bail!("config.json: hidden_act {act:?} is not supported (sevit's MLP uses exact GELU)");
        }
    }
    if c.get("use_swiglu_ffn").and_then(|v| v.as_bool()) == Some(true) {
        bail!("config.json: use_swiglu_ffn = true is not supported (sevit's MLP is GELU)");
    }
    if c.get("num_register_tokens")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        > 0
    {
        bail!("config.json: register tokens are not supported");
    }
    if c.get("num_channels")
        .and_then(|v| v.as_i64())
        .is_some_and(|n| n != 3)
    {
        bail!("config.json: sevit's ViT takes 3 input channels");
    }
    Ok(HfHints {
        num_heads: c.get("num_attention_heads").and_then(|v| v.as_i64()),
        ln_eps: Some(
            c.get("layer_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(default_eps),
        ),
        layer_scale: default_scale.map(|d| {
            c.get("layerscale_value")
                .and_then(|v| v.as_f64())
                .unwrap_or(d)
        }),
    })
}
