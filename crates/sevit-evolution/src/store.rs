//! The image inbox: a content-addressed store of new unlabeled images.
//!
//! Each readable image (PNG, JPEG or DICOM, recognised by content, with or without an
//! extension) is decoded once, min-max normalised to `[0, 1]` as training does, quantised to
//! 16 bits and stored as a 16-bit grayscale PNG under the SHA-256 of its pixels
//! (`images/ab/<hash>.png`). The same pixels arriving again, under any name, format or
//! folder, are a duplicate and counted once. A file that cannot be read is quarantined: its
//! path, byte hash and the reason are recorded, and adding it again does not record it twice.
//! Only pixels and hashes are kept: no DICOM attribute (patient name, id, birth date,
//! accession number, ...) is copied into the store, and none is logged.
//!
//! `inbox.json` records every image with its arrival, every quarantined file and every
//! arrival (what was scanned, added, found duplicate). It is rewritten atomically after the
//! image files are in place, so a crash leaves at most image files that the next `add`
//! records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::site::{read_json, write_atomic, write_json, Site};

/// One stored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredImage {
    /// SHA-256 of the stored pixels (see [`pixel_hash`]).
    pub hash: String,
    /// Arrival that brought it.
    pub arrival: u64,
    /// When it arrived (RFC 3339, UTC).
    pub arrived_at: String,
    /// Width of the image as stored (its own resolution).
    pub width: u32,
    /// Height.
    pub height: u32,
    /// The format it arrived in: `png`, `jpeg` or `dicom`.
    pub format: String,
}

/// A file that could not be stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The file as it was given.
    pub source: String,
    /// SHA-256 of its bytes, so the same file is recorded once (`None`: the file could not be
    /// read at all; then its path identifies it).
    pub file_sha256: Option<String>,
    /// Why it was not stored.
    pub reason: String,
    /// Arrival that brought it.
    pub arrival: u64,
    /// When.
    pub arrived_at: String,
}

impl Quarantined {
    /// What identifies a quarantined file: its byte hash, else its path.
    fn key(&self) -> String {
        self.file_sha256
            .clone()
            .unwrap_or_else(|| self.source.clone())
    }
}

/// One `inbox add`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AddReport {
    /// Arrival number (1, 2, ...).
    pub arrival: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The folders and files given.
    pub sources: Vec<String>,
    /// Files looked at.
    pub scanned: usize,
    /// New images stored.
    pub added: usize,
    /// Images whose pixels were already in the store (or twice in this arrival).
    pub duplicates: usize,
    /// Files quarantined by this arrival.
    pub quarantined: usize,
    /// Unreadable files that were already in quarantine.
    pub already_quarantined: usize,
    /// Hidden files and folders (name starting with `.`) not looked at.
    pub hidden_skipped: usize,
    /// Symbolic links to folders, not followed (they can form cycles).
    pub linked_folders_skipped: usize,
}

/// `inbox.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inbox {
    /// Stored images, in arrival order.
    pub images: Vec<StoredImage>,
    /// Quarantined files.
    pub quarantine: Vec<Quarantined>,
    /// Every arrival.
    pub arrivals: Vec<AddReport>,
}

/// The image store of a site.
#[derive(Debug, Clone)]
pub struct ImageStore {
    site: Site,
}

/// A readable file's decoded content.
struct Decoded {
    hash: String,
    png: Vec<u8>,
    width: u32,
    height: u32,
    format: &'static str,
}

impl ImageStore {
    /// The store of `site`.
    pub fn new(site: &Site) -> Self {
        Self { site: site.clone() }
    }

    /// Reads `inbox.json` (empty when absent).
    pub fn inbox(&self) -> anyhow::Result<Inbox> {
        let p = self.site.inbox_json();
        if !p.exists() {
            return Ok(Inbox::default());
        }
        read_json(&p)
    }

    /// The stored file of image `hash`.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.site.image_path(hash)
    }

    /// Ingests the images under `sources` (folders, walked recursively, or files), holding
    /// the site's lock. Images of the site's locked validation set are quarantined.
    pub fn add(&self, sources: &[PathBuf]) -> anyhow::Result<AddReport> {
        let _lock = self.site.lock()?;
        let excluded = crate::locked::excluded_from_inbox(&self.site.validation_csv())?;
        let mut inbox = self.inbox()?;
        let mut report = AddReport {
            arrival: inbox.arrivals.iter().map(|a| a.arrival).max().unwrap_or(0) + 1,
            at: crate::now_rfc3339(),
            sources: sources.iter().map(|p| p.display().to_string()).collect(),
            ..Default::default()
        };
        let mut files = Vec::new();
        for src in sources {
            let meta = std::fs::metadata(src)
                .with_context(|| format!("{}: no such file or folder", src.display()))?;
            if meta.is_dir() {
                walk(src, &mut files, &mut report)
                    .with_context(|| format!("listing {}", src.display()))?;
            } else {
                files.push(src.clone());
            }
        }
        let mut known: BTreeSet<String> = inbox.images.iter().map(|i| i.hash.clone()).collect();
        let mut known_bad: BTreeSet<String> =
            inbox.quarantine.iter().map(Quarantined::key).collect();
        for (i, file) in files.iter().enumerate() {
            report.scanned += 1;
            let bytes = std::fs::read(file);
            let decoded = match &bytes {
                Ok(b) => decode(file, b),
                Err(e) => Err(anyhow::anyhow!("cannot read the file: {e}")),
            };
            let rejected = match decoded {
                Ok(d) => match excluded.get(&d.hash) {
                    Some(why) => Some(why.clone()),
                    None => {
                        if known.insert(d.hash.clone()) {
                            let dest = self.path(&d.hash);
                            if !dest.exists() {
                                write_atomic(&dest, &d.png)?;
                            }
                            inbox.images.push(StoredImage {
                                hash: d.hash,
                                arrival: report.arrival,
                                arrived_at: report.at.clone(),
                                width: d.width,
                                height: d.height,
                                format: d.format.to_string(),
                            });
                            report.added += 1;
                        } else {
                            report.duplicates += 1;
                        }
                        None
                    }
                },
                Err(e) => Some(format!("{e:#}")),
            };
            if let Some(reason) = rejected {
                let q = Quarantined {
                    source: file.display().to_string(),
                    file_sha256: bytes.ok().map(|b| crate::sha256_hex(&b)),
                    reason,
                    arrival: report.arrival,
                    arrived_at: report.at.clone(),
                };
                if known_bad.insert(q.key()) {
                    tracing::warn!(file = %file.display(), "quarantined: {}", q.reason);
                    inbox.quarantine.push(q);
                    report.quarantined += 1;
                } else {
                    report.already_quarantined += 1;
                }
            }
            if (i + 1) % 500 == 0 {
                tracing::info!(scanned = i + 1, of = files.len(), "inbox");
            }
        }
        inbox.arrivals.push(report.clone());
        write_json(&self.site.inbox_json(), &inbox)?;
        tracing::info!(
            arrival = report.arrival,
            scanned = report.scanned,
            added = report.added,
            duplicates = report.duplicates,
            quarantined = report.quarantined,
            "inbox add"
        );
        Ok(report)
    }
}

/// Regular files under `dir`, sorted, recursively; hidden entries and symbolic links to
/// folders are counted and skipped.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, report: &mut AddReport) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            report.hidden_skipped += 1;
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&path, out, report)?;
        } else if ft.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => report.linked_folders_skipped += 1,
                _ => out.push(path), // a linked file (or a dangling link: quarantined as unreadable)
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// SHA-256 of quantised pixels: a tag, width and height (little-endian u32), then the 16-bit
/// values (little-endian), row by row.
pub fn pixel_hash(width: u32, height: u32, pixels: &[u16]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"sevit-pixels-v1");
    h.update(width.to_le_bytes());
    h.update(height.to_le_bytes());
    for v in pixels {
        h.update(v.to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

/// The 16-bit pixels of an image file as stored (min-max normalised, quantised), with its size.
pub fn quantised_pixels(path: &Path) -> anyhow::Result<(u32, u32, Vec<u16>)> {
    let img = sevit_data::load::load_gray_native(path)?;
    let px = img
        .data
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    Ok((img.width, img.height, px))
}

/// The pixel hash of an image file (as [`ImageStore::add`] would store it).
pub fn file_pixel_hash(path: &Path) -> anyhow::Result<String> {
    let (w, h, px) = quantised_pixels(path)?;
    Ok(pixel_hash(w, h, &px))
}

fn decode(path: &Path, bytes: &[u8]) -> anyhow::Result<Decoded> {
    anyhow::ensure!(!bytes.is_empty(), "empty file");
    let format = if sevit_data::load::is_dicom(bytes) {
        "dicom"
    } else {
        match image::guess_format(bytes) {
            Ok(image::ImageFormat::Png) => "png",
            Ok(image::ImageFormat::Jpeg) => "jpeg",
            _ => anyhow::bail!("not a PNG, JPEG or DICOM file"),
        }
    };
    let (width, height, px) = quantised_pixels(path)?;
    let (lo, hi) = px
        .iter()
        .fold((u16::MAX, 0u16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    anyhow::ensure!(
        hi > lo,
        "the image is constant ({width}x{height}, every pixel the same)"
    );
    let hash = pixel_hash(width, height, &px);
    let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(width, height, px)
        .context("pixel buffer")?;
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma16(buf)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the stored PNG")?;
    Ok(Decoded {
        hash,
        png,
        width,
        height,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevit_data::dicom::testutil::{write_test_dicom_with, TestDicom};

    /// `n` 8-bit gray PNGs `a0.png`.. in `dir`, distinct after min-max normalisation (a
    /// brightness shift of the same pattern would be the same stored image).
    fn pngs(dir: &Path, n: usize) -> Vec<PathBuf> {
        std::fs::create_dir_all(dir).unwrap();
        (0..n)
            .map(|k| {
                let img = image::GrayImage::from_fn(12, 10, |x, y| {
                    image::Luma([((x * (7 + 5 * k as u32) + y * 13) % 251) as u8])
                });
                let p = dir.join(format!("a{k}.png"));
                img.save(&p).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn duplicates_and_quarantine_are_counted_and_a_second_add_adds_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("incoming");
        let files = pngs(&src, 3);
        // the same file under another name, in a nested folder
        std::fs::create_dir_all(src.join("nested/deeper")).unwrap();
        std::fs::copy(&files[0], src.join("nested/deeper/copy.png")).unwrap();
        // the same pixels as a 16-bit PNG (a different file, the same image)
        let g8 = image::open(&files[1]).unwrap().to_luma8();
        let g16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(12, 10, |x, y| {
            image::Luma([g8.get_pixel(x, y)[0] as u16 * 257])
        });
        image::DynamicImage::ImageLuma16(g16)
            .save(src.join("nested/sixteen.png"))
            .unwrap();
        // unreadable: a truncated PNG, a text file, an empty file, a constant image
        let bytes = std::fs::read(&files[2]).unwrap();
        std::fs::write(src.join("nested/truncated.png"), &bytes[..bytes.len() / 3]).unwrap();
        std::fs::write(src.join("notes.txt"), "not an image").unwrap();
        std::fs::write(src.join("empty.png"), b"").unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([90]))
            .save(src.join("flat.png"))
            .unwrap();
        std::fs::write(src.join(".DS_Store"), b"junk").unwrap();
        // a link to a parent folder (a cycle) is not followed
        std::os::unix::fs::symlink("..", src.join("nested/up")).unwrap();

        let site = Site::new(tmp.path().join("site"));
        let store = ImageStore::new(&site);
        let r = store.add(std::slice::from_ref(&src)).unwrap();
        assert_eq!(r.scanned, 9, "{r:?}");
        assert_eq!(r.added, 3, "{r:?}");
        assert_eq!(r.duplicates, 2, "{r:?}");
        assert_eq!(r.quarantined, 4, "{r:?}");
        assert_eq!(
            (r.hidden_skipped, r.linked_folders_skipped),
            (1, 1),
            "{r:?}"
        );
        let inbox = store.inbox().unwrap();
        assert_eq!(inbox.images.len(), 3);
        for img in &inbox.images {
            assert!(store.path(&img.hash).is_file());
            assert_eq!(
                file_pixel_hash(&store.path(&img.hash)).unwrap(),
                img.hash,
                "stored pixels hash to their name"
            );
        }
        let reasons: Vec<&str> = inbox.quarantine.iter().map(|q| q.reason.as_str()).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("not a PNG, JPEG or DICOM")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("empty file")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("constant")),
            "{reasons:?}"
        );
        assert!(inbox
            .quarantine
            .iter()
            .any(|q| q.source.ends_with("truncated.png")));

        let again = store.add(&[src.clone(), files[0].clone()]).unwrap();
        assert_eq!(again.added, 0, "{again:?}");
        assert_eq!(again.duplicates, 6, "{again:?}");
        assert_eq!(
            (again.quarantined, again.already_quarantined),
            (0, 4),
            "{again:?}"
        );
        let after = store.inbox().unwrap();
        assert_eq!(after.images, inbox.images);
        assert_eq!(after.quarantine, inbox.quarantine);
        assert_eq!(after.arrivals.len(), 2);
    }

    #[test]
    fn excluded_images_are_quarantined_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let files = pngs(&tmp.path().join("in"), 2);
        let site = Site::new(tmp.path().join("site"));
        let locked = sevit_data::Sample {
            path: files[1].clone(),
            label: "normal".into(),
            target: 0.0,
            patient_id: "p".into(),
        };
        crate::locked::write_locked(&site.validation_csv(), &[locked]).unwrap();
        let store = ImageStore::new(&site);
        let r = store.add(&files).unwrap();
        assert_eq!((r.added, r.quarantined), (1, 1));
        assert!(store.inbox().unwrap().quarantine[0]
            .reason
            .contains("locked validation"));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_quarantined_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("in");
        pngs(&src, 1);
        std::os::unix::fs::symlink(src.join("gone.png"), src.join("dangling.png")).unwrap();
        let store = ImageStore::new(&Site::new(tmp.path().join("site")));
        let r = store.add(std::slice::from_ref(&src)).unwrap();
        assert_eq!((r.added, r.quarantined), (1, 1), "{r:?}");
        let q = &store.inbox().unwrap().quarantine[0];
        assert!(
            q.reason.contains("cannot read") && q.file_sha256.is_none(),
            "{q:?}"
        );
        let again = store.add(&[src]).unwrap();
        assert_eq!((again.quarantined, again.already_quarantined), (0, 1));
    }

    /// A log writer that keeps what was logged.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_dicom_patient_attribute_reaches_the_store_or_the_logs() {
        use dicom_core::VR;
        use dicom_dictionary_std::tags;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("pacs");
        std::fs::create_dir_all(&src).unwrap();
        let phi = [
            (tags::PATIENT_NAME, VR::PN, "DOE^JANE"),
            (tags::PATIENT_ID, VR::LO, "MRN99812"),
            (tags::PATIENT_BIRTH_DATE, VR::DA, "19470312"),
            (tags::ACCESSION_NUMBER, VR::SH, "ACC55501"),
        ];
        let pixels: Vec<u16> = (0..64u16).map(|v| v * 37 % 1000).collect();
        let t = TestDicom {
            ts: sevit_data::dicom::EXPLICIT_VR_LE,
            photometric: "MONOCHROME2",
            pixels: &pixels,
            cols: 8,
            rows: 8,
            rescale: None,
            window: None,
        };
        // PACS exports usually have no extension
        write_test_dicom_with(&src.join("IM000001"), &t, &phi).unwrap();
        // and an unreadable one carrying the same attributes is quarantined
        let bad = TestDicom {
            ts: "1.2.840.10008.1.2.4.50",
            ..t
        };
        let _ = write_test_dicom_with(&src.join("IM000002"), &bad, &phi);
        let raw = std::fs::read(src.join("IM000001")).unwrap();
        assert!(
            raw.windows(8).any(|w| w == b"DOE^JANE"),
            "the test file carries the name"
        );

        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let site = Site::new(tmp.path().join("site"));
        let r = tracing::subscriber::with_default(subscriber, || {
            ImageStore::new(&site)
                .add(std::slice::from_ref(&src))
                .unwrap()
        });
        assert_eq!(r.added, 1, "{r:?}");
        let inbox = ImageStore::new(&site).inbox().unwrap();
        assert_eq!(inbox.images[0].format, "dicom");

        let mut haystack = log.0.lock().unwrap().clone();
        let mut stack = vec![site.root().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    haystack.extend(std::fs::read(&p).unwrap());
                }
            }
        }
        assert!(!haystack.is_empty());
        for (_, _, value) in phi {
            assert!(
                !haystack.windows(value.len()).any(|w| w == value.as_bytes()),
                "{value} leaked into the store or the logs"
            );
        }
    }
}
