//! Shared by the fuzz targets (`mod common;`): a per-process scratch folder and a tiny PNG.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `$TMPDIR/sevit-fuzz-<target>-<pid>`, created once; inputs are written to fixed paths in it.
pub fn scratch(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("sevit-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("creating the fuzz scratch folder");
        d
    })
}

/// Writes `data` to `path` (a harness failure, not a finding, if that fails).
pub fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("writing the fuzz input");
}

/// A valid 2x2 8-bit grayscale PNG.
pub const PNG_2X2: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0x57,
    0xdd, 0x52, 0xf8, 0x00, 0x00, 0x00, 0x0e, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x60,
    0x70, 0x60, 0x68, 0xf8, 0x0f, 0x00, 0x03, 0x05, 0x01, 0xc0, 0x53, 0x5b, 0x15, 0x9f, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Fills `dir` with images that manifests and descriptors can name: `a.png`, `b.png`,
/// `c.png` and a folder tree `normal/n1.png`, `pneumonia/p1.png`, `pneumonia/p2.png`.
pub fn image_tree(dir: &Path) {
    for rel in ["a.png", "b.png", "c.png", "normal/n1.png", "pneumonia/p1.png", "pneumonia/p2.png"] {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).expect("creating image folders");
        write(&p, PNG_2X2);
    }
}
