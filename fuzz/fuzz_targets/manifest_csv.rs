//! Manifest CSV -> Dataset (strict, then tolerant) -> Split -> split.csv -> Split.
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use sevit_data::dataset::LoadOptions;
use sevit_data::{Dataset, Split, SplitConfig};

fuzz_target!(
    init: common::image_tree(common::scratch("manifest_csv")),
    |data: &[u8]| {
        let dir = common::scratch("manifest_csv");
        let csv = dir.join("manifest.csv");
        common::write(&csv, data);
        let _ = Dataset::from_manifest(&csv, "pneumonia", None);
        let tolerant = LoadOptions { skip_bad: true, allow_outside_root: true, ..Default::default() };
        let Ok(ds) = Dataset::from_manifest_opts(&csv, "pneumonia", None, tolerant) else {
            return;
        };
        let Ok(split) = Split::create(&ds, &SplitConfig::default()) else {
            return;
        };
        let out = dir.join("split.csv");
        if split.write_csv(&out).is_ok() {
            let _ = Split::read_csv(&out);
        }
    }
);
