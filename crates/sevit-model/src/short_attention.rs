//! Multi-head self-attention for short token sequences on the CPU (f32), from the fused qkv
//! projection straight to the heads' outputs, as one autograd node (`cpp/short_attention.cpp`).
//!
//! At a ViT's 17 or 65 tokens libtorch's CPU flash-attention kernel is built for long
//! sequences: its per-block products are general GEMM calls on tiles of a few dozen rows, and
//! its q, k, v gradients come back as three tensors that must be copied into the projection's
//! layout. This kernel runs each (image, head) problem's products in registers with the
//! problem in cache, reads q, k and v where the projection wrote them and writes their
//! gradients into the projection's layout. Same values as `scaled_dot_product_attention` to
//! rounding. It keeps the attention probabilities for the backward, as DINO's explicit
//! attention does, so it serves sequences of up to [`MAX_TOKENS`] tokens; longer ones keep
//! the fused kernel, which stores no `[N, N]` maps.
//!
//! `SEVIT_KERNELS` (see [`kernels`](crate::kernels)) can turn it off, for comparisons.

use anyhow::Result;
use tch::Tensor;

/// The longest sequence the kernel serves.
pub const MAX_TOKENS: i64 = 128;

use sevit_torch_ext::kernels::sevit_short_attention;

/// True when [`short_attention`] serves the attention of input `x` `[B, N, C]` (the qkv
/// projection's input): f32 on the CPU, at most [`MAX_TOKENS`] tokens, no CPU autocast region
/// (which would make the projection bf16), and the kernel enabled (`SEVIT_KERNELS`, see
/// [`kernels`](crate::kernels)).
pub fn applies(x: &Tensor) -> bool {
    x.dim() == 3 && x.size()[1] <= MAX_TOKENS && crate::kernels::serves("attention", &[x])
}

/// `softmax(q kᵀ · scale) v` for every head of the qkv projection `qkv` `[B, N, 3C]` (q, k, v
/// each `[B, N, heads, C / heads]` side by side) with its bias `bias` `[3C]` added here (`qkv`
/// is then the product without it): the heads' outputs `[B, N, C]`, heads side by side (what
/// DINO's `(attn @ v).transpose(1, 2).reshape(B, N, C)` gives). Differentiable with respect to
/// `qkv` and `bias`.
pub fn short_attention(
    qkv: &Tensor,
    bias: Option<&Tensor>,
    heads: i64,
    scale: f64,
) -> Result<Tensor> {
    run(qkv, bias, heads, scale, -1)
}

/// [`short_attention`] with kernel set `isa` (-1: the widest this CPU runs).
/// The bridge checks the shapes, kinds and devices.
fn run(qkv: &Tensor, bias: Option<&Tensor>, heads: i64, scale: f64, isa: i64) -> Result<Tensor> {
    let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr().cast());
    // SAFETY: the tensors outlive the call.
    crate::kernels::run_bridge(|out, err, len| unsafe {
        sevit_short_attention(
            qkv.as_ptr().cast(),
            bias_ptr,
            heads,
            scale,
            isa,
            out,
            err,
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{kernel_set, kernel_sets, max_diff};
    use tch::{Device, Kind};

    /// DINO's explicit attention in f64 on the same qkv.
    fn reference(qkv: &Tensor, heads: i64, scale: f64) -> Tensor {
        let (b, n, c3) = qkv.size3().unwrap();
        let c = c3 / 3;
        let qkv = qkv
            .reshape([b, n, 3, heads, c / heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attn = (q.matmul(&k.transpose(-2, -1)) * scale).softmax(-1, None::<Kind>);
        attn.matmul(&v).transpose(1, 2).reshape([b, n, c])
    }

    #[test]
    fn values_and_gradients_match_explicit_attention() {
        let _rng = crate::torch_rng();
        tch::manual_seed(11);
        for isa in kernel_sets() {
            // (batch, tokens, heads, head width): the DISTL step's shapes, odd lengths around the
            // vector widths, a single token, narrow and odd head widths.
            for &(b, n, h, d) in &[
                (4i64, 17i64, 3i64, 64i64),
                (3, 65, 3, 64),
                (2, 1, 2, 8),
                (2, 5, 4, 12),
                (1, 100, 1, 20),
                (2, 33, 2, 16),
                (1, 128, 6, 64),
            ] {
                let c = h * d;
                let scale = (d as f64).powf(-0.5);
                let base = Tensor::randn([b, n, 3 * c], (Kind::Float, Device::Cpu)) * 2.0;
                let bias0 = Tensor::randn([3 * c], (Kind::Float, Device::Cpu));
                let g = Tensor::randn([b, n, c], (Kind::Float, Device::Cpu));
                for with_bias in [false, true] {
                    let x = base.detach().set_requires_grad(true);
                    let bias = bias0.detach().set_requires_grad(true);
                    let out = run(&x, with_bias.then_some(&bias), h, scale, isa).unwrap();
                    (&out * &g).sum(Kind::Float).backward();

                    let xr = base.to_kind(Kind::Double).set_requires_grad(true);
                    let br = bias0.to_kind(Kind::Double).set_requires_grad(true);
                    let want = if with_bias {
                        reference(&(&xr + &br), h, scale)
                    } else {
                        reference(&xr, h, scale)
                    };
                    (&want * g.to_kind(Kind::Double))
                        .sum(Kind::Double)
                        .backward();

                    let what = format!(
                        "{} b {b} n {n} h {h} d {d} bias {with_bias}",
                        kernel_set(isa).0
                    );
                    assert_eq!(out.size(), [b, n, c], "{what}");
                    assert!(
                        max_diff(&out, &want) < 2e-5,
                        "{what}: values off by {}",
                        max_diff(&out, &want)
                    );
                    let (gx, gr) = (x.grad(), xr.grad());
                    assert!(
                        max_diff(&gx, &gr) < 2e-4,
                        "{what}: gradients off by {}",
                        max_diff(&gx, &gr)
                    );
                    if with_bias {
                        let tol = 2e-4 * (b * n) as f64;
                        assert!(
                            max_diff(&bias.grad(), &br.grad()) < tol,
                            "{what}: bias gradient"
                        );
                    } else {
                        assert!(!bias.grad().defined(), "{what}: no bias, no bias gradient");
                    }

                    // without gradients: the same values, no autograd node
                    let plain = tch::no_grad(|| {
                        run(&base, with_bias.then_some(&bias0), h, scale, isa).unwrap()
                    });
                    assert!(!plain.requires_grad());
                    assert!(
                        plain.equal(&out.detach()),
                        "{what}: no-grad forward differs"
                    );
                }
            }
        }
    }

    #[test]
    fn gradients_match_libtorch_sdpa_on_strided_views() {
        // The kernel against the path it replaces (unbind + SDPA), f32 both.
        let _rng = crate::torch_rng();
        tch::manual_seed(12);
        let (b, n, h, d) = (8, 65, 3, 64);
        let c = h * d;
        let scale = (d as f64).powf(-0.5);
        let base = Tensor::randn([b, n, 3 * c], (Kind::Float, Device::Cpu));
        let g = Tensor::randn([b, n, c], (Kind::Float, Device::Cpu));
        let x = base.detach().set_requires_grad(true);
        (short_attention(&x, None, h, scale).unwrap() * &g)
            .sum(Kind::Float)
            .backward();
        let y = base.detach().set_requires_grad(true);
        let parts = y.reshape([b, n, 3, h, d]).unbind(2);
        let (q, k, v) = (
            parts[0].transpose(1, 2),
            parts[1].transpose(1, 2),
            parts[2].transpose(1, 2),
        );
        let o = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            scale,
            false,
        );
        (o.transpose(1, 2).reshape([b, n, c]) * &g)
            .sum(Kind::Float)
            .backward();
        assert!(
            max_diff(&x.grad(), &y.grad()) < 1e-4,
            "{}",
            max_diff(&x.grad(), &y.grad())
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bits() {
        let _rng = crate::torch_rng();
        tch::manual_seed(13);
        let base = Tensor::randn([6, 17, 3 * 192], (Kind::Float, Device::Cpu));
        let run = || {
            let x = base.detach().set_requires_grad(true);
            let out = short_attention(&x, None, 3, 0.125).unwrap();
            out.sum(Kind::Float).backward();
            (out.detach(), x.grad())
        };
        let (o1, g1) = run();
        let (o2, g2) = run();
        assert!(o1.equal(&o2) && g1.equal(&g2));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Tensor::zeros([2, 5, 10], (Kind::Float, Device::Cpu));
        let e = short_attention(&x, None, 3, 1.0).unwrap_err().to_string();
        assert!(e.contains("heads"), "{e}");
        let x = Tensor::zeros([2, 5, 18], (Kind::Double, Device::Cpu));
        assert!(short_attention(&x, None, 3, 1.0)
            .unwrap_err()
            .to_string()
            .contains("f32"));
        let x = Tensor::zeros([5, 18], (Kind::Float, Device::Cpu));
        assert!(short_attention(&x, None, 3, 1.0)
            .unwrap_err()
            .to_string()
            .contains("[B, N, 3C]"));
        let x = Tensor::zeros([2, 5, 18], (Kind::Float, Device::Cpu));
        let short_bias = Tensor::zeros([6], (Kind::Float, Device::Cpu));
        let e = short_attention(&x, Some(&short_bias), 3, 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("qkv bias"), "{e}");
        for i in 0..3 {
            if !kernel_set(i).1 {
                let e = run(
                    &Tensor::zeros([1, 2, 6], (Kind::Float, Device::Cpu)),
                    None,
                    1,
                    1.0,
                    i,
                )
                .unwrap_err();
                assert!(e.to_string().contains("not available"), "{e}");
            }
        }
    }
}
