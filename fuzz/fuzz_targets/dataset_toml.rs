//! Dataset descriptor TOML -> Descriptor -> Dataset (manifest or folder layout).
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use sevit_data::{Dataset, Descriptor};

fn init() {
    let dir = common::scratch("dataset_toml");
    common::image_tree(dir);
    common::write(
        &dir.join("manifest.csv"),
        b"file,label,patient_id\na.png,normal,p1\nb.png,pneumonia,p2\nc.png,pneumonia,p2\n",
    );
}

fuzz_target!(init: init(), |data: &[u8]| {
    let path = common::scratch("dataset_toml").join("dataset.toml");
    common::write(&path, data);
    if Descriptor::read(&path).is_ok() {
        let _ = Dataset::from_descriptor(&path);
    }
});
