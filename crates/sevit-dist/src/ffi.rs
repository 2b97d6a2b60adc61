//! Raw bindings of `cpp/c10d_bridge.cpp`. Use [`super::ProcessGroup`] instead.

use std::os::raw::c_char;

pub use sevit_torch_ext::c10d::*;

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
