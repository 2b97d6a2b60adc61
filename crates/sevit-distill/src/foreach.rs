//! Multi-tensor kernels of libtorch that tch does not expose, through the C++ shim
//! `cpp/foreach_bridge.cpp`: the fused AdamW step, the list-wise `lerp` of the EMA and the
//! per-tensor clipping of gradients. Each replaces several small element-wise launches per
//! parameter with a pass over all of them.

use anyhow::ensure;
use std::ffi::c_void;

use tch::Tensor;

use sevit_torch_ext::foreach::{sevit_clip_per_tensor, sevit_foreach_lerp, sevit_fused_adamw};

fn ptrs(ts: &[&Tensor]) -> Vec<*const c_void> {
    ts.iter().map(|t| t.as_ptr().cast::<c_void>()).collect()
}

/// Every tensor of `others` has the shape, device and dtype of `firsts`' tensor at that index
/// (libtorch's multi-tensor kernels index them in lockstep).
fn check_alike(what: &str, firsts: &[&Tensor], others: &[&[&Tensor]]) -> anyhow::Result<()> {
    let device = firsts.first().map(|t| t.device());
    for (i, p) in firsts.iter().enumerate() {
        ensure!(
            Some(p.device()) == device,
            "{what}: tensor {i} is on {:?}, tensor 0 on {device:?}",
            p.device()
        );
        for list in others {
            let t = list[i];
            ensure!(
                t.size() == p.size() && t.kind() == p.kind() && t.device() == p.device(),
                "{what}: tensor {i} is {:?} {:?} on {:?} but its partner is {:?} {:?} on {:?}",
                p.size(),
                p.kind(),
                p.device(),
                t.size(),
                t.kind(),
                t.device()
            );
        }
    }
    Ok(())
}

/// Runs a bridge call under the extension's error convention (see `sevit_torch_ext::call`).
fn check(what: &str, f: impl FnOnce(*mut std::ffi::c_char, usize) -> i32) -> anyhow::Result<()> {
    sevit_torch_ext::call(what, f).map_err(|msg| anyhow::anyhow!("{what}: {msg}"))
}

/// Hyper-parameters of one [`fused_adamw`] call (one parameter group).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// Decoupled weight decay (`p ← p·(1 − lr·wd)` before the Adam update).
    pub weight_decay: f64,
    /// ε.
    pub eps: f64,
}

/// One AdamW step, PyTorch's formula, in place over `params` and their moments.
/// `steps[i]` is parameter `i`'s step count including this update (for the bias corrections).
///
/// # Errors
/// Lists of different lengths, or libtorch's refusal (mixed devices or dtypes, shape
/// mismatches).
pub fn fused_adamw(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    steps: &[i64],
    h: AdamWStep,
) -> anyhow::Result<()> {
    let n = params.len();
    ensure!(
        grads.len() == n && exp_avgs.len() == n && exp_avg_sqs.len() == n && steps.len() == n,
        "fused AdamW: {n} parameters but {} gradients, {} first and {} second moments, {} steps",
        grads.len(),
        exp_avgs.len(),
        exp_avg_sqs.len(),
        steps.len()
    );
    check_alike("fused AdamW", params, &[grads, exp_avgs, exp_avg_sqs])?;
    let (p, g, m, v) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs));
    let steps: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
    // SAFETY: every pointer is a live tch tensor (`at::Tensor*`) borrowed for the call; the
    // shim catches libtorch's exceptions and writes at most `len` bytes of `err`.
    check("fused AdamW step", |err, len| unsafe {
        sevit_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            steps.as_ptr(),
            n as i64,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            err,
            len,
        )
    })
}

/// `g ← g·min(1, clip / (‖g‖₂ + 1e-6))` for every tensor `g` of `grads` separately (DINO's
/// `clip_gradients`), in place, without a host read: the norms come from one multi-tensor
/// kernel.
///
/// # Errors
/// Tensors on different devices, or libtorch's refusal.
pub fn clip_per_tensor_(grads: &[&Tensor], clip: f64) -> anyhow::Result<()> {
    let device = grads.first().map(|t| t.device());
    for (i, g) in grads.iter().enumerate() {
        ensure!(
            Some(g.device()) == device,
            "per-tensor clipping: tensor {i} is on {:?}, tensor 0 on {device:?}",
            g.device()
        );
    }
    let g = ptrs(grads);
    // SAFETY: as in `fused_adamw`.
    check("per-tensor gradient clipping", |err, len| unsafe {
        sevit_clip_per_tensor(g.as_ptr(), g.len() as i64, clip, err, len)
    })
}

/// `dst[i] ← dst[i] + weight·(src[i] − dst[i])` for every `i`, in place, without gradient.
///
/// # Errors
/// Lists of different lengths, or libtorch's refusal (shape, device or dtype mismatch).
pub fn lerp_(dst: &[&Tensor], src: &[&Tensor], weight: f64) -> anyhow::Result<()> {
    ensure!(
        dst.len() == src.len(),
        "lerp over lists of {} and {} tensors",
        dst.len(),
        src.len()
    );
    check_alike("list lerp", dst, &[src])?;
    let (d, s) = (ptrs(dst), ptrs(src));
    // SAFETY: as in `fused_adamw`.
    check("list lerp", |err, len| unsafe {
        sevit_foreach_lerp(d.as_ptr(), s.as_ptr(), d.len() as i64, weight, err, len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn lerp_matches_per_tensor_lerp() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        let a = [Tensor::randn([5, 3], opts), Tensor::randn([7], opts)];
        let b = [Tensor::randn([5, 3], opts), Tensor::randn([7], opts)];
        let want: Vec<Tensor> = a.iter().zip(&b).map(|(x, y)| x.lerp(y, 0.3)).collect();
        lerp_(&[&a[0], &a[1]], &[&b[0], &b[1]], 0.3).unwrap();
        for (x, w) in a.iter().zip(&want) {
            assert!(x.allclose(w, 1e-6, 1e-7, false));
        }
    }

    #[test]
    fn mismatches_are_errors_not_crashes() {
        let opts = (Kind::Float, Device::Cpu);
        let a = Tensor::zeros([3], opts);
        let b = Tensor::zeros([4], opts);
        let e = lerp_(&[&a], &[&b], 0.5).unwrap_err().to_string();
        assert!(e.contains("list lerp"), "{e}");
        assert!(lerp_(&[&a], &[], 0.5).is_err());
        let h = AdamWStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: 1e-8,
        };
        let e = fused_adamw(&[&a], &[&b], &[&a], &[&a], &[1], h).unwrap_err();
        assert!(e.to_string().contains("fused AdamW"), "{e}");
    }
}
