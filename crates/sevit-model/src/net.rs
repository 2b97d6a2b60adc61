//! The whole DISTL network (DINO's `MultiCropWrapper` with a class head): backbone, feature
//! head and class head, with the multi-crop forward.

use anyhow::{bail, Result};
use tch::nn::Path;
use tch::Tensor;

use crate::config::ModelConfig;
use crate::heads::{ClassHead, DinoHead};
use crate::vit::VisionTransformer;

/// Outputs of [`DistlNet::forward_multi`].
#[derive(Debug)]
pub struct MultiCropOutput {
    /// Feature-head outputs of every view, `[n_views * B, out_dim]`, view-major
    /// (rows `v*B .. (v+1)*B` belong to view `v`).
    pub dino: Tensor,
    /// Class logits of the global views, `[n_global * B]`, view-major.
    pub cls_logits: Tensor,
    /// Backbone CLS features of every view, `[n_views * B, D]`, view-major.
    pub features: Tensor,
}

/// The network: `backbone` ([`VisionTransformer`]), `head` ([`DinoHead`]) and `cls_head`
/// ([`ClassHead`]), whose variables are named as the reference PyTorch state dict
/// (`backbone.blocks.0.attn.qkv.weight`, `head.last_layer.weight_v`, `cls_head.mlp.0.weight`).
#[derive(Debug)]
pub struct DistlNet {
    cfg: ModelConfig,
    backbone: VisionTransformer,
    head: DinoHead,
    cls_head: ClassHead,
}

impl DistlNet {
    /// Creates the network under `root` (use `vs.root()` so names have no prefix).
    /// `drop_path_rate` is the stochastic depth of the student (0 for the teacher).
    ///
    /// Panics when the configuration is invalid; call [`ModelConfig::validate`] first to
    /// get an error instead.
    pub fn new(root: &Path, cfg: &ModelConfig, drop_path_rate: f64) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid model config: {e:#}");
        }
        let backbone = VisionTransformer::new(&root.sub("backbone"), &cfg.vit, drop_path_rate);
        let head = DinoHead::new(&root.sub("head"), cfg.vit.embed_dim, &cfg.head);
        let cls_head = ClassHead::new(&root.sub("cls_head"), cfg.vit.embed_dim, cfg.cls_hidden_dim);
        DistlNet {
            cfg: cfg.clone(),
            backbone,
            head,
            cls_head,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The backbone.
    pub fn backbone(&self) -> &VisionTransformer {
        &self.backbone
    }

    /// CLS features `[B, D]` of an image batch `[B, 3, H, W]`.
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        self.backbone.forward(x, train)
    }

    /// Class logits `[B]` of an image batch.
    pub fn classify(&self, x: &Tensor, train: bool) -> Tensor {
        self.cls_head.forward(&self.features(x, train))
    }

    /// Feature-head outputs `[B, out_dim]` of CLS features `[B, D]`.
    pub fn dino_head(&self, features: &Tensor) -> Tensor {
        self.head.forward(features)
    }

    /// Class logits `[B]` of CLS features `[B, D]`.
    pub fn class_head(&self, features: &Tensor) -> Tensor {
        self.cls_head.forward(features)
    }

    /// The last block's attention maps `[B, heads, N+1, N+1]` (eval mode). Row 0 is the CLS
    /// token's attention; `attn[:, :, 0, 1:]` reshaped to the patch grid is the usual map.
    pub fn last_self_attention(&self, x: &Tensor) -> Tensor {
        self.backbone.last_self_attention(x)
    }

    /// Checks a list of views before [`forward_multi`](Self::forward_multi).
    pub fn check_views(&self, views: &[Tensor], n_global: usize) -> Result<()> {
        if views.is_empty() {
            bail!("forward_multi: no views");
        }
        if n_global > views.len() {
            bail!(
                "forward_multi: n_global {n_global} > number of views {}",
                views.len()
            );
        }
        let b = views[0].size().first().copied().unwrap_or(0);
        for (i, v) in views.iter().enumerate() {
            self.backbone
                .check_input(v)
                .map_err(|e| e.context(format!("view {i}")))?;
            if v.size()[0] != b {
                bail!(
                    "forward_multi: view {i} has batch {} but view 0 has {b}",
                    v.size()[0]
                );
            }
        }
        Ok(())
    }

    /// Runs all views through the network as DINO's `MultiCropWrapper`: consecutive views of
    /// the same resolution are concatenated and go through the backbone in one pass; the
    /// feature head sees every view, the class head the first `n_global` views.
    /// `views` are `[B, 3, H_v, W_v]` ordered global 1, global 2, locals.
    pub fn forward_multi(&self, views: &[Tensor], n_global: usize, train: bool) -> MultiCropOutput {
        if let Err(e) = self.check_views(views, n_global) {
            panic!("{e:#}");
        }
        let b = views[0].size()[0];
        let mut feats = Vec::new();
        let mut start = 0;
        while start < views.len() {
            let hw = &views[start].size()[2..];
            let mut end = start + 1;
            while end < views.len() && &views[end].size()[2..] == hw {
                end += 1;
            }
            let batch = if end - start == 1 {
                views[start].shallow_clone()
            } else {
                Tensor::cat(&views[start..end], 0)
            };
            feats.push(self.backbone.forward(&batch, train));
            start = end;
        }
        let features = if feats.len() == 1 {
            feats.pop().unwrap()
        } else {
            Tensor::cat(&feats, 0)
        };
        let dino = self.head.forward(&features);
        let cls_logits = self
            .cls_head
            .forward(&features.narrow(0, 0, n_global as i64 * b));
        MultiCropOutput {
            dino,
            cls_logits,
            features,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    fn net() -> (VarStore, DistlNet) {
        tch::manual_seed(7);
        let vs = VarStore::new(Device::Cpu);
        let n = DistlNet::new(&vs.root(), &ModelConfig::micro(), 0.0);
        (vs, n)
    }

    #[test]
    fn multi_crop_matches_per_view_forward() {
        let _rng = crate::torch_rng();
        let (_vs, n) = net();
        let b = 2;
        let g1 = Tensor::rand([b, 3, 32, 32], (Kind::Float, Device::Cpu));
        let g2 = Tensor::rand([b, 3, 32, 32], (Kind::Float, Device::Cpu));
        let l1 = Tensor::rand([b, 3, 16, 16], (Kind::Float, Device::Cpu));
        let l2 = Tensor::rand([b, 3, 16, 16], (Kind::Float, Device::Cpu));
        let views = [g1, g2, l1, l2];
        let out = n.forward_multi(&views, 2, false);
        assert_eq!(out.dino.size(), [4 * b, 128]);
        assert_eq!(out.cls_logits.size(), [2 * b]);
        for (i, v) in views.iter().enumerate() {
            let f = n.features(v, false);
            let d = n.dino_head(&f);
            assert!(
                d.allclose(&out.dino.narrow(0, i as i64 * b, b), 1e-4, 1e-5, false),
                "view {i}"
            );
            if i < 2 {
                let c = n.classify(v, false);
                assert!(c.allclose(
                    &out.cls_logits.narrow(0, i as i64 * b, b),
                    1e-4,
                    1e-5,
                    false
                ));
            }
        }
    }

    #[test]
    fn parameter_names() {
        let _rng = crate::torch_rng();
        let (vs, _) = net();
        let v = vs.variables();
        for k in [
            "backbone.cls_token",
            "backbone.pos_embed",
            "backbone.patch_embed.proj.weight",
            "backbone.patch_embed.proj.bias",
            "backbone.blocks.1.norm1.weight",
            "backbone.blocks.1.attn.qkv.bias",
            "backbone.blocks.1.attn.proj.weight",
            "backbone.blocks.1.mlp.fc2.bias",
            "backbone.norm.bias",
            "head.mlp.4.weight",
            "head.last_layer.weight_g",
            "cls_head.mlp.4.bias",
        ] {
            assert!(v.contains_key(k), "missing {k}");
        }
        assert_eq!(v["backbone.pos_embed"].size(), [1, 17, 32]);
    }

    #[test]
    fn backward_reaches_all_trainable() {
        let _rng = crate::torch_rng();
        let (vs, n) = {
            tch::manual_seed(7);
            let vs = VarStore::new(Device::Cpu);
            let n = DistlNet::new(&vs.root(), &ModelConfig::micro(), 0.1);
            (vs, n)
        };
        let views = [
            Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
            Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
            Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)),
        ];
        let out = n.forward_multi(&views, 2, true);
        let loss =
            out.dino.pow_tensor_scalar(2).mean(Kind::Float) + out.cls_logits.mean(Kind::Float);
        loss.backward();
        for t in vs.trainable_variables() {
            assert!(t.grad().defined(), "a trainable variable got no gradient");
        }
    }
}
