//! Tests of [`super`] (`dicom.rs`).

use super::testutil::*;
use super::*;
use crate::load::load_gray;

fn write(dir: &Path, name: &str, t: &TestDicom) -> std::path::PathBuf {
    let p = dir.join(name);
    write_test_dicom(&p, t).unwrap();
    p
}

const PIX: [u16; 6] = [0, 100, 200, 300, 400, 1000];

/// A 3 x 2 image of [`PIX`] in explicit VR little endian, no rescale, no window.
fn test_dicom(photometric: &'static str) -> TestDicom<'static> {
    TestDicom {
        ts: EXPLICIT_VR_LE,
        photometric,
        pixels: &PIX,
        cols: 3,
        rows: 2,
        rescale: None,
        window: None,
    }
}

/// Preamble, `DICM`, a meta group of `extra_meta` then the transfer syntax `ts`, then `rest`.
fn meta_with_syntax(ts: &[u8], extra_meta: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b.extend(b"DICM");
    let group_len = (extra_meta.len() + 8 + ts.len()) as u8;
    b.extend([
        0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00, group_len, 0, 0, 0,
    ]);
    b.extend(extra_meta);
    b.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0x00]);
    b.extend(ts);
    b.extend(rest);
    b
}

#[test]
fn monochrome2_min_max_and_rescale() {
    let dir = tempfile::tempdir().unwrap();
    for ts in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
        let p = write(
            dir.path(),
            "a.dcm",
            &TestDicom {
                ts,
                rescale: Some((2.0, -1024.0)),
                ..test_dicom("MONOCHROME2")
            },
        );
        let g = load_gray(&p, 0).unwrap();
        assert_eq!((g.width, g.height), (3, 2));
        let expect: Vec<f32> = PIX.iter().map(|&v| v as f32 / 1000.0).collect();
        for (a, b) in g.data.iter().zip(&expect) {
            assert!((a - b).abs() < 1e-6, "{ts}: {:?}", g.data);
        }
    }
}

#[test]
fn declared_lengths_beyond_the_file_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    // Found by the dicom_loader fuzz target: a meta element of VR UN declaring 4 GiB made
    // the parser allocate 4 GiB before failing.
    let mut b = vec![0u8; 128];
    b.extend(b"DICM");
    b.extend([
        0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00, 0x0c, 0x00, 0x00, 0x00,
    ]);
    b.extend([
        0x02, 0x00, 0x02, 0x00, b'U', b'N', 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0,
    ]);
    let p = dir.path().join("bomb.dcm");
    std::fs::write(&p, &b).unwrap();
    let e = format!("{:#}", load_gray(&p, 0).unwrap_err());
    assert!(
        e.contains("declares 4026531840 bytes") && e.contains("bomb.dcm"),
        "{e}"
    );
    // A compressed syntax is refused before its data set is parsed (found by the fuzz
    // target: a JPEG-syntax file whose bogus element lengths cost seconds and gigabytes).
    let b = meta_with_syntax(b"1.2.840.10008.1.2.4.50", &[], &[0xa4; 9]);
    std::fs::write(&p, &b).unwrap();
    let e = format!("{:#}", load_gray(&p, 0).unwrap_err());
    assert!(
        e.contains("unsupported DICOM transfer syntax 1.2.840.10008.1.2.4.50"),
        "{e}"
    );
    // The fuzz target's next find: an off-group tag inside the meta group (which the
    // parser accepts) hid the implicit-VR data set and its 4 GiB OB element from an
    // earlier version of this check.
    let b = meta_with_syntax(
        b"1.2.840.10008.1.2\0",
        &[0x02, 0xFA, 0x01, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1],
        &[0x09, 0x00, 0x10, 0x10, 0, 0, 0, 0xF0, 1, 2, 3],
    );
    std::fs::write(&p, &b).unwrap();
    let e = format!("{:#}", load_gray(&p, 0).unwrap_err());
    assert!(e.contains("(0009,1010) declares 4026531840 bytes"), "{e}");
    // A valid file passes the check, in both supported syntaxes.
    for ts in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
        let ok = write(
            dir.path(),
            "ok.dcm",
            &TestDicom {
                ts,
                ..test_dicom("MONOCHROME2")
            },
        );
        check_declared_lengths(&std::fs::read(&ok).unwrap()).unwrap();
        // Its pixel data cut short: refused by the same check.
        let bytes = std::fs::read(&ok).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = format!("{:#}", load_gray(&p, 0).unwrap_err());
        assert!(e.contains("(7FE0,0010) declares 12 bytes"), "{ts}: {e}");
    }
}

#[test]
fn lengths_are_checked_in_the_parsers_own_framing() {
    // Found by the dicom_loader fuzz target: 590 bytes on which dicom-object's reader
    // reached a 4.2 GB value length that the byte-level scan frames differently.
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-dicom-parsed-length-4g.dcm");
    let e = format!("{:#}", load_gray(&p, 0).unwrap_err());
    assert!(e.contains("more than the whole file (590 bytes)"), "{e}");
}

#[test]
fn a_zero_rescale_slope_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "slope0.dcm",
        &TestDicom {
            rescale: Some((0.0, 5.0)),
            ..test_dicom("MONOCHROME2")
        },
    );
    let err = format!("{:#}", load_gray(&p, 0).unwrap_err());
    assert!(
        err.contains("Rescale Slope is 0") && err.contains("slope0.dcm"),
        "{err}"
    );
}

#[test]
fn monochrome1_is_inverted() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m1.dcm",
        &TestDicom {
            ..test_dicom("MONOCHROME1")
        },
    );
    let g = load_gray(&p, 0).unwrap();
    assert_eq!(g.data[0], 1.0);
    assert_eq!(g.data[5], 0.0);
    assert!((g.data[1] - 0.9).abs() < 1e-6);
}

#[test]
fn voi_window_clips_before_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    // Window 100..300 (center 200.5, width 201 -> lo 100, hi 300): 0,100 -> 0; 300,400,1000 -> 1.
    let p = write(
        dir.path(),
        "w.dcm",
        &TestDicom {
            window: Some((200.5, 201.0)),
            ..test_dicom("MONOCHROME2")
        },
    );
    let g = load_gray(&p, 0).unwrap();
    assert_eq!(g.data[0], 0.0);
    assert_eq!(g.data[1], 0.0);
    assert!((g.data[2] - 0.5).abs() < 0.01, "{:?}", g.data);
    assert_eq!(&g.data[3..], &[1.0, 1.0, 1.0]);
}

#[test]
fn unsupported_transfer_syntax_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // JPEG Baseline declared: we never try to decode it.
    let p = dir.path().join("jpeg.dcm");
    let r = write_test_dicom(
        &p,
        &TestDicom {
            ts: "1.2.840.10008.1.2.4.50",
            ..test_dicom("MONOCHROME2")
        },
    );
    if r.is_err() {
        // Fall back to patching the meta group of an explicit-VR file.
        let ok = write(
            dir.path(),
            "ok.dcm",
            &TestDicom {
                ..test_dicom("MONOCHROME2")
            },
        );
        let mut bytes = std::fs::read(ok).unwrap();
        let needle = b"1.2.840.10008.1.2.1\0";
        let pos = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[pos..pos + needle.len()].copy_from_slice(b"1.2.840.10008.1.2.2\0");
        std::fs::write(&p, bytes).unwrap();
    }
    let err = load_gray(&p, 0).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("unsupported DICOM transfer syntax") && msg.contains("jpeg.dcm"),
        "{msg}"
    );
}

#[test]
fn voi_linear_matches_the_standard() {
    assert_eq!(voi_linear(0.0, 50.0, 11.0), 0.0);
    assert_eq!(voi_linear(100.0, 50.0, 11.0), 1.0);
    assert!((voi_linear(49.5, 50.0, 11.0) - 0.5).abs() < 1e-12);
}
