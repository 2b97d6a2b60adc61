//! The two heads on the CLS features: DINO's feature head (`DINOHead`) and DISTL's class
//! head (a 3-layer ReLU MLP giving one logit).

use tch::nn::Path;
use tch::Tensor;

use crate::config::DinoHeadConfig;
use crate::layers::{torch_default_uniform, Activation, Mlp};

/// DINO's projection head: MLP (GELU) to the bottleneck, L2 normalisation, then a
/// weight-normalised linear layer without bias (`last_layer.weight_g [out,1]`,
/// `last_layer.weight_v [out, bottleneck]`). With `norm_last_layer`, `weight_g` is fixed
/// to 1 and registered as a non-trainable variable (still saved and loaded).
#[derive(Debug)]
pub struct DinoHead {
    mlp: Mlp,
    weight_g: Tensor,
    weight_v: Tensor,
}

impl DinoHead {
    /// Creates the head under `p` for `in_dim`-wide features.
    pub fn new(p: &Path, in_dim: i64, cfg: &DinoHeadConfig) -> Self {
        let mut dims = vec![in_dim];
        dims.extend(std::iter::repeat_n(
            cfg.hidden_dim,
            (cfg.nlayers.max(1) - 1) as usize,
        ));
        dims.push(cfg.bottleneck_dim);
        let mlp = Mlp::new(&p.sub("mlp"), &dims, Activation::Gelu);
        let last = p.sub("last_layer");
        let weight_g = if cfg.norm_last_layer {
            last.ones_no_train("weight_g", &[cfg.out_dim, 1])
        } else {
            last.ones("weight_g", &[cfg.out_dim, 1])
        };
        let weight_v = torch_default_uniform(
            &last,
            "weight_v",
            &[cfg.out_dim, cfg.bottleneck_dim],
            cfg.bottleneck_dim,
        );
        DinoHead {
            mlp,
            weight_g,
            weight_v,
        }
    }

    /// `[B, in_dim]` -> `[B, out_dim]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.mlp.forward(x);
        let norm = h
            .norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
            .clamp_min(1e-12);
        let h = h / norm;
        let w = Tensor::internal_weight_norm(&self.weight_v, &self.weight_g, 0);
        h.linear(&w.to_kind(h.kind()), None::<Tensor>)
    }
}

/// DISTL's class head: `Linear(D, H) - ReLU - Linear(H, H) - ReLU - Linear(H, 1)` named
/// `mlp.0`, `mlp.2`, `mlp.4`.
#[derive(Debug)]
pub struct ClassHead {
    mlp: Mlp,
}

impl ClassHead {
    /// Creates the head under `p`.
    pub fn new(p: &Path, in_dim: i64, hidden: i64) -> Self {
        ClassHead {
            mlp: Mlp::new(
                &p.sub("mlp"),
                &[in_dim, hidden, hidden, 1],
                Activation::Relu,
            ),
        }
    }

    /// `[B, D]` -> logits `[B]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.mlp.forward(x).squeeze_dim(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    #[test]
    fn dino_head_names_and_trainability() {
        let _rng = crate::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let cfg = DinoHeadConfig::micro();
        let head = DinoHead::new(&vs.root().sub("head"), 32, &cfg);
        let mut names: Vec<_> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "head.last_layer.weight_g",
                "head.last_layer.weight_v",
                "head.mlp.0.bias",
                "head.mlp.0.weight",
                "head.mlp.2.bias",
                "head.mlp.2.weight",
                "head.mlp.4.bias",
                "head.mlp.4.weight"
            ]
        );
        // weight_g is not trainable: 6 MLP tensors + weight_v.
        assert_eq!(vs.trainable_variables().len(), 7);
        let y = head.forward(&Tensor::randn([3, 32], (Kind::Float, Device::Cpu)));
        assert_eq!(y.size(), [3, cfg.out_dim]);

        let vs2 = VarStore::new(Device::Cpu);
        let _ = DinoHead::new(
            &vs2.root(),
            32,
            &DinoHeadConfig {
                norm_last_layer: false,
                ..cfg
            },
        );
        assert_eq!(vs2.trainable_variables().len(), 8);
    }

    #[test]
    fn last_layer_rows_have_unit_norm_with_g_one() {
        let _rng = crate::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let cfg = DinoHeadConfig {
            nlayers: 1,
            ..DinoHeadConfig::micro()
        };
        let head = DinoHead::new(&vs.root(), 8, &cfg);
        assert!(vs.variables().contains_key("mlp.weight"));
        let w = Tensor::internal_weight_norm(&head.weight_v, &head.weight_g, 0);
        let n = w.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
        assert!(n.allclose(&n.ones_like(), 1e-5, 1e-5, false));
    }

    #[test]
    fn class_head_gives_one_logit() {
        let _rng = crate::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let h = ClassHead::new(&vs.root().sub("cls_head"), 32, 16);
        assert!(vs.variables().contains_key("cls_head.mlp.4.weight"));
        assert_eq!(
            h.forward(&Tensor::randn([5, 32], (Kind::Float, Device::Cpu)))
                .size(),
            [5]
        );
    }
}
