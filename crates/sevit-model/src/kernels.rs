//! sevit's own CPU kernels (f32), next to libtorch's: [`short_attention`](crate::short_attention),
//! [`bias_gelu`](crate::bias_gelu) and [`bias_residual`](crate::bias_residual). Each is built
//! for AVX-512, AVX2 and the baseline instruction set, and the widest one the CPU runs is used.
//!
//! `SEVIT_KERNELS` in the environment chooses which of them run: a comma-separated list of
//! `attention`, `bias-gelu`, `bias-residual`, or `none` for libtorch's operators everywhere
//! (for comparisons); unset means all.

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// The kernels `SEVIT_KERNELS` can name.
pub const NAMES: [&str; 3] = ["attention", "bias-gelu", "bias-residual"];

/// Kernels that only pay off with AVX-512: with AVX2 alone the GELU's arithmetic, not memory,
/// bounds bias + GELU, and libtorch's is faster (see [`bias_gelu`](crate::bias_gelu)).
const AVX512_ONLY: [&str; 1] = ["bias-gelu"];

use sevit_torch_ext::kernels::sevit_kernel_isa;

/// Whether kernel `name` (one of [`NAMES`]) is in use.
pub fn enabled(name: &str) -> bool {
    static CHOSEN: OnceLock<Option<Vec<String>>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| {
        let v = std::env::var("SEVIT_KERNELS").ok()?;
        let list: Vec<String> = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for k in &list {
            if k != "none" && !NAMES.contains(&k.as_str()) {
                tracing::warn!(
                    "SEVIT_KERNELS: unknown kernel {k:?} (known: {}, none)",
                    NAMES.join(", ")
                );
            }
        }
        Some(list)
    });
    chosen
        .as_ref()
        .is_none_or(|list| list.iter().any(|k| k == name))
}

/// Whether kernel `name` runs here: enabled (see [`enabled`]) and worth it on this CPU.
pub fn active(name: &str) -> bool {
    enabled(name) && (!AVX512_ONLY.contains(&name) || isa() == "avx512")
}

thread_local! {
    static PLAIN_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with libtorch's own operators only (no sevit kernel serves on this thread), as a
/// TorchScript trace needs: the tracer records libtorch operators, and a kernel's work would
/// be invisible to it.
pub fn with_plain_ops<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PLAIN_OPS.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PLAIN_OPS.with(|p| p.replace(true)));
    f()
}

/// Whether kernel `name` serves an operation on `tensors`: the kernel is [`active`], the tensors
/// are f32 on the CPU, and no CPU autocast region is open (it would make the products around
/// the kernel bf16), and no [`with_plain_ops`] region is open.
pub fn serves(name: &str, tensors: &[&Tensor]) -> bool {
    !PLAIN_OPS.with(|p| p.get())
        && tensors
            .iter()
            .all(|t| t.kind() == Kind::Float && t.device() == Device::Cpu)
        && active(name)
        && crate::precision::current(Device::Cpu).is_none()
}

/// The kernels that run here, by name.
pub fn in_use() -> Vec<&'static str> {
    NAMES.into_iter().filter(|n| active(n)).collect()
}

/// The instruction set the kernels run with on this CPU: `avx512`, `avx2` or `base`.
pub fn isa() -> &'static str {
    static ISA: OnceLock<&'static str> = OnceLock::new();
    ISA.get_or_init(|| kernel_set(-1).0)
}

/// The name of kernel build `isa` (-1: the one in use; 0 base, 1 avx2, 2 avx512) and whether
/// this CPU runs it.
pub(crate) fn kernel_set(isa: i64) -> (&'static str, bool) {
    let mut supported = 0;
    // SAFETY: the bridge returns a pointer to a static, NUL-terminated string.
    let name = unsafe { CStr::from_ptr(sevit_kernel_isa(isa, &mut supported)) };
    (name.to_str().unwrap_or("?"), supported != 0)
}

/// The kernel builds this CPU runs (tests check each, not only the one in use).
#[cfg(test)]
pub(crate) fn kernel_sets() -> Vec<i64> {
    let sets: Vec<i64> = (0..3).filter(|&i| kernel_set(i).1).collect();
    assert!(sets.contains(&0), "the baseline kernels run everywhere");
    sets
}

/// Calls a kernel bridge's C entry point `call(out, err, err_len)`, which either writes a new
/// heap tensor (`new at::Tensor`) to `out` and returns 0, or writes its message to `err`, and
/// takes ownership of the tensor.
pub(crate) fn run_bridge(
    call: impl FnOnce(*mut *mut c_void, *mut c_char, usize) -> i32,
) -> Result<Tensor> {
    let mut out: *mut c_void = std::ptr::null_mut();
    sevit_torch_ext::call("a sevit kernel", |err, len| call(&mut out, err, len))
        .map_err(|msg| anyhow::anyhow!(msg))?;
    if out.is_null() {
        bail!("a sevit kernel returned no tensor");
    }
    // SAFETY: on success the bridge handed over a tensor it allocated for the caller.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

/// The largest absolute difference between two tensors, in f64.
#[cfg(test)]
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    use tch::Kind;
    f64::try_from(
        (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
            .abs()
            .max(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instruction_set_is_in_use() {
        assert!(["avx512", "avx2", "base"].contains(&isa()));
        assert!(kernel_set(-1).1);
    }
}
