//! Image loading: PNG (8/16 bit), JPEG and DICOM to a [`GrayImage`] min-max normalised per image
//! to `[0, 1]` (as the DISTL reference preprocessing) and resized.
//!
//! The format is recognised from the file content (DICOM: `DICM` at byte 128; otherwise the
//! image crate's magic-byte detection), not from the extension. Colour images are converted to
//! luminance with Pillow's `convert("L")` weights (0.299, 0.587, 0.114). Resizing uses Pillow's
//! antialiased bilinear filter (the torchvision `Resize` default).

use crate::gray::{Filter, GrayImage};
use anyhow::{bail, Context, Result};
use image::DynamicImage;
use std::io::Read;
use std::path::Path;

/// Loads `path` as a grayscale image, min-max normalised to `[0, 1]`, resized to `size x size`.
///
/// Errors name the file: missing, unreadable, corrupt or truncated images, unsupported DICOM.
pub fn load_gray(path: &Path, size: u32) -> Result<GrayImage> {
    let mut img = load_gray_native(path)?;
    if size > 0 && (img.width != size || img.height != size) {
        img = img.resize(size, size, Filter::Bilinear);
    }
    Ok(img)
}

/// Loads `path` at its own resolution, min-max normalised to `[0, 1]`.
///
/// A constant image (nothing to normalise: it becomes all zeros) and an image smaller than
/// [`SMALL_IMAGE_SIDE`] on a side load, with a warning, once per file and process.
pub fn load_gray_native(path: &Path) -> Result<GrayImage> {
    let (img, constant) = decode_gray_native(path)?;
    warn_if_degenerate(path, &img, constant);
    Ok(img)
}

/// Images with a side below this many pixels are loaded with a warning: a CXR that small
/// carries almost nothing a model can read, and is more likely a thumbnail or an icon.
pub const SMALL_IMAGE_SIDE: u32 = 32;

/// Warns once per file about a constant (`constant`, as found by the normalisation) or a
/// tiny image; no pass over the pixels of its own, since this runs on every load.
fn warn_if_degenerate(path: &Path, img: &GrayImage, constant: bool) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static WARNED: OnceLock<Mutex<HashSet<std::path::PathBuf>>> = OnceLock::new();
    let small = img.width < SMALL_IMAGE_SIDE || img.height < SMALL_IMAGE_SIDE;
    if !constant && !small {
        return;
    }
    let first = WARNED
        .get_or_init(Default::default)
        .lock()
        .map(|mut w| w.insert(path.to_path_buf()))
        .unwrap_or(true);
    if !first {
        return;
    }
    if constant {
        tracing::warn!(
            "image {} is constant (every pixel the same value): it carries no information and is scored as an all-black image",
            path.display()
        );
    }
    if small {
        tracing::warn!(
            "image {} is only {}x{} pixels (under {SMALL_IMAGE_SIDE} on a side): it is upsampled to the model's size",
            path.display(),
            img.width,
            img.height
        );
    }
}

/// The image at its own resolution, min-max normalised, and whether it was constant.
fn decode_gray_native(path: &Path) -> Result<(GrayImage, bool)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read image file {}", path.display()))?;
    let mut img = if is_dicom(&bytes) {
        crate::dicom::decode_dicom_bytes(&bytes, path)?
    } else {
        let dynimg = decode_bytes(&bytes)
            .with_context(|| format!("cannot decode image {}", path.display()))?;
        if let DynamicImage::ImageLuma8(b) = &dynimg {
            // Fast path (the common case): min-max normalisation through a 256-entry table.
            let raw = b.as_raw();
            let (lo, hi) = raw
                .iter()
                .fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let mut lut = [0f32; 256];
            if hi > lo {
                for (v, l) in lut
                    .iter_mut()
                    .enumerate()
                    .take(hi as usize + 1)
                    .skip(lo as usize)
                {
                    *l = (v as f32 - lo as f32) / (hi - lo) as f32;
                }
            }
            let data = raw.iter().map(|&v| lut[v as usize]).collect();
            if b.width() == 0 || b.height() == 0 {
                bail!("image {} is empty", path.display());
            }
            let img = GrayImage {
                width: b.width(),
                height: b.height(),
                data,
            };
            return Ok((img, hi == lo));
        }
        to_gray(&dynimg)
    };
    if img.width == 0 || img.height == 0 {
        bail!(
            "image {} is empty ({}x{})",
            path.display(),
            img.width,
            img.height
        );
    }
    let constant = !img.normalize_min_max();
    Ok((img, constant))
}

/// File extensions of images sevit reads (lower case); see [`is_image_file`].
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "dcm", "dicom"];

/// True for a file with an image extension ([`IMAGE_EXTENSIONS`], any case), and for any other
/// file that starts like a DICOM Part-10 file: PACS exports often name files `IM0001` or by
/// their instance UID, without a `.dcm` extension.
pub fn is_image_file(path: &Path) -> bool {
    let by_extension = path
        .extension()
        .map(|x| IMAGE_EXTENSIONS.contains(&x.to_string_lossy().to_ascii_lowercase().as_str()))
        .unwrap_or(false);
    by_extension || is_dicom_file(path)
}

/// True when `bytes` look like a DICOM Part-10 file (preamble + `DICM`).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// True when the file at `path` starts like a DICOM Part-10 file.
pub fn is_dicom_file(path: &Path) -> bool {
    let mut buf = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map(|_| is_dicom(&buf))
        .unwrap_or(false)
}

fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot detect the image format")?;
    match reader.format() {
        None => bail!("unknown image format (expected PNG, JPEG or DICOM)"),
        Some(image::ImageFormat::Jpeg) => check_jpeg_complete(bytes)?,
        Some(_) => {}
    }
    Ok(reader.decode()?)
}

/// A JPEG decoder fills what is missing from a truncated file with flat gray and succeeds;
/// a complete file has its end-of-image marker (`FF D9`) after the first scan. Inside
/// entropy-coded data a `FF` byte is always followed by `00` or a restart marker, so the
/// marker cannot occur there by chance.
fn check_jpeg_complete(bytes: &[u8]) -> Result<()> {
    let find = |from: usize, marker: u8| {
        bytes
            .get(from..)
            .and_then(|b| b.windows(2).position(|w| w == [0xFF, marker]))
            .map(|i| from + i)
    };
    let Some(sos) = find(2, 0xDA) else {
        bail!("truncated JPEG: no image data (start-of-scan marker missing)");
    };
    if find(sos + 2, 0xD9).is_none() {
        bail!(
            "truncated JPEG: the end-of-image marker is missing ({} bytes; the file was cut short)",
            bytes.len()
        );
    }
    Ok(())
}

/// Converts any decoded image to a single `f32` channel in the source's value scale divided by
/// its maximum code (so 8- and 16-bit inputs both land in `[0, 1]` before normalisation).
pub(crate) fn to_gray(img: &DynamicImage) -> GrayImage {
    let (w, h) = (img.width(), img.height());
    let data: Vec<f32> = match img {
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        DynamicImage::ImageLumaA8(b) => b
            .as_raw()
            .chunks_exact(2)
            .map(|p| p[0] as f32 / 255.0)
            .collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| v as f32 / 65535.0).collect(),
        DynamicImage::ImageLumaA16(b) => b
            .as_raw()
            .chunks_exact(2)
            .map(|p| p[0] as f32 / 65535.0)
            .collect(),
        other => {
            let rgb = other.to_rgb32f();
            rgb.as_raw()
                .chunks_exact(3)
                .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
                .collect()
        }
    };
    GrayImage {
        width: w,
        height: h,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    #[test]
    fn png8_is_min_max_normalised_and_resized() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let img: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_fn(8, 6, |x, y| Luma([50 + (x + y) as u8 * 10]));
        img.save(&p).unwrap();
        let g = load_gray(&p, 0).unwrap();
        assert_eq!((g.width, g.height), (8, 6));
        assert_eq!(g.min_max(), (0.0, 1.0));
        let r = load_gray(&p, 4).unwrap();
        assert_eq!((r.width, r.height), (4, 4));
    }

    #[test]
    fn png16_keeps_its_precision() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.png");
        // Values differ only below 8-bit resolution.
        let img: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 1, |x, _| Luma([1000 + x as u16]));
        img.save(&p).unwrap();
        let g = load_gray(&p, 0).unwrap();
        let expect = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0];
        for (a, b) in g.data.iter().zip(expect) {
            assert!((a - b).abs() < 1e-5, "{:?}", g.data);
        }
    }

    #[test]
    fn jpeg_rgb_is_converted_to_luminance() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jpg");
        let img: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::from_fn(16, 16, |x, _| {
            if x < 8 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        img.save(&p).unwrap();
        let g = load_gray(&p, 0).unwrap();
        assert!(g.get(1, 8) < 0.1 && g.get(14, 8) > 0.9);
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let err = load_gray(Path::new("/nonexistent/dir/x.png"), 8).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/dir/x.png"),
            "{err:#}"
        );
    }

    #[test]
    fn corrupt_and_truncated_images_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"this is not an image at all").unwrap();
        let err = load_gray(&junk, 8).unwrap_err();
        assert!(format!("{err:#}").contains("junk.png"), "{err:#}");

        let good = dir.path().join("good.png");
        let img: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_fn(64, 64, |x, y| Luma([(x * y) as u8]));
        img.save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let trunc = dir.path().join("trunc.png");
        std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_gray(&trunc, 8).unwrap_err();
        assert!(format!("{err:#}").contains("trunc.png"), "{err:#}");
    }

    #[test]
    fn truncated_jpegs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.jpg");
        let img: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_fn(64, 64, |x, y| Luma([(x * 3 + y * 5) as u8]));
        img.save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        assert!(load_gray(&good, 0).is_ok());
        // Trailing bytes after the end marker are common and harmless.
        let padded = dir.path().join("padded.jpg");
        std::fs::write(&padded, [bytes.as_slice(), &[0u8; 16]].concat()).unwrap();
        assert!(load_gray(&padded, 0).is_ok());
        for cut in [bytes.len() - 2, bytes.len() * 2 / 3, 300] {
            let trunc = dir.path().join(format!("trunc{cut}.jpg"));
            std::fs::write(&trunc, &bytes[..cut]).unwrap();
            let err = format!("{:#}", load_gray(&trunc, 0).unwrap_err());
            assert!(
                err.contains("truncated JPEG") && err.contains("trunc"),
                "{cut}: {err}"
            );
        }
    }
}
