//! `x + s ⊙ (z + b)` for a residual `x`, a bias-free matrix product `z` with bias `b` and
//! stochastic depth's per-sample factor `s` (f32 on the CPU), as one autograd node
//! (`cpp/bias_residual.cpp`): how a ViT block's attention projection and MLP output join the
//! residual stream.
//!
//! libtorch's `addmm` copies the bias into every row of its output before accumulating the
//! product, and the residual `addcmul` reads that output back; the backward multiplies the
//! gradient by `s` and reads the result again for the bias gradient. Here the product is
//! written once, the bias and factor are applied where the residual reads it, and the backward
//! writes `s ⊙ g` while summing it for the bias (with no factor it only sums). Same values as
//! `x + drop_path(z + b)` to rounding.

use anyhow::Result;
use tch::Tensor;

use sevit_torch_ext::kernels::sevit_bias_residual;

/// True when [`bias_residual`] serves a residual `x` whose branch is the product of an input
/// `h` with bias `b`: all f32 on the CPU, no CPU autocast region (which would make the product
/// bf16), and the kernel enabled (`SEVIT_KERNELS`, see [`kernels`](crate::kernels)).
pub fn applies(x: &Tensor, h: &Tensor, b: &Tensor) -> bool {
    x.dim() >= 2 && crate::kernels::serves("bias-residual", &[x, h, b])
}

/// `x + s ⊙ (z + b)` for `x` and `z` `[B, ..., C]`, `b` `[C]` and `s` `[B]` (`None`: 1 for
/// every sample); differentiable with respect to `x`, `z` and `b`.
pub fn bias_residual(x: &Tensor, z: &Tensor, b: &Tensor, s: Option<&Tensor>) -> Result<Tensor> {
    run(x, z, b, s, -1)
}

fn run(x: &Tensor, z: &Tensor, b: &Tensor, s: Option<&Tensor>, isa: i64) -> Result<Tensor> {
    let s_ptr = s.map_or(std::ptr::null(), |t| t.as_ptr().cast());
    // SAFETY: the tensors outlive the call.
    crate::kernels::run_bridge(|out, err, len| unsafe {
        sevit_bias_residual(
            x.as_ptr().cast(),
            z.as_ptr().cast(),
            b.as_ptr().cast(),
            s_ptr,
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

    #[test]
    fn values_and_gradients_match_libtorch() {
        let _rng = crate::torch_rng();
        tch::manual_seed(31);
        for isa in kernel_sets() {
            for &(dims, with_factor) in &[
                (&[32i64, 65, 192][..], true),
                (&[32, 65, 192], false),
                (&[5, 1, 19], true),
                (&[3, 7, 2, 40], true),
                (&[2, 9], false),
            ] {
                let c = *dims.last().unwrap();
                let x0 = Tensor::randn(dims, (Kind::Float, Device::Cpu));
                let z0 = Tensor::randn(dims, (Kind::Float, Device::Cpu));
                let b0 = Tensor::randn([c], (Kind::Float, Device::Cpu));
                let g = Tensor::randn(dims, (Kind::Float, Device::Cpu));
                // stochastic depth's factor: 0 (dropped) or 1 / keep
                let s = with_factor.then(|| {
                    (Tensor::rand([dims[0]], (Kind::Float, Device::Cpu)) + 0.6).floor() / 0.6
                });

                let (x, z, b) = (
                    x0.detach().set_requires_grad(true),
                    z0.detach().set_requires_grad(true),
                    b0.detach().set_requires_grad(true),
                );
                let out = run(&x, &z, &b, s.as_ref(), isa).unwrap();
                (&out * &g).sum(Kind::Float).backward();

                let d = |t: &Tensor| t.to_kind(Kind::Double).set_requires_grad(true);
                let (xr, zr, br) = (d(&x0), d(&z0), d(&b0));
                let branch = &zr + &br;
                let want = match &s {
                    Some(s) => {
                        let mut shape = vec![dims[0]];
                        shape.extend(std::iter::repeat_n(1, dims.len() - 1));
                        &xr + branch * s.to_kind(Kind::Double).reshape(shape.as_slice())
                    }
                    None => &xr + branch,
                };
                (&want * g.to_kind(Kind::Double))
                    .sum(Kind::Double)
                    .backward();

                let what = format!("{} {dims:?} factor {with_factor}", kernel_set(isa).0);
                assert!(max_diff(&out, &want) < 1e-5, "{what}: values");
                assert!(
                    max_diff(&x.grad(), &xr.grad()) < 1e-6,
                    "{what}: residual gradient"
                );
                assert!(
                    max_diff(&z.grad(), &zr.grad()) < 1e-5,
                    "{what}: branch gradient"
                );
                let rows = x0.numel() as f64 / c as f64;
                assert!(
                    max_diff(&b.grad(), &br.grad()) < 1e-6 * rows + 1e-5,
                    "{what}: bias gradient"
                );

                let plain = tch::no_grad(|| run(&x0, &z0, &b0, s.as_ref(), isa).unwrap());
                assert!(
                    !plain.requires_grad() && plain.equal(&out.detach()),
                    "{what}: no-grad forward"
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Tensor::zeros([4, 3, 6], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([6], (Kind::Float, Device::Cpu));
        let z = Tensor::zeros([4, 3, 5], (Kind::Float, Device::Cpu));
        assert!(bias_residual(&x, &z, &b, None)
            .unwrap_err()
            .to_string()
            .contains("differ"));
        let b5 = Tensor::zeros([5], (Kind::Float, Device::Cpu));
        assert!(bias_residual(&x, &x, &b5, None)
            .unwrap_err()
            .to_string()
            .contains("bias"));
        let s = Tensor::ones([3], (Kind::Float, Device::Cpu));
        assert!(bias_residual(&x, &x, &b, Some(&s))
            .unwrap_err()
            .to_string()
            .contains("per-sample"));
        let xd = x.to_kind(Kind::Double);
        assert!(bias_residual(&xd, &xd, &b, None)
            .unwrap_err()
            .to_string()
            .contains("f32"));
    }
}
