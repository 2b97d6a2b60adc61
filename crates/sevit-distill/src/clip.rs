//! Gradient surgery as in DINO: per-tensor clipping and freezing the feature head's last layer.

use tch::{Kind, Tensor};

/// DINO's `clip_gradients`: each gradient tensor is clipped separately, `g *= min(1, clip /
/// (||g||_2 + 1e-6))`. Undefined gradients (parameters not in the graph) are skipped.
/// Computed without any host read (the min is taken on the device). Returns nothing; a
/// `clip <= 0` disables clipping.
pub fn clip_gradients(grads: &mut [Tensor], clip: f64) {
    if clip <= 0.0 {
        return;
    }
    tch::no_grad(|| {
        for g in grads.iter_mut() {
            if !g.defined() {
                continue;
            }
            let norm = g.norm_scalaropt_dtype(2, Kind::Float);
            let coef = ((norm + 1e-6).reciprocal() * clip).clamp_max(1.0);
            let _ = g.g_mul_(&coef.to_kind(g.kind()));
        }
    })
}

/// DINO's `cancel_gradients_last_layer`: during the first `freeze_last_layer` epochs, the
/// gradients of every parameter whose name contains `last_layer` are dropped (set to an
/// undefined tensor, so the optimiser neither moves nor decays them).
pub fn cancel_gradients_last_layer(
    names: &[String],
    grads: &mut [Tensor],
    epoch: usize,
    freeze_last_layer: usize,
) {
    if epoch >= freeze_last_layer {
        return;
    }
    for (name, g) in names.iter().zip(grads.iter_mut()) {
        if name.contains("last_layer") {
            *g = Tensor::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tensor_clipped_separately() {
        // norms 5 and 1: with clip 3 the first becomes norm ~3, the second is untouched.
        let mut g = vec![
            Tensor::from_slice(&[3.0f32, 4.0]),
            Tensor::from_slice(&[0.6f32, 0.8]),
            Tensor::new(),
        ];
        clip_gradients(&mut g, 3.0);
        let c = 3.0 / (5.0 + 1e-6);
        assert!((g[0].double_value(&[0]) - 3.0 * c).abs() < 1e-6);
        assert!((g[0].double_value(&[1]) - 4.0 * c).abs() < 1e-6);
        assert_eq!(g[1].double_value(&[0]), 0.6f32 as f64);
        assert_eq!(g[1].double_value(&[1]), 0.8f32 as f64);
        assert!(!g[2].defined());
    }

    #[test]
    fn last_layer_cancelled_only_while_frozen() {
        let names = vec![
            "head.last_layer.weight_v".to_string(),
            "head.mlp.0.weight".to_string(),
        ];
        let mut g = vec![Tensor::from_slice(&[1.0f32]), Tensor::from_slice(&[1.0f32])];
        cancel_gradients_last_layer(&names, &mut g, 1, 1);
        assert!(g[0].defined() && g[1].defined());
        cancel_gradients_last_layer(&names, &mut g, 0, 1);
        assert!(!g[0].defined() && g[1].defined());
    }
}
