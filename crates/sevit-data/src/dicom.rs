//! DICOM decoding (native, uncompressed pixel data) with `dicom-object`.
//!
//! Supported: transfer syntaxes Implicit VR Little Endian and Explicit VR Little Endian (big
//! endian, deflated and all compressed syntaxes are rejected); one sample per pixel
//! (MONOCHROME1 / MONOCHROME2), 8/16/32 bits allocated, signed or unsigned, first frame only.
//! Modality rescale (slope/intercept) is applied, then the first VOI window (DICOM linear
//! function) when present; MONOCHROME1 is inverted so that bright = dense on output. The caller
//! ([`crate::load::load_gray_native`]) min-max normalises the result. Compressed transfer
//! syntaxes are rejected with an error naming the syntax and the file.

use crate::gray::GrayImage;
use anyhow::{bail, Context, Result};
use dicom_dictionary_std::tags;
use dicom_object::{from_reader, DefaultDicomObject};
use std::path::Path;

/// Implicit VR Little Endian.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

fn int_attr(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
    name: &str,
    default: Option<i64>,
) -> Result<i64> {
    match obj.element_opt(tag)? {
        Some(e) => e
            .to_int::<i64>()
            .with_context(|| format!("attribute {name} is not an integer")),
        None => default.with_context(|| format!("required attribute {name} is missing")),
    }
}

fn float_attr(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Result<Option<f64>> {
    match obj.element_opt(tag)? {
        Some(e) => match e.to_multi_float64() {
            Ok(v) if !v.is_empty() => Ok(Some(v[0])),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

fn check_transfer_syntax(ts: &str) -> Result<()> {
    let ts = ts.trim_end_matches('\0').trim();
    if ts != IMPLICIT_VR_LE && ts != EXPLICIT_VR_LE {
        bail!(
            "unsupported DICOM transfer syntax {ts} (only uncompressed little-endian {IMPLICIT_VR_LE} and \
             {EXPLICIT_VR_LE} are supported; convert the file, e.g. `gdcmconv --raw` or `dcmdjpeg`)"
        );
    }
    Ok(())
}

/// Value representations whose explicit-VR length field is 2 bytes; every other VR, and an
/// unknown one (read as UN), has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2), as
/// `dicom-encoding` reads them.
const SHORT_VRS: &[&[u8; 2]] = &[
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];
const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;
const ITEM: [u8; 4] = [0xFE, 0xFF, 0x00, 0xE0];

/// Checks, before the DICOM parser sees the file, that every element's declared length fits
/// in the bytes that follow it. The parser allocates a declared length up front, so a
/// 156-byte file declaring a 4 GiB element would otherwise cost 4 GiB of memory before the
/// read fails. The framing follows `dicom-object`'s: the file meta group is as long as its
/// group length (0002,0000) says, whatever tags it holds; the data set follows in the meta
/// group's transfer syntax. Sequences and elements of undefined length are entered, so nested
/// elements are checked too. Returns the transfer syntax; the data set of a syntax the decoder
/// does not support is not scanned (the caller refuses it). A meta group the parser itself
/// refuses at once (no group length first) is left to it.
fn check_declared_lengths(bytes: &[u8]) -> Result<Option<String>> {
    let u16_at = |p: usize| u16::from_le_bytes([bytes[p], bytes[p + 1]]);
    let u32_at =
        |p: usize| u32::from_le_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]);
    if !crate::load::is_dicom(bytes) {
        bail!("not a DICOM Part-10 file (no `DICM` after the 128-byte preamble)");
    }
    // (group, element, value length, header length, is a sequence) of the element at `p`.
    let header = |p: usize, implicit: bool| -> Option<(u16, u16, u32, usize, bool)> {
        if bytes.len() - p < 8 {
            return None;
        }
        let (group, elem) = (u16_at(p), u16_at(p + 2));
        if group == 0xFFFE || implicit {
            let len = u32_at(p + 4);
            // Implicit VR names no SQ: a value that starts with an item is read as one.
            let seq = group != 0xFFFE
                && (len == UNDEFINED_LENGTH || bytes.get(p + 8..p + 12) == Some(&ITEM[..]));
            return Some((group, elem, len, 8, seq));
        }
        let vr = [bytes[p + 4], bytes[p + 5]];
        if SHORT_VRS.contains(&&vr) {
            Some((group, elem, u32::from(u16_at(p + 6)), 8, false))
        } else if bytes.len() - p < 12 {
            None
        } else {
            Some((group, elem, u32_at(p + 8), 12, &vr == b"SQ"))
        }
    };
    let too_long = |group: u16, elem: u16, len: usize, rest: usize| {
        anyhow::anyhow!(
            "DICOM element ({group:04X},{elem:04X}) declares {len} bytes but only {rest} follow in the file: it is truncated or corrupt"
        )
    };

    // File meta information: (0002,0000) UL of length 4, then `group length` bytes of
    // explicit-VR little-endian elements.
    let mut pos = 132;
    match header(pos, false) {
        Some((0x0002, 0x0000, 4, 8, false)) if bytes.len() >= pos + 12 => {}
        _ => return Ok(None),
    }
    let group_length = u32_at(pos + 8) as usize;
    pos += 12;
    let meta_start = pos;
    let mut transfer_syntax: Option<String> = None;
    while pos - meta_start < group_length {
        let Some((group, elem, len, hlen, _)) = header(pos, false) else {
            return Ok(transfer_syntax);
        };
        pos += hlen;
        let len = len as usize;
        if len > bytes.len() - pos {
            return Err(too_long(group, elem, len, bytes.len() - pos));
        }
        if (group, elem) == (0x0002, 0x0010) {
            transfer_syntax = Some(
                String::from_utf8_lossy(&bytes[pos..pos + len])
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
        }
        pos += len;
    }
    let implicit = match transfer_syntax.as_deref() {
        Some(IMPLICIT_VR_LE) => true,
        Some(EXPLICIT_VR_LE) => false,
        _ => return Ok(transfer_syntax),
    };

    // The data set.
    let mut in_encapsulated_pixels = false;
    while let Some((group, elem, len, hlen, seq)) = header(pos, implicit) {
        pos += hlen;
        if group == 0xFFFE {
            match elem {
                0xE0DD => in_encapsulated_pixels = false,
                // A pixel fragment: skipped. A sequence item: entered.
                0xE000 if in_encapsulated_pixels && len != UNDEFINED_LENGTH => {}
                _ => continue,
            }
        } else if len == UNDEFINED_LENGTH {
            in_encapsulated_pixels = (group, elem) == (0x7FE0, 0x0010);
            continue;
        } else if seq {
            if len as usize > bytes.len() - pos {
                return Err(too_long(group, elem, len as usize, bytes.len() - pos));
            }
            continue;
        }
        let len = len as usize;
        if len > bytes.len() - pos {
            return Err(too_long(group, elem, len, bytes.len() - pos));
        }
        pos += len;
    }
    Ok(transfer_syntax)
}

/// The data set walked with `dicom-parser`'s own reader, token by token: each declared length
/// is checked against the file's size before the reader reads (and allocates) the value, so
/// this check frames the file exactly as `open_file` will. It catches what the byte-level
/// [`check_declared_lengths`] frames differently (found by the fuzz target: a data set whose
/// parsed framing reached a 4 GB length that the byte scan never saw). Reader errors are left
/// to the real parse to report.
fn check_lengths_as_parsed(bytes: &[u8]) -> Result<()> {
    use dicom_parser::dataset::{DataSetReader, DataToken};
    use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
    let mut source = std::io::Cursor::new(&bytes[128..]);
    let Ok(meta) = dicom_object::FileMetaTable::from_reader(&mut source) else {
        return Ok(());
    };
    let Some(ts) = TransferSyntaxRegistry.get(meta.transfer_syntax()) else {
        return Ok(());
    };
    let Ok(reader) = DataSetReader::new_with_ts(source, ts) else {
        return Ok(());
    };
    for token in reader {
        let Ok(token) = token else {
            return Ok(());
        };
        let (what, len) = match &token {
            DataToken::ElementHeader(h) => (format!("element {}", h.tag), h.len),
            DataToken::SequenceStart { tag, len } => (format!("sequence {tag}"), *len),
            DataToken::ItemStart { len } => ("an item".to_string(), *len),
            _ => continue,
        };
        if let Some(n) = len.get() {
            if n as usize > bytes.len() {
                bail!(
                    "DICOM {what} declares {n} bytes, more than the whole file ({} bytes): it is truncated or corrupt",
                    bytes.len()
                );
            }
        }
    }
    Ok(())
}

/// Decodes the first frame of a DICOM file to a [`GrayImage`] (rescaled and windowed values;
/// not yet min-max normalised).
pub fn decode_dicom(path: &Path) -> Result<GrayImage> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read DICOM file {}", path.display()))?;
    decode_dicom_bytes(&bytes, path)
}

/// As [`decode_dicom`], from the bytes of a Part-10 file already read from `origin` (which
/// errors name).
pub fn decode_dicom_bytes(bytes: &[u8], origin: &Path) -> Result<GrayImage> {
    decode_inner(bytes).with_context(|| format!("cannot decode DICOM file {}", origin.display()))
}

fn decode_inner(bytes: &[u8]) -> Result<GrayImage> {
    // Refused before the parser reads (and allocates for) the data set.
    if let Some(ts) = check_declared_lengths(bytes)? {
        check_transfer_syntax(&ts)?;
    }
    check_lengths_as_parsed(bytes)?;
    // The file meta group starts after the 128-byte preamble (checked above).
    let obj = from_reader(&bytes[128..]).context("cannot parse DICOM")?;
    check_transfer_syntax(obj.meta().transfer_syntax())?;
    let rows = int_attr(&obj, tags::ROWS, "Rows", None)?;
    let cols = int_attr(&obj, tags::COLUMNS, "Columns", None)?;
    let spp = int_attr(&obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", Some(1))?;
    let bits_alloc = int_attr(&obj, tags::BITS_ALLOCATED, "BitsAllocated", None)?;
    let bits_stored = int_attr(&obj, tags::BITS_STORED, "BitsStored", Some(bits_alloc))?;
    let signed = int_attr(
        &obj,
        tags::PIXEL_REPRESENTATION,
        "PixelRepresentation",
        Some(0),
    )? == 1;
    let photometric = match obj.element_opt(tags::PHOTOMETRIC_INTERPRETATION)? {
        Some(e) => e.to_str()?.trim().to_string(),
        None => "MONOCHROME2".to_string(),
    };
    if spp != 1 || !(photometric == "MONOCHROME1" || photometric == "MONOCHROME2") {
        bail!("unsupported DICOM photometric interpretation {photometric} with {spp} samples per pixel (need MONOCHROME1/2, 1 sample)");
    }
    if rows <= 0 || cols <= 0 {
        bail!("invalid DICOM image size {rows}x{cols}");
    }
    if !(bits_alloc == 8 || bits_alloc == 16 || bits_alloc == 32)
        || bits_stored < 1
        || bits_stored > bits_alloc
    {
        bail!("unsupported DICOM bit depth: BitsAllocated {bits_alloc}, BitsStored {bits_stored}");
    }
    let (w, h) = (cols as usize, rows as usize);
    let n = w * h;
    let pixel = obj
        .element(tags::PIXEL_DATA)
        .context("no PixelData element")?;
    let bytes = pixel
        .to_bytes()
        .context("PixelData is not native (uncompressed) data")?;
    let bpp = bits_alloc as usize / 8;
    if bytes.len() < n * bpp {
        bail!(
            "PixelData holds {} bytes, expected at least {} for {}x{} at {} bits (truncated file?)",
            bytes.len(),
            n * bpp,
            w,
            h,
            bits_alloc
        );
    }
    let mask: u64 = if bits_stored >= 64 {
        u64::MAX
    } else {
        (1u64 << bits_stored) - 1
    };
    let raw = |i: usize| -> f64 {
        let b = &bytes[i * bpp..(i + 1) * bpp];
        let u: u64 = match bpp {
            1 => b[0] as u64,
            2 => u16::from_le_bytes([b[0], b[1]]) as u64,
            _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
        } & mask;
        if signed && (u >> (bits_stored - 1)) & 1 == 1 {
            (u as i64 - (1i64 << bits_stored)) as f64
        } else {
            u as f64
        }
    };
    let slope = float_attr(&obj, tags::RESCALE_SLOPE)?.unwrap_or(1.0);
    if slope == 0.0 || !slope.is_finite() {
        bail!(
            "Rescale Slope is {slope}, which maps every pixel to the same value; the file's modality LUT is broken"
        );
    }
    let intercept = float_attr(&obj, tags::RESCALE_INTERCEPT)?.unwrap_or(0.0);
    let center = float_attr(&obj, tags::WINDOW_CENTER)?;
    let width = float_attr(&obj, tags::WINDOW_WIDTH)?;
    let window = match (center, width) {
        (Some(c), Some(w)) if w >= 1.0 => Some((c, w)),
        _ => None,
    };
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        let v = raw(i) * slope + intercept;
        let v = match window {
            Some((c, w)) => voi_linear(v, c, w),
            None => v,
        };
        data.push(v as f32);
    }
    let mut img = GrayImage {
        width: w as u32,
        height: h as u32,
        data,
    };
    if photometric == "MONOCHROME1" {
        // Invert within the value range so that the later min-max maps it to 1 - x.
        let (lo, hi) = img.min_max();
        img.data.iter_mut().for_each(|v| *v = lo + hi - *v);
    }
    Ok(img)
}

/// DICOM PS3.3 C.11.2.1.2.1 linear VOI function, output in `[0, 1]`.
pub fn voi_linear(x: f64, center: f64, width: f64) -> f64 {
    let lo = center - 0.5 - (width - 1.0) / 2.0;
    let hi = center - 0.5 + (width - 1.0) / 2.0;
    if x <= lo {
        0.0
    } else if x > hi || width <= 1.0 {
        1.0
    } else {
        (x - (center - 0.5)) / (width - 1.0) + 0.5
    }
}

/// Test helpers: writes small DICOM files with `dicom-object` (also used by other tests).
#[doc(hidden)]
pub mod testutil {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{meta::FileMetaTableBuilder, InMemDicomObject};

    /// Options of a generated test DICOM.
    pub struct TestDicom<'a> {
        /// Transfer syntax UID.
        pub ts: &'a str,
        /// MONOCHROME1 or MONOCHROME2.
        pub photometric: &'a str,
        /// Raw 16-bit unsigned pixel values, row-major.
        pub pixels: &'a [u16],
        /// Image width.
        pub cols: u16,
        /// Image height.
        pub rows: u16,
        /// (slope, intercept).
        pub rescale: Option<(f64, f64)>,
        /// (center, width).
        pub window: Option<(f64, f64)>,
    }

    /// Writes the file described by `t` to `path`.
    pub fn write_test_dicom(path: &Path, t: &TestDicom) -> Result<()> {
        write_test_dicom_with(path, t, &[])
    }

    /// As [`write_test_dicom`], with extra text attributes (e.g. patient name and id).
    pub fn write_test_dicom_with(
        path: &Path,
        t: &TestDicom,
        extra: &[(dicom_core::Tag, VR, &str)],
    ) -> Result<()> {
        let mut elems = vec![
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.1.1"),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.826.0.1.3680043.2.1143.1"),
            ),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from(t.photometric),
            ),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(t.rows)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(t.cols)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
            DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
            DataElement::new(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(0u16),
            ),
        ];
        if let Some((s, i)) = t.rescale {
            elems.push(DataElement::new(
                tags::RESCALE_SLOPE,
                VR::DS,
                PrimitiveValue::from(format!("{s}")),
            ));
            elems.push(DataElement::new(
                tags::RESCALE_INTERCEPT,
                VR::DS,
                PrimitiveValue::from(format!("{i}")),
            ));
        }
        if let Some((c, w)) = t.window {
            elems.push(DataElement::new(
                tags::WINDOW_CENTER,
                VR::DS,
                PrimitiveValue::from(format!("{c}")),
            ));
            elems.push(DataElement::new(
                tags::WINDOW_WIDTH,
                VR::DS,
                PrimitiveValue::from(format!("{w}")),
            ));
        }
        for &(tag, vr, text) in extra {
            elems.push(DataElement::new(tag, vr, PrimitiveValue::from(text)));
        }
        elems.push(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(t.pixels.iter().copied().collect()),
        ));
        let obj = InMemDicomObject::from_element_iter(elems);
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(t.ts)
                    .implementation_class_uid("1.2.826.0.1.3680043.2.1143"),
            )
            .context("building DICOM meta")?;
        file.write_to_file(path).context("writing DICOM")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
