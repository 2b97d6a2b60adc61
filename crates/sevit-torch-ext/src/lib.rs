//! `sevit-torch-ext`: every C++ part of sevit in one crate, built by one `build.rs` against the
//! libtorch that `tch` links (see `build.rs`), and the C entry points as Rust declarations.
//!
//! The safe wrappers live with what they serve: [`kernels`] in `sevit-model` (`short_attention`,
//! `bias_gelu`, `bias_residual`, `kernels`), [`autocast`] in `sevit-model::precision`,
//! [`foreach`] in `sevit-distill::foreach`, [`c10d`] in `sevit-dist`. Tensors cross the boundary
//! as `tch`'s C tensor pointers (`*const c_void`, an `at::Tensor*`).
//!
//! Errors: the kernel and foreach entry points return 0 on success, otherwise write a
//! NUL-terminated message into the caller's `err` buffer (`err_len` bytes) and return non-zero;
//! the c10d entry points return null / non-zero and hand back a heap message that
//! [`c10d::sevit_c10d_free_string`] releases.

#![allow(clippy::too_many_arguments)]

use std::ffi::{c_char, c_int, c_void};

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
        /// Releases a message returned through an `err` out-parameter.
        pub fn sevit_c10d_free_string(s: *mut c_char);
        /// Creates a process group (null and `err` on failure).
        pub fn sevit_c10d_new(
            backend: *const c_char,
            host: *const c_char,
            port: c_int,
            listen_fd: c_int,
            rank: c_int,
            world_size: c_int,
            timeout_ms: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        /// In-place sum over the group.
        pub fn sevit_c10d_allreduce_sum(
            pg: *mut c_void,
            tensor: *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        /// In-place broadcast from `root`.
        pub fn sevit_c10d_broadcast(
            pg: *mut c_void,
            tensor: *mut c_void,
            root: c_int,
            err: *mut *mut c_char,
        ) -> c_int;
        /// Destroys a process group.
        pub fn sevit_c10d_free(pg: *mut c_void);
    }
}
