//! Mixed precision of the training forward passes (`precision` in [`crate::TrainConfig`]):
//! `f32` (default), or `bf16` autocast on CUDA and CPU, the way PyTorch's
//! `torch.autocast(device_type, dtype=torch.bfloat16)` runs a forward pass: matrix products in
//! bf16; the losses are computed in f32 (they ask for it explicitly, since CPU autocast keeps
//! softmax in bf16); parameters and gradients stay f32, so no loss scaling is needed. `f16` is refused for training: fp16 gradients need a loss scaler, which
//! this engine does not implement.
//!
//! tch 0.26 can only switch CUDA autocast on with libtorch's default fp16 dtype; the dtype is
//! set through a small C++ shim (`cpp/autocast_bridge.cpp`) over `at::autocast`.

use std::os::raw::c_int;

use anyhow::bail;
pub use sevit_model::Precision;
use tch::Device;

extern "C" {
    fn sevit_autocast_enter(
        device: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
    );
    fn sevit_autocast_exit(device: c_int, prev_enabled: c_int, prev_dtype: c_int);
    fn sevit_autocast_state(device: c_int, dtype: *mut c_int) -> c_int;
}

fn device_code(device: Device) -> c_int {
    c_int::from(device.is_cuda())
}

/// Checks that `precision` can train (on any device).
///
/// # Errors
/// `f16` (needs loss scaling, not implemented).
pub fn check_training(precision: Precision) -> anyhow::Result<()> {
    if precision == Precision::F16 {
        bail!(
            "precision = \"f16\" is not supported for training: fp16 gradients need a loss scaler; use \"bf16\" (no scaling needed) or \"f32\""
        );
    }
    Ok(())
}

/// An autocast region: forward passes run in the chosen dtype until it is dropped (then the
/// previous autocast state is restored). A no-op for `f32`.
#[must_use = "autocast ends when the guard is dropped"]
pub struct Autocast {
    active: Option<(c_int, c_int, c_int)>,
}

impl Autocast {
    /// Enters autocast for `device` with `precision` (nothing for `f32`).
    pub fn enter(device: Device, precision: Precision) -> Self {
        let dtype = match precision {
            Precision::F32 => return Self { active: None },
            Precision::F16 => 0,
            Precision::Bf16 => 1,
        };
        let dev = device_code(device);
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: plain calls into libtorch's thread-local autocast state; the out-pointers
        // are valid for the call.
        unsafe { sevit_autocast_enter(dev, dtype, &mut prev_enabled, &mut prev_dtype) };
        Self {
            active: Some((dev, prev_enabled, prev_dtype)),
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        if let Some((dev, enabled, dtype)) = self.active.take() {
            // SAFETY: restores the state saved by `enter` on the same thread.
            unsafe { sevit_autocast_exit(dev, enabled, dtype) };
        }
    }
}

/// Whether autocast is on for `device` and, if so, its precision.
pub fn current(device: Device) -> Option<Precision> {
    let mut dtype = 0;
    // SAFETY: reads libtorch's autocast state.
    let on = unsafe { sevit_autocast_state(device_code(device), &mut dtype) } != 0;
    on.then_some(match dtype {
        1 => Precision::Bf16,
        2 => Precision::F32,
        _ => Precision::F16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_region_casts_matmuls_and_restores_the_state() {
        let cpu = Device::Cpu;
        assert_eq!(current(cpu), None);
        let a = Tensor::ones([4, 8], (Kind::Float, cpu));
        let w = Tensor::ones([8, 3], (Kind::Float, cpu));
        {
            let _ac = Autocast::enter(cpu, Precision::Bf16);
            assert_eq!(current(cpu), Some(Precision::Bf16));
            assert_eq!(a.matmul(&w).kind(), Kind::BFloat16);
            // the engine's losses ask for f32 explicitly (CPU autocast keeps softmax in bf16)
            assert_eq!(a.matmul(&w).log_softmax(-1, Kind::Float).kind(), Kind::Float);
            {
                let _inner = Autocast::enter(cpu, Precision::F32);
                assert_eq!(current(cpu), Some(Precision::Bf16), "f32 changes nothing");
            }
            assert_eq!(current(cpu), Some(Precision::Bf16));
        }
        assert_eq!(current(cpu), None);
        assert_eq!(a.matmul(&w).kind(), Kind::Float);
    }

    #[test]
    fn f16_cannot_train() {
        let e = check_training(Precision::F16).unwrap_err().to_string();
        assert!(e.contains("loss scaler"), "{e}");
        check_training(Precision::Bf16).unwrap();
        check_training(Precision::F32).unwrap();
    }
}
