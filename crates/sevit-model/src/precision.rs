//! Mixed precision of forward passes: `f32`, or fp16 / bf16 autocast on CUDA and CPU, the way
//! PyTorch's `torch.autocast(device_type, dtype)` runs a forward pass (matrix products in the
//! low precision, reductions such as softmax kept in f32 on CUDA; parameters stay f32).
//!
//! tch 0.26 can only switch CUDA autocast on with libtorch's default fp16 dtype; the dtype and
//! the CPU state are set through a small C++ shim (`cpp/autocast_bridge.cpp`) over
//! `at::autocast`.

use std::os::raw::c_int;

use anyhow::{bail, Result};
use tch::Device;

use sevit_torch_ext::autocast::{sevit_autocast_enter, sevit_autocast_exit, sevit_autocast_state};

/// Precision of forward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Full fp32.
    F32,
    /// Autocast to fp16.
    F16,
    /// Autocast to bf16.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => bail!("unknown precision {s:?}: expected f32, f16 or bf16"),
        }
    }
}

fn device_code(device: Device) -> c_int {
    c_int::from(device.is_cuda())
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

/// Runs `f` inside an [`Autocast`] region for `device` and `precision`.
pub fn with_autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> T {
    let _region = Autocast::enter(device, precision);
    f()
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
    fn parse() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("FP32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("int8".parse::<Precision>().is_err());
    }

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
            // losses that need f32 ask for it (CPU autocast keeps softmax in bf16)
            assert_eq!(
                a.matmul(&w).log_softmax(-1, Kind::Float).kind(),
                Kind::Float
            );
            {
                let _inner = Autocast::enter(cpu, Precision::F32);
                assert_eq!(current(cpu), Some(Precision::Bf16), "f32 changes nothing");
            }
            assert_eq!(current(cpu), Some(Precision::Bf16));
        }
        assert_eq!(current(cpu), None);
        assert_eq!(a.matmul(&w).kind(), Kind::Float);
        assert_eq!(
            with_autocast(cpu, Precision::Bf16, || a.matmul(&w)).kind(),
            Kind::BFloat16
        );
        assert_eq!(current(cpu), None);
    }
}
