//! Raw bindings of `cpp/c10d_bridge.cpp`. Use [`super::ProcessGroup`] instead.

use std::os::raw::{c_char, c_int, c_void};

extern "C" {
    pub fn sevit_c10d_has_nccl() -> c_int;
    pub fn sevit_c10d_free_string(s: *mut c_char);
    #[allow(clippy::too_many_arguments)]
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
    pub fn sevit_c10d_allreduce_sum(
        pg: *mut c_void,
        tensor: *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn sevit_c10d_broadcast(
        pg: *mut c_void,
        tensor: *mut c_void,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn sevit_c10d_free(pg: *mut c_void);
}

/// Takes ownership of a message set by the bridge.
///
/// # Safety
/// `err` must be null or a string allocated by the bridge, not freed yet.
pub unsafe fn take_message(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error (no message)".into();
    }
    let s = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
    sevit_c10d_free_string(err);
    s
}
