//! State-dict layouts of other ViT implementations, mapped to DINO's names (sevit's own).
//!
//! - **DINO / DISTL** (`cls_token`, `blocks.N.attn.qkv`, ...) and **timm** `VisionTransformer`
//!   (the same names, plus `ls1.gamma` / `ls2.gamma` with LayerScale and a classifier
//!   `head.*` / `fc_norm.*`, which are dropped): bare backbone keys are put under `backbone.`.
//! - **Hugging Face `transformers`** ViT and DINOv2, in the hub's names
//!   (`embeddings.*`, `encoder.layer.N.attention.attention.query`, `layer_scale1.lambda1`, ...)
//!   and in transformers 5's module names (`layers.N.attention.q_proj`, ...), with an optional
//!   `vit.` / `dinov2.` prefix: the separate query, key and value projections are concatenated
//!   into DINO's fused `qkv`; the pooler, classifier and DINOv2's mask token are dropped.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::Tensor;

/// Which implementation a state dict comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// DINO, DISTL, timm and sevit: DINO's module names.
    Dino,
    /// Hugging Face `transformers` ViT (`ViTModel`, `ViTForImageClassification`).
    HfVit,
    /// Hugging Face `transformers` DINOv2 (`Dinov2Model`, e.g. RAD-DINO).
    HfDinov2,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Dino => "DINO/timm",
            Layout::HfVit => "Hugging Face ViT",
            Layout::HfDinov2 => "Hugging Face DINOv2",
        })
    }
}

/// A state dict in sevit's names.
pub struct Mapped {
    /// The layout it was read in.
    pub layout: Layout,
    /// Tensors under sevit's names (`backbone.*`, `head.*`, `cls_head.*`).
    pub tensors: Vec<(String, Tensor)>,
    /// Keys of the file that no ViT backbone uses (classifiers, poolers, mask tokens), in the
    /// file's names.
    pub dropped: Vec<String>,
}

const HF_PREFIXES: [&str; 3] = ["vit.", "dinov2.", "model."];

/// `key` without the model prefix of a Hugging Face task model (`vit.`, `dinov2.`, `model.`).
fn strip_hf_prefix(key: &str) -> &str {
    HF_PREFIXES
        .iter()
        .find_map(|p| key.strip_prefix(p))
        .unwrap_or(key)
}

/// Recognises the layout of `keys` (after DDP's `module.` prefixes are stripped).
pub fn detect<'a>(keys: impl IntoIterator<Item = &'a str>) -> Layout {
    let (mut hf, mut dinov2) = (false, false);
    for k in keys {
        let k = strip_hf_prefix(k);
        hf |= k.starts_with("embeddings.patch_embeddings.") || k == "embeddings.cls_token";
        // DINOv2's blocks have LayerScale and `norm1`/`norm2`; ViT's `layernorm_before/after`
        dinov2 |=
            k.contains(".layer_scale1.") || (k.starts_with("encoder.") && k.contains(".norm1."));
    }
    match (hf, dinov2) {
        (true, true) => Layout::HfDinov2,
        (true, false) => Layout::HfVit,
        _ => Layout::Dino,
    }
}

/// Maps a state dict (DDP prefixes already stripped) to sevit's names.
pub fn to_sevit(tensors: Vec<(String, Tensor)>) -> Result<Mapped> {
    let layout = detect(tensors.iter().map(|(k, _)| k.as_str()));
    match layout {
        Layout::Dino => Ok(dino(tensors)),
        Layout::HfVit | Layout::HfDinov2 => hugging_face(tensors, layout),
    }
}

fn dino(tensors: Vec<(String, Tensor)>) -> Mapped {
    let has_prefix = tensors.iter().any(|(k, _)| k.starts_with("backbone."));
    let bare_vit = tensors.iter().any(|(k, _)| {
        k == "cls_token"
            || k == "pos_embed"
            || k.starts_with("blocks.")
            || k.starts_with("patch_embed.")
    });
    if has_prefix || !bare_vit {
        return Mapped {
            layout: Layout::Dino,
            tensors,
            dropped: vec![],
        };
    }
    // A bare backbone (DINO's released weights, a timm model): its classifier is not a
    // DINO head.
    let (dropped, kept): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|(k, _)| {
        k.starts_with("head.") || k.starts_with("fc_norm.") || k.starts_with("head_drop.")
    });
    Mapped {
        layout: Layout::Dino,
        tensors: kept
            .into_iter()
            .map(|(k, t)| (format!("backbone.{k}"), t))
            .collect(),
        dropped: dropped.into_iter().map(|(k, _)| k).collect(),
    }
}

/// The DINO name of a per-layer Hugging Face key suffix; `q`, `k`, `v` for the separate
/// attention projections (fused afterwards).
fn hf_layer_part(rest: &str) -> Option<&'static str> {
    Some(match rest {
        "attention.attention.query" | "attention.q_proj" => "q",
        "attention.attention.key" | "attention.k_proj" => "k",
        "attention.attention.value" | "attention.v_proj" => "v",
        "attention.output.dense" | "attention.o_proj" => "attn.proj",
        "intermediate.dense" | "mlp.fc1" => "mlp.fc1",
        "output.dense" | "mlp.fc2" => "mlp.fc2",
        "layernorm_before" | "norm1" => "norm1",
        "layernorm_after" | "norm2" => "norm2",
        "layer_scale1" => "ls1",
        "layer_scale2" => "ls2",
        _ => return None,
    })
}

fn hugging_face(tensors: Vec<(String, Tensor)>, layout: Layout) -> Result<Mapped> {
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    let mut unknown = Vec::new();
    // (layer, "weight"/"bias") -> [q, k, v]
    let mut qkv: BTreeMap<(usize, String), [Option<Tensor>; 3]> = BTreeMap::new();
    for (key, t) in tensors {
        let k = strip_hf_prefix(&key);
        if k.contains("register_tokens") {
            bail!(
                "{key}: DINOv2 with register tokens is not supported (sevit's ViT has the CLS \
                 token and the patch tokens only)"
            );
        }
        if k.contains(".mlp.weights_in") || k.contains(".mlp.w12") {
            bail!("{key}: a SwiGLU MLP is not supported (sevit's ViT blocks use a GELU MLP)");
        }
        let name = match k {
            "embeddings.cls_token" => Some("backbone.cls_token".to_string()),
            "embeddings.position_embeddings" => Some("backbone.pos_embed".to_string()),
            "embeddings.patch_embeddings.projection.weight" => {
                Some("backbone.patch_embed.proj.weight".to_string())
            }
            "embeddings.patch_embeddings.projection.bias" => {
                Some("backbone.patch_embed.proj.bias".to_string())
            }
            "layernorm.weight" => Some("backbone.norm.weight".to_string()),
            "layernorm.bias" => Some("backbone.norm.bias".to_string()),
            _ => None,
        };
        if let Some(name) = name {
            out.push((name, t));
            continue;
        }
        if k == "embeddings.mask_token" || k.starts_with("pooler.") {
            dropped.push(key);
            continue;
        }
        if key.starts_with("classifier.") {
            dropped.push(key);
            continue;
        }
        let layer = ["encoder.layer.", "encoder.layers.", "layers."]
            .iter()
            .find_map(|p| k.strip_prefix(p))
            .and_then(|r| r.split_once('.'))
            .and_then(|(i, r)| Some((i.parse::<usize>().ok()?, r)));
        let Some((i, rest)) = layer else {
            unknown.push(key);
            continue;
        };
        let Some((module, param)) = rest.rsplit_once('.') else {
            unknown.push(key);
            continue;
        };
        let param = if param == "lambda1" { "gamma" } else { param };
        match hf_layer_part(module) {
            Some(part @ ("q" | "k" | "v")) => {
                let slot = ["q", "k", "v"].iter().position(|p| *p == part).unwrap_or(0);
                qkv.entry((i, param.to_string())).or_default()[slot] = Some(t);
            }
            Some(name) => out.push((format!("backbone.blocks.{i}.{name}.{param}"), t)),
            None => unknown.push(key),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{layout} weights with keys sevit cannot place: {}",
            unknown.join(", ")
        );
    }
    for ((i, param), parts) in qkv {
        match parts {
            [Some(q), Some(k), Some(v)] => out.push((
                format!("backbone.blocks.{i}.attn.qkv.{param}"),
                Tensor::cat(&[q, k, v], 0),
            )),
            _ => bail!("{layout} layer {i}: query, key and value {param}s are not all present"),
        }
    }
    Ok(Mapped {
        layout,
        tensors: out,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(v: f64, n: i64) -> Tensor {
        Tensor::full([n], v, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn detects_each_layout() {
        assert_eq!(
            detect(["cls_token", "blocks.0.attn.qkv.weight"]),
            Layout::Dino
        );
        assert_eq!(
            detect(["backbone.cls_token", "head.last_layer.weight_v"]),
            Layout::Dino
        );
        assert_eq!(
            detect([
                "vit.embeddings.cls_token",
                "vit.encoder.layer.0.layernorm_before.weight"
            ]),
            Layout::HfVit
        );
        assert_eq!(
            detect([
                "embeddings.cls_token",
                "encoder.layer.0.layer_scale1.lambda1"
            ]),
            Layout::HfDinov2
        );
        assert_eq!(
            detect(["embeddings.cls_token", "encoder.layer.0.norm1.weight"]),
            Layout::HfDinov2
        );
    }

    #[test]
    fn timm_classifier_is_dropped_and_backbone_prefixed() {
        let m = to_sevit(vec![
            ("cls_token".into(), t(0.0, 4)),
            ("blocks.0.ls1.gamma".into(), t(0.1, 4)),
            ("head.weight".into(), t(0.0, 4)),
            ("fc_norm.weight".into(), t(0.0, 4)),
        ])
        .unwrap();
        let names: Vec<&str> = m.tensors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["backbone.cls_token", "backbone.blocks.0.ls1.gamma"]);
        assert_eq!(m.dropped, ["head.weight", "fc_norm.weight"]);
    }

    #[test]
    fn hugging_face_attention_is_fused_in_query_key_value_order() {
        let mut tensors = vec![("vit.embeddings.cls_token".to_string(), t(9.0, 2))];
        for (name, v) in [("query", 1.0), ("key", 2.0), ("value", 3.0)] {
            for p in ["weight", "bias"] {
                tensors.push((
                    format!("vit.encoder.layer.0.attention.attention.{name}.{p}"),
                    t(v, 2),
                ));
            }
        }
        tensors.push(("classifier.weight".into(), t(0.0, 2)));
        tensors.push(("vit.pooler.dense.weight".into(), t(0.0, 2)));
        let m = to_sevit(tensors).unwrap();
        assert_eq!(m.layout, Layout::HfVit);
        let qkv = &m
            .tensors
            .iter()
            .find(|(k, _)| k == "backbone.blocks.0.attn.qkv.weight")
            .unwrap()
            .1;
        assert_eq!(Vec::<f32>::try_from(qkv).unwrap(), [1., 1., 2., 2., 3., 3.]);
        assert_eq!(m.dropped.len(), 2);
    }

    #[test]
    fn incomplete_attention_and_unsupported_variants_are_errors() {
        let e = to_sevit(vec![
            ("embeddings.cls_token".into(), t(0.0, 2)),
            (
                "encoder.layer.0.attention.attention.query.weight".into(),
                t(0.0, 2),
            ),
        ])
        .err()
        .unwrap();
        assert!(e.to_string().contains("not all present"), "{e}");
        let e = to_sevit(vec![
            ("embeddings.cls_token".into(), t(0.0, 2)),
            ("embeddings.register_tokens".into(), t(0.0, 2)),
        ])
        .err()
        .unwrap();
        assert!(e.to_string().contains("register tokens"), "{e}");
        let e = to_sevit(vec![
            ("embeddings.cls_token".into(), t(0.0, 2)),
            ("encoder.layer.0.weird.weight".into(), t(0.0, 2)),
        ])
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("encoder.layer.0.weird.weight"),
            "{e}"
        );
    }
}
