//! `torch.save` file (zip: data.pkl, byteorder, data/<storage>) -> object tree with tensors.
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use sevit_model::pth::{flatten_tensors, load_pth};

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("pth").join("model.pth");
    common::write(&path, data);
    if let Ok(v) = load_pth(&path) {
        let _ = v.to_json();
        let mut tensors = Vec::new();
        flatten_tensors(&v, "", &mut tensors);
    }
});
