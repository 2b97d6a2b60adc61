//! `sevit-torch-ext`: every C++ part of sevit in one crate, built by one `build.rs` against the
//! libtorch that `tch` links (see `build.rs`), and the C entry points as Rust declarations.
//!
//! The safe wrappers live with what they serve: [`kernels`] in `sevit-model` (`short_attention`,
//! `bias_gelu`, `bias_residual`, `kernels`), [`autocast`] in `sevit-model::precision`,
//! [`foreach`] in `sevit-distill::foreach`, [`c10d`] in `sevit-dist`. Tensors cross the boundary
//! as `tch`'s C tensor pointers (`*const c_void`, an `at::Tensor*`).
//!
//! Errors, one convention for every entry point that can fail (`cpp/error.h`): the caller
//! passes a buffer `err` of `err_len` bytes; on failure the call writes a NUL-terminated
//! message there and returns non-zero (a pointer-returning call returns null). [`call`] wraps
//! it into a `Result`.

#![allow(clippy::too_many_arguments)]

use std::ffi::{c_char, c_int, c_void};

// The C++ libraries here call into libtorch: link it after them even where nothing in Rust
// names torch-sys (this crate's own tests).
use torch_sys as _;

/// Size of the message buffer [`call`] hands to an entry point.
pub const ERROR_BUFFER: usize = 2048;

/// Runs `f(err, err_len)`, an entry point call that returns 0 on success; on failure its
/// message, or `what` when it wrote none.
pub fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<(), String> {
    let mut err = [0u8; ERROR_BUFFER];
    if f(err.as_mut_ptr().cast(), err.len()) == 0 {
        return Ok(());
    }
    Err(message(&err).unwrap_or_else(|| format!("{what} failed (no message)")))
}

/// The NUL-terminated message in `err`, if any.
pub fn message(err: &[u8]) -> Option<String> {
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    let text = String::from_utf8_lossy(&err[..end]).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The CPU kernels (`cpp/short_attention.cpp`, `bias_gelu.cpp`, `bias_residual.cpp`,
/// `kernels.cpp`); `isa`: -1 the one this CPU runs best, 0 base, 1 AVX2, 2 AVX-512.
pub mod kernels {
    use super::*;

    extern "C" {
        /// Name of kernel build `isa` and whether this CPU runs it.
        pub fn sevit_kernel_isa(isa: i64, supported: *mut i32) -> *const c_char;
        /// Short-sequence attention of a `[B, N, 3C]` qkv projection (its bias added here).
        pub fn sevit_short_attention(
            qkv: *const c_void,
            bias: *const c_void,
            heads: i64,
            scale: f64,
            isa: i64,
            out: *mut *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
        /// `gelu(z + b)`, differentiable.
        pub fn sevit_bias_gelu(
            z: *const c_void,
            b: *const c_void,
            isa: i64,
            out: *mut *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
        /// `x + s * (z + b)` (`s` optional: per-sample stochastic-depth scale), differentiable.
        pub fn sevit_bias_residual(
            x: *const c_void,
            z: *const c_void,
            b: *const c_void,
            s: *const c_void,
            isa: i64,
            out: *mut *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
    }
}

/// libtorch's autocast state (`cpp/autocast_bridge.cpp`).
pub mod autocast {
    use super::*;

    extern "C" {
        /// Enables autocast to `dtype` on `device`, returning the previous state.
        pub fn sevit_autocast_enter(
            device: c_int,
            dtype: c_int,
            prev_enabled: *mut c_int,
            prev_dtype: *mut c_int,
        );
        /// Restores the state returned by [`sevit_autocast_enter`].
        pub fn sevit_autocast_exit(device: c_int, prev_enabled: c_int, prev_dtype: c_int);
        /// Whether autocast is on for `device`, and its dtype.
        pub fn sevit_autocast_state(device: c_int, dtype: *mut c_int) -> c_int;
    }
}

/// Fused updates over lists of tensors (`cpp/foreach_bridge.cpp`).
pub mod foreach {
    use super::*;

    extern "C" {
        /// libtorch's fused AdamW step over `n` parameters.
        pub fn sevit_fused_adamw(
            params: *const *const c_void,
            grads: *const *const c_void,
            exp_avgs: *const *const c_void,
            exp_avg_sqs: *const *const c_void,
            steps: *const f64,
            n: i64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            wd: f64,
            eps: f64,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
        /// Clips each of `n` gradients to norm `clip`.
        pub fn sevit_clip_per_tensor(
            grads: *const *const c_void,
            n: i64,
            clip: f64,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
        /// `dst += weight * (src - dst)` over `n` pairs.
        pub fn sevit_foreach_lerp(
            dst: *const *const c_void,
            src: *const *const c_void,
            n: i64,
            weight: f64,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
    }
}

/// libtorch's distributed engine, c10d (`cpp/c10d_bridge.cpp`).
pub mod c10d {
    use super::*;

    extern "C" {
        /// Whether this build has the NCCL backend.
        pub fn sevit_c10d_has_nccl() -> c_int;
        /// Creates a process group (null and `err` on failure).
        pub fn sevit_c10d_new(
            backend: *const c_char,
            host: *const c_char,
            port: c_int,
            listen_fd: c_int,
            rank: c_int,
            world_size: c_int,
            timeout_ms: i64,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut c_void;
        /// In-place sum over the group.
        pub fn sevit_c10d_allreduce_sum(
            pg: *mut c_void,
            tensor: *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        /// In-place broadcast from `root`.
        pub fn sevit_c10d_broadcast(
            pg: *mut c_void,
            tensor: *mut c_void,
            root: c_int,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        /// Destroys a process group.
        pub fn sevit_c10d_free(pg: *mut c_void);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_turns_the_error_buffer_into_a_result() {
        assert_eq!(call("ok", |_, _| 0), Ok(()));
        let failed = call("x", |err, len| {
            let msg = b"libtorch says no\0";
            assert!(len >= msg.len());
            // SAFETY: `err` is a buffer of `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), err.cast(), msg.len()) };
            1
        });
        assert_eq!(failed, Err("libtorch says no".to_string()));
        assert_eq!(
            call("x", |_, _| 1),
            Err("x failed (no message)".to_string())
        );
        // a real entry point, through the same convention: an unknown backend
        let err = {
            let mut buf = [0u8; ERROR_BUFFER];
            let (b, host) = (c"bogus", c"127.0.0.1");
            // SAFETY: valid C strings and a buffer of its length.
            let pg = unsafe {
                c10d::sevit_c10d_new(
                    b.as_ptr(),
                    host.as_ptr(),
                    0,
                    -1,
                    0,
                    1,
                    1000,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            assert!(pg.is_null());
            message(&buf).unwrap()
        };
        assert!(err.contains("unknown c10d backend"), "{err}");
    }
}
