//! The transformer block's fused operations: each runs on sevit's CPU kernel where that
//! serves (f32 on the CPU, outside autocast; see [`crate::kernels`]) and on libtorch's
//! operators otherwise. A kernel that fails is logged (once per kernel) and the operation
//! falls back to libtorch, so a kernel problem never stops training.

use std::sync::Mutex;

use tch::Tensor;

use crate::layers::{add_drop_path, drop_path_scale, Linear};
use crate::{bias_gelu, bias_residual, short_attention};

/// Logs that kernel `name` failed, the first time it does.
fn kernel_failed(name: &'static str, e: &anyhow::Error) {
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !seen.contains(&name) {
        seen.push(name);
        tracing::warn!("sevit kernel {name} failed ({e:#}); libtorch's operators run instead");
    }
}

/// `gelu(layer(x))` (exact GELU), the block MLP's hidden layer.
pub fn linear_gelu(x: &Tensor, layer: &Linear) -> Tensor {
    if let Some(b) = layer.bias.as_ref().filter(|b| bias_gelu::applies(x, b)) {
        match bias_gelu::bias_gelu(&x.linear(&layer.weight, None::<Tensor>), b) {
            Ok(out) => return out,
            Err(e) => kernel_failed("bias-gelu", &e),
        }
    }
    layer.forward(x).gelu("none")
}

/// The residual update `x + drop_path(layer(h))` with stochastic depth `drop_path` when
/// training (the same random draws whichever path runs).
pub fn linear_residual(
    x: &Tensor,
    h: &Tensor,
    layer: &Linear,
    drop_path: f64,
    train: bool,
) -> Tensor {
    if let Some(b) = layer
        .bias
        .as_ref()
        .filter(|b| bias_residual::applies(x, h, b))
    {
        let z = h.linear(&layer.weight, None::<Tensor>);
        let factor = (train && drop_path > 0.0).then(|| drop_path_scale(&z, drop_path));
        let flat = factor.as_ref().map(|f| f.reshape([-1]));
        match bias_residual::bias_residual(x, &z, b, flat.as_ref()) {
            Ok(out) => return out,
            Err(e) => {
                kernel_failed("bias-residual", &e);
                let y = z + b;
                return match factor {
                    Some(f) => x.addcmul(&y, &f),
                    None => x + y,
                };
            }
        }
    }
    add_drop_path(x, &layer.forward(h), drop_path, train)
}

/// Softmax attention of every head for a `[B, N, C]` input through the fused `qkv` projection:
/// the heads' outputs `[B, N, C]` (before the output projection) on sevit's short-sequence
/// kernel, or `None` where the kernel does not serve (then the caller computes it with
/// libtorch's operators).
pub fn short_attention(x: &Tensor, qkv: &Linear, num_heads: i64, scale: f64) -> Option<Tensor> {
    if !short_attention::applies(x) {
        return None;
    }
    let projected = x.linear(&qkv.weight, None::<Tensor>);
    // the kernel adds the projection's bias as it reads q, k and v
    match short_attention::short_attention(&projected, qkv.bias.as_ref(), num_heads, scale) {
        Ok(out) => Some(out),
        Err(e) => {
            kernel_failed("attention", &e);
            None
        }
    }
}
