//! Raw pickle bytes -> the pickle VM (no torch resolver) -> JSON view.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevit_model::pickle::{unpickle, NoResolver};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = unpickle(data, &mut NoResolver) {
        let _ = v.to_json();
        let _ = v.type_name();
    }
});
