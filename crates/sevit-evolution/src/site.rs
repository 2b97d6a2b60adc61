//! The site directory: where the inbox, the locked sets, the registry and the models live,
//! its settings (`evolution.toml`) and its lock.
//!
//! ```text
//! SITE/
//!   evolution.toml     settings: new images needed per step, the gate
//!   config.toml        training config of the evolution steps
//!   labeled.csv        labeled set of the correction passes
//!   validation.csv     the locked validation set of the gate (file and pixel hashes)
//!   images/ab/<hash>.png   inbox images, named by their pixel hash
//!   inbox.json         what arrived when, duplicates, quarantine
//!   registry.json      model versions, the one in service, events
//!   audit.jsonl        append-only audit log of the events
//!   models/v1/ ...     one folder per model version
//!   .lock              held by every command that changes the site
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::gate::GateConfig;
pub(crate) use sevit_model::checkpoint::write_atomic;

/// Paths inside a site directory.
#[derive(Debug, Clone)]
pub struct Site {
    root: PathBuf,
}

impl Site {
    /// The site at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The site directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `SITE/evolution.toml`.
    pub fn settings_toml(&self) -> PathBuf {
        self.root.join("evolution.toml")
    }
    /// `SITE/config.toml`: the training config of the evolution steps.
    pub fn config_toml(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `SITE/labeled.csv`.
    pub fn labeled_csv(&self) -> PathBuf {
        self.root.join("labeled.csv")
    }
    /// `SITE/validation.csv`.
    pub fn validation_csv(&self) -> PathBuf {
        self.root.join("validation.csv")
    }
    /// `SITE/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// The stored file of the image with pixel hash `hash`.
    pub fn image_path(&self, hash: &str) -> PathBuf {
        self.images_dir()
            .join(&hash[..2])
            .join(format!("{hash}.png"))
    }
    /// `SITE/inbox.json`.
    pub fn inbox_json(&self) -> PathBuf {
        self.root.join("inbox.json")
    }
    /// `SITE/registry.json`.
    pub fn registry_json(&self) -> PathBuf {
        self.root.join("registry.json")
    }
    /// `SITE/audit.jsonl`.
    pub fn audit_jsonl(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }
    /// `SITE/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }
    /// `SITE/models/<id>`.
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.models_dir().join(id)
    }
    /// A path inside the site, relative to its root (as recorded in the registry).
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
    /// The absolute form of a path recorded relative to the site.
    pub fn resolve(&self, recorded: &str) -> PathBuf {
        self.root.join(recorded)
    }

    /// Takes the site's lock (creating the directory), refusing when another process holds
    /// it. The lock is released when the returned guard is dropped or the process ends.
    pub fn lock(&self) -> anyhow::Result<SiteLock> {
        sevit_distill::layout::lock_dir(&self.root, "site")
    }

    /// Reads `evolution.toml` (the defaults when absent).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let p = self.settings_toml();
        if !p.exists() {
            return Ok(Settings::default());
        }
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let s: Settings = toml::from_str(&text)
            .with_context(|| format!("invalid settings in {}", p.display()))?;
        s.validate()
            .with_context(|| format!("invalid settings in {}", p.display()))?;
        Ok(s)
    }

    /// Writes `evolution.toml` atomically.
    pub fn write_settings(&self, s: &Settings) -> anyhow::Result<()> {
        s.validate()?;
        let text = format!(
            "# sevit evolution settings (docs/evolution.md)\n{}",
            toml::to_string_pretty(s)?
        );
        write_atomic(&self.settings_toml(), text.as_bytes())
    }
}

/// The held lock of a site (see [`Site::lock`]).
pub type SiteLock = sevit_distill::layout::DirLock;

/// Settings of a site (`evolution.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// An evolution step runs once at least this many images have arrived that no model
    /// version has trained on.
    pub min_new_images: usize,
    /// The promotion gate.
    pub gate: GateConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_new_images: 100,
            gate: GateConfig::default(),
        }
    }
}

impl Settings {
    /// Checks value ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.min_new_images == 0 {
            bail!("min_new_images must be at least 1");
        }
        self.gate.validate().context("[gate]")
    }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes a value as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::new(dir.path().join("s"));
        let held = site.lock().unwrap();
        let err = site.lock().unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(held);
        site.lock().unwrap();
    }

    #[test]
    fn settings_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::new(dir.path());
        assert_eq!(site.settings().unwrap(), Settings::default());
        let mut s = Settings {
            min_new_images: 7,
            ..Default::default()
        };
        s.gate.delta = 0.02;
        site.write_settings(&s).unwrap();
        assert_eq!(site.settings().unwrap(), s);
        std::fs::write(site.settings_toml(), "min_new_images = 0\n").unwrap();
        assert!(site.settings().is_err());
        std::fs::write(site.settings_toml(), "min_new = 3\n").unwrap();
        let err = format!("{:#}", site.settings().unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }
}
