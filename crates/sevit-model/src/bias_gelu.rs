//! `gelu(z + b)` for a bias-free matrix product `z` (f32 on the CPU), as one autograd node
//! (`cpp/bias_gelu.cpp`): the first half of a ViT block's MLP.
//!
//! libtorch's `addmm` copies the bias into every row of its output before accumulating the
//! product, the GELU then reads that output back, and the backward reads the GELU's gradient
//! once more for the bias gradient. Here the product is written once (`z = x Wᵀ`), the bias is
//! added where the GELU reads it, and the backward sums the bias gradient while writing the
//! pre-activation gradient: two fewer passes over the block's widest activations each way.
//! Same values as `(x Wᵀ + b).gelu("none")` to rounding (the exact, erf form).

use anyhow::Result;
use tch::Tensor;

use sevit_torch_ext::kernels::sevit_bias_gelu;

/// True when [`bias_gelu`] serves the product `z = x Wᵀ` of input `x` with bias `b`: `x` and
/// `b` f32 on the CPU, no CPU autocast region (which would make the product bf16), an AVX-512
/// CPU, and the kernel enabled (`SEVIT_KERNELS`, see [`kernels`](crate::kernels)). With
/// AVX2 alone the GELU's arithmetic, not memory, bounds it, and libtorch's is faster (single
/// thread, 2080 x 768: forward 0.88 vs 0.82 ms, backward 1.64 vs 1.43 ms; with AVX-512 0.60
/// and 1.00 ms).
pub fn applies(x: &Tensor, b: &Tensor) -> bool {
    crate::kernels::serves("bias-gelu", &[x, b])
}

/// `gelu(z + b)` (exact GELU) for `z` `[..., cols]` and `b` `[cols]`; differentiable with
/// respect to both.
pub fn bias_gelu(z: &Tensor, b: &Tensor) -> Result<Tensor> {
    run(z, b, -1)
}

/// The bridge checks the shapes, kinds and devices.
fn run(z: &Tensor, b: &Tensor, isa: i64) -> Result<Tensor> {
    // SAFETY: the tensors outlive the call.
    crate::kernels::run_bridge(|out, err, len| unsafe {
        sevit_bias_gelu(z.as_ptr().cast(), b.as_ptr().cast(), isa, out, err, len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{kernel_set, kernel_sets, max_diff};
    use tch::{Device, Kind};

    #[test]
    fn values_and_gradients_match_libtorch() {
        let _rng = crate::torch_rng();
        tch::manual_seed(21);
        for isa in kernel_sets() {
            // widths around the vector sizes and the MLP's; row counts around the 64-row blocks
            for &(shape, cols) in &[
                (&[2080i64][..], 768i64),
                (&[3, 7], 19),
                (&[130], 16),
                (&[1], 5),
                (&[2, 65], 64),
            ] {
                let mut dims = shape.to_vec();
                dims.push(cols);
                let z0 = Tensor::randn(dims.as_slice(), (Kind::Float, Device::Cpu)) * 3.0;
                let b0 = Tensor::randn([cols], (Kind::Float, Device::Cpu));
                let g = Tensor::randn(dims.as_slice(), (Kind::Float, Device::Cpu));

                let (z, b) = (
                    z0.detach().set_requires_grad(true),
                    b0.detach().set_requires_grad(true),
                );
                let h = run(&z, &b, isa).unwrap();
                (&h * &g).sum(Kind::Float).backward();

                let zr = z0.to_kind(Kind::Double).set_requires_grad(true);
                let br = b0.to_kind(Kind::Double).set_requires_grad(true);
                let want = (&zr + &br).gelu("none");
                (&want * g.to_kind(Kind::Double))
                    .sum(Kind::Double)
                    .backward();

                let what = format!("{} {dims:?}", kernel_set(isa).0);
                assert!(
                    max_diff(&h, &want) < 1e-5,
                    "{what}: values off by {}",
                    max_diff(&h, &want)
                );
                assert!(
                    max_diff(&z.grad(), &zr.grad()) < 1e-5,
                    "{what}: input gradient off by {}",
                    max_diff(&z.grad(), &zr.grad())
                );
                let rows = z0.numel() as f64 / cols as f64;
                let gb = max_diff(&b.grad(), &br.grad());
                assert!(gb < 1e-6 * rows + 1e-5, "{what}: bias gradient off by {gb}");

                let plain = tch::no_grad(|| run(&z0, &b0, isa).unwrap());
                assert!(
                    !plain.requires_grad() && plain.equal(&h.detach()),
                    "{what}: no-grad forward differs"
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let z = Tensor::zeros([4, 6], (Kind::Float, Device::Cpu));
        let e = bias_gelu(&z, &Tensor::zeros([5], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("do not match"), "{e}");
        let e = bias_gelu(
            &z.to_kind(Kind::Double),
            &Tensor::zeros([6], (Kind::Double, Device::Cpu)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("f32"), "{e}");
    }
}
