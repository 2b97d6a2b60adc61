//! Small shared helpers: atomic file writes.

use anyhow::{Context, Result};
use std::path::Path;

pub(crate) use sevit_fs::write_atomic;

/// Encodes an 8-bit grayscale image as PNG and writes it atomically.
pub(crate) fn write_png_atomic(path: &Path, img: &image::GrayImage) -> Result<()> {
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .with_context(|| format!("encoding PNG {}", path.display()))?;
    write_atomic(path, &buf)
}
