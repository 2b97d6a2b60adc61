//! Tests of [`super`] (`import.rs`).

use super::*;

fn backbone(width: i64) -> BTreeMap<String, Tensor> {
    let z = |s: &[i64]| Tensor::zeros(s, (tch::Kind::Float, Device::Cpu));
    BTreeMap::from([
        ("backbone.cls_token".to_string(), z(&[1, 1, width])),
        ("backbone.pos_embed".to_string(), z(&[1, 17, width])),
        (
            "backbone.patch_embed.proj.weight".to_string(),
            z(&[width, 1, 8, 8]),
        ),
        (
            "backbone.blocks.0.mlp.fc1.weight".to_string(),
            z(&[4 * width, width]),
        ),
    ])
}

/// Writes a micro backbone in Hugging Face ViT names (separate q, k, v) with its
/// config.json, as `save_pretrained` does.
fn hf_folder(dir: &Path, vs: &VarStore, eps: f64) {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for (k, t) in vs.variables() {
        let Some(k) = k.strip_prefix("backbone.") else {
            continue;
        };
        let t = t.detach();
        let hf = match k {
            "cls_token" => "embeddings.cls_token".to_string(),
            "pos_embed" => "embeddings.position_embeddings".to_string(),
            "norm.weight" | "norm.bias" => k.replace("norm", "layernorm"),
            _ if k.starts_with("patch_embed.proj.") => {
                k.replace("patch_embed.proj", "embeddings.patch_embeddings.projection")
            }
            _ => {
                let (i, rest) = k.strip_prefix("blocks.").unwrap().split_once('.').unwrap();
                let (module, param) = rest.rsplit_once('.').unwrap();
                let module = match module {
                    "norm1" => "layernorm_before",
                    "norm2" => "layernorm_after",
                    "attn.proj" => "attention.output.dense",
                    "mlp.fc1" => "intermediate.dense",
                    "mlp.fc2" => "output.dense",
                    "attn.qkv" => {
                        for (j, part) in t
                            .chunk(3, 0)
                            .into_iter()
                            .zip(["query", "key", "value"])
                            .map(|(c, n)| (n, c))
                        {
                            out.push((
                                format!("vit.encoder.layer.{i}.attention.attention.{j}.{param}"),
                                part,
                            ));
                        }
                        continue;
                    }
                    other => panic!("{other}"),
                };
                format!("encoder.layer.{i}.{module}.{param}")
            }
        };
        out.push((format!("vit.{hf}"), t));
    }
    let ck = Checkpoint {
        tensors: out.into_iter().collect(),
        metadata: BTreeMap::new(),
    };
    ck.save(&dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({"model_type": "vit", "num_attention_heads": 2,
            "layer_norm_eps": eps, "hidden_act": "gelu"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn init_reads_a_hugging_face_folder_for_the_same_architecture_only() {
    let _rng = crate::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::micro();
    tch::manual_seed(4);
    let vs = VarStore::new(Device::Cpu);
    let _net = DistlNet::new(&vs.root(), &cfg, 0.0);
    hf_folder(dir.path(), &vs, 1e-6);
    let ck = load_init(dir.path(), &cfg.vit).unwrap();
    for (k, t) in vs
        .variables()
        .iter()
        .filter(|(k, _)| k.starts_with("backbone."))
    {
        assert!(ck.tensor(&format!("student.{k}")).unwrap().equal(t), "{k}");
    }
    // transformers' ViT default epsilon computes another model: refused, with the fix
    hf_folder(dir.path(), &vs, 1e-12);
    let e = format!("{:#}", load_init(dir.path(), &cfg.vit).unwrap_err());
    assert!(
        e.contains("[model.vit]") && e.contains("ln_eps = 1e-12"),
        "{e}"
    );
    // a sevit checkpoint is taken as it is
    let mut own = Checkpoint::new();
    own.put_vars("student.", &vs);
    own.save(&dir.path().join("own.safetensors")).unwrap();
    let back = load_init(&dir.path().join("own.safetensors"), &cfg.vit).unwrap();
    assert_eq!(back.tensors.len(), own.tensors.len());
}

#[test]
fn head_count_is_never_guessed() {
    // A 128-wide, 2-head backbone imported as 128/64 = 2 heads only by luck, and a
    // 2-head 192-wide one as 3: the width does not tell.
    let e = format!("{:#}", infer_vit(&backbone(128), None).unwrap_err());
    assert!(e.contains("--num-heads"), "{e}");
    assert_eq!(infer_vit(&backbone(128), Some(2)).unwrap().num_heads, 2);
    assert!(infer_vit(&backbone(128), Some(3)).is_err());
    assert_eq!(infer_vit(&backbone(384), None).unwrap().num_heads, 6);
    assert_eq!(infer_vit(&backbone(192), Some(2)).unwrap().num_heads, 2);
}

#[test]
fn head_count_from_the_checkpoint_args() {
    let ns = |k: &str, v: Value| {
        Value::Object(std::rc::Rc::new(std::cell::RefCell::new(
            crate::pickle::Object {
                class: ("argparse".into(), "Namespace".into()),
                args: vec![],
                state: Some(Value::new_dict(vec![(Value::Str(k.into()), v)])),
            },
        )))
    };
    assert_eq!(
        heads_from_args(Some(&ns("arch", Value::Str("vit_small".into())))),
        Some(6)
    );
    assert_eq!(
        heads_from_args(Some(&ns("num_heads", Value::Int(2)))),
        Some(2)
    );
    assert_eq!(
        heads_from_args(Some(&ns("arch", Value::Str("resnet50".into())))),
        None
    );
    assert_eq!(heads_from_args(None), None);
}
