//! Starting a stage from another checkpoint (`--init`, the previous step, a backbone of
//! another image size): copying the variables that fit, resizing position embeddings.

use std::path::Path;

use anyhow::bail;
use sevit_model::Checkpoint;
use tch::nn::VarStore;

/// Copies the variables of `ck` under `prefix` into `vs` where name and shape match; errors
/// when a backbone variable is missing or mismatched (heads may differ, they keep their
/// initialisation). Returns the names left at their initial value.
pub fn load_matching(
    ck: &Checkpoint,
    prefix: &str,
    vs: &mut VarStore,
    origin: &Path,
) -> anyhow::Result<Vec<String>> {
    let vars = vs.variables();
    // Position embeddings of another image size (a backbone trained at 224 px into a 256 px
    // model): resized to this model's grid as DINO interpolates them at run time.
    let pos_key = format!("{prefix}backbone.pos_embed");
    let mut resized = None;
    if let (Some(src), Some(var)) = (ck.tensors.get(&pos_key), vars.get("backbone.pos_embed")) {
        let (s, v) = (src.size(), var.size());
        let grid = |n: i64| {
            let g = ((n - 1) as f64).sqrt().round() as i64;
            (g * g == n - 1).then_some(g)
        };
        if s.len() == 3 && v.len() == 3 && s[2] == v[2] && s[1] != v[1] {
            if let (Some(_), Some(g)) = (grid(s[1]), grid(v[1])) {
                tracing::info!(
                    "{}: position embeddings resized from {} to {} patches (bicubic, as DINO)",
                    origin.display(),
                    s[1] - 1,
                    v[1] - 1
                );
                resized = Some(sevit_model::vit::resize_pos_embed(src, g, g));
            }
        }
    }
    let owned;
    let ck = match resized {
        Some(t) => {
            let mut tensors: std::collections::BTreeMap<String, tch::Tensor> = ck
                .tensors
                .iter()
                .map(|(k, v)| (k.clone(), v.shallow_clone()))
                .collect();
            tensors.insert(pos_key, t);
            owned = Checkpoint {
                tensors,
                metadata: ck.metadata.clone(),
            };
            &owned
        }
        None => ck,
    };
    let report = ck.compare(prefix, &vars);
    let bad_backbone: Vec<&String> = report
        .missing
        .iter()
        .chain(report.mismatched.iter())
        .chain(report.unexpected.iter())
        .filter(|n| n.starts_with("backbone."))
        .collect();
    if !bad_backbone.is_empty() {
        bail!(
            "{} (prefix {prefix:?}) does not fit the model's backbone:\n{report}",
            origin.display()
        );
    }
    let mut left = Vec::new();
    tch::no_grad(|| -> anyhow::Result<()> {
        for (name, var) in &vars {
            match ck.tensors.get(&format!("{prefix}{name}")) {
                Some(src) if src.size() == var.size() => {
                    var.shallow_clone()
                        .f_copy_(&src.to_kind(var.kind()).to_device(var.device()))?;
                }
                _ => left.push(name.clone()),
            }
        }
        Ok(())
    })?;
    left.sort();
    if !left.is_empty() {
        tracing::warn!(
            "{}: {} variables not in the checkpoint keep their initialisation: {:?}",
            origin.display(),
            left.len(),
            left
        );
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevit_model::{DistlNet, ModelConfig};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn init_from_another_image_size_resizes_the_position_embeddings() {
        let model = |img: i64| {
            let mut cfg = ModelConfig::micro();
            cfg.vit.img_size = img;
            tch::manual_seed(3);
            let vs = VarStore::new(Device::Cpu);
            let net = DistlNet::new(&vs.root(), &cfg, 0.0);
            (vs, net)
        };
        // A backbone trained at 32 px (4 x 4 patches of 8) into a 64 px model (8 x 8).
        let (src_vs, src) = model(32);
        let mut ck = Checkpoint::new();
        ck.put_vars("student.", &src_vs);
        let (mut vs, _) = model(64);
        let left = load_matching(&ck, "student.", &mut vs, Path::new("src")).unwrap();
        assert!(left.is_empty(), "{left:?}");
        let loaded = &vs.variables()["backbone.pos_embed"];
        assert_eq!(loaded.size(), [1, 65, 32]);
        // The same embeddings the 32 px model uses when it is run on 64 px images.
        let at_64 = src.backbone().interpolate_pos_encoding(64, 64);
        assert!(loaded.allclose(&at_64, 0.0, 0.0, false));
        // A backbone alone (bare `backbone.*` names, no heads): the heads keep their init.
        let mut bare = Checkpoint::new();
        for (k, t) in &ck.tensors {
            if let Some(name) = k
                .strip_prefix("student.")
                .filter(|n| n.starts_with("backbone."))
            {
                bare.tensors.insert(name.to_string(), t.shallow_clone());
            }
        }
        let (mut vs, _) = model(64);
        let left = load_matching(&bare, "", &mut vs, Path::new("bare")).unwrap();
        assert!(
            !left.is_empty() && left.iter().all(|k| !k.starts_with("backbone.")),
            "{left:?}"
        );
        // Backbone weights the model has no place for (LayerScale into a model without) are
        // an error, not silently dropped.
        bare.tensors.insert(
            "backbone.blocks.0.ls1.gamma".into(),
            Tensor::ones([32], (Kind::Float, Device::Cpu)),
        );
        let (mut vs, _) = model(64);
        let e = load_matching(&bare, "", &mut vs, Path::new("bare")).unwrap_err();
        assert!(e.to_string().contains("ls1.gamma"), "{e}");
    }
}
