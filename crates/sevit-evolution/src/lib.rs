//! `sevit-evolution`: self-evolution that a hospital can trust.
//!
//! DISTL improves a model as unlabeled images accumulate. This crate turns that into a loop
//! that never silently ships a worse model. Everything lives in one *site* directory
//! ([`Site`]), as plain files:
//!
//! * [`store`]: the image inbox, a content-addressed store of new unlabeled images. Images are
//!   identified by the hash of their pixels, so exact duplicates count once; unreadable files
//!   are quarantined with the reason; only pixels and hashes are kept (never DICOM patient
//!   attributes).
//! * [`locked`]: the labeled set of the correction passes and the locked validation set the
//!   gate scores on (file hashes recorded, verified before every use, never trained on).
//! * [`registry`]: every model version with its parent, config, training images (by hash),
//!   validation metrics and status; which version is in service; every decision as an event.
//! * [`audit`]: the append-only JSONL audit log mirroring the registry's events.
//! * [`gate`]: the promotion rule, a paired DeLong non-inferiority test (plus an optional
//!   sensitivity check), as a pure function of scores.
//! * [`init`]: registers the initial model of a site.
//! * [`step`]: one evolution step: plan, train a DISTL candidate from the model in service on
//!   the images so far, score it, gate it, record the decision.
//!
//! Consistency: the registry is written atomically (temporary file, fsync, rename) and only
//! after the files it points to are complete; every mutating operation holds the site's lock;
//! the audit log is reconciled with the registry's events on every open. A crash at any
//! point leaves a registry that describes exactly the models that were finished, and the next
//! `evolve` resumes an unfinished candidate (see `docs/evolution.md`).

pub mod audit;
pub mod fault;
pub mod gate;
pub mod init;
pub mod locked;
pub mod registry;
pub mod score;
pub mod site;
pub mod step;
pub mod store;

pub use gate::{GateConfig, GateOutcome};
pub use init::{init_site, InitRequest};
pub use registry::{ModelVersion, Registry, Status};
pub use site::{Settings, Site, SiteLock};
pub use step::{evolve_step, EvolveRequest, StepOutcome};
pub use store::{AddReport, ImageStore};

/// Current time as RFC 3339 (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// SHA-256 of bytes, as lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// SHA-256 of a file's bytes, as hex.
pub(crate) fn file_sha256(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", h.finalize()))
}
