//! Gradient surgery as in DINO: per-tensor clipping and freezing the feature head's last layer.

use tch::Tensor;

/// DINO's `clip_gradients`: each gradient tensor is clipped separately, `g *= min(1, clip /
/// (||g||_2 + 1e-6))`. Undefined gradients (parameters not in the graph) are skipped.
/// Computed without any host read (the min is taken on the device), the norms of all
/// tensors in one multi-tensor kernel ([`crate::foreach::clip_per_tensor_`]). A `clip <= 0`
/// disables clipping.
///
/// # Panics
/// When the gradients are on different devices.
pub fn clip_gradients(grads: &mut [Tensor], clip: f64) {
    if clip <= 0.0 {
        return;
    }
    let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
    crate::foreach::clip_per_tensor_(&defined, clip).expect("per-tensor gradient clipping");
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
    use tch::Kind;

    #[test]
    fn matches_the_per_tensor_formula_on_random_tensors() {
        tch::manual_seed(3);
        let shapes: [&[i64]; 5] = [&[7], &[3, 5], &[2, 3, 4], &[1], &[64, 33]];
        let scales = [0.1, 10.0, 1.0, 5.0, 0.01];
        let mut g: Vec<Tensor> = shapes
            .iter()
            .zip(scales)
            .map(|(s, k)| Tensor::randn(*s, (Kind::Float, tch::Device::Cpu)) * k)
            .collect();
        let expected: Vec<Tensor> = g
            .iter()
            .map(|t| {
                let n = t.norm().double_value(&[]);
                t * (2.0 / (n + 1e-6)).min(1.0)
            })
            .collect();
        clip_gradients(&mut g, 2.0);
        for (i, (a, b)) in g.iter().zip(&expected).enumerate() {
            let err = (a - b).abs().max().double_value(&[]);
            assert!(
                err < 1e-6 * (1.0 + b.abs().max().double_value(&[])),
                "tensor {i}: {err}"
            );
        }
    }

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
