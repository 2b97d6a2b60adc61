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
    if let Ok(d) = Descriptor::read(&path) {
        // The parser is under test, not the machine's file tree: a root outside the scratch
        // folder (`root = "/"` with the folder layout walks the whole disk, as asked) is
        // only parsed.
        let root = std::path::Path::new(&d.root);
        let inside = !root.is_absolute()
            && root
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
        if inside {
            let _ = Dataset::from_descriptor(&path);
        }
    }
});
