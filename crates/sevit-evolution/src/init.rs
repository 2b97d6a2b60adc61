//! Registering the initial model of a site: the labeled set, the locked validation set, the
//! training config and the model that is served first (`v1`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use sevit_data::Sample;
use sevit_distill::{TrainConfig, Weights};

use crate::locked::write_locked;
use crate::registry::{ModelVersion, Registry, Status, TrainingSet};
use crate::site::{write_atomic, Settings, Site};

/// What [`init_site`] needs.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The initial model's checkpoint (copied into the site).
    pub checkpoint: PathBuf,
    /// Which of its networks is served (and starts the first step).
    pub weights: Weights,
    /// Training config of the evolution steps.
    pub config: TrainConfig,
    /// The labeled images of the correction passes.
    pub labeled: Vec<Sample>,
    /// The locked validation set of the gate.
    pub validation: Vec<Sample>,
    /// Settings (`evolution.toml`).
    pub settings: Settings,
}

/// Creates the site's files and registers the initial model as `v1`, in service. Refuses a
/// site that already has a registry. Returns the registered version.
pub fn init_site(site: &Site, req: &InitRequest) -> anyhow::Result<ModelVersion> {
    let _lock = site.lock()?;
    if site.registry_json().exists() {
        bail!(
            "site {} already has a model registry; `sevit models list --store {}` shows it",
            site.root().display(),
            site.root().display()
        );
    }
    req.settings.validate()?;
    anyhow::ensure!(
        req.checkpoint.is_file(),
        "checkpoint {} does not exist",
        req.checkpoint.display()
    );
    anyhow::ensure!(!req.labeled.is_empty(), "the labeled set is empty");
    let n_pos = req.validation.iter().filter(|s| s.target > 0.5).count();
    let n_neg = req.validation.len() - n_pos;
    if n_pos < 2 || n_neg < 2 {
        bail!(
            "the locked validation set needs at least 2 positive and 2 negative images (it has \
             {n_pos} and {n_neg}); `sevit split --val-fraction F` makes one, or give \
             --validation"
        );
    }
    site.write_settings(&req.settings)?;
    write_atomic(&site.config_toml(), req.config.to_toml()?.as_bytes())?;
    write_locked(&site.labeled_csv(), &req.labeled)?;
    let validation = write_locked(&site.validation_csv(), &req.validation)?;
    // a locked image already in the inbox would be trained on
    let inbox = crate::store::ImageStore::new(site).inbox()?;
    let stored: std::collections::BTreeSet<&str> =
        inbox.images.iter().map(|i| i.hash.as_str()).collect();
    if let Some(r) = validation
        .iter()
        .find(|r| stored.contains(r.pixel_sha256.as_str()))
    {
        bail!(
            "validation image {} is already in the inbox of {}: the locked validation set must \
             be images that training never sees",
            r.file.display(),
            site.root().display()
        );
    }

    let id = "v1".to_string();
    let dir = site.model_dir(&id);
    std::fs::create_dir_all(&dir)?;
    let ckpt = dir.join(sevit_distill::layout::CHECKPOINT_FILE);
    let bytes = std::fs::read(&req.checkpoint)
        .with_context(|| format!("reading {}", req.checkpoint.display()))?;
    write_atomic(&ckpt, &bytes)?;
    let config = dir.join("config.toml");
    write_atomic(&config, req.config.to_toml()?.as_bytes())?;

    let gate = &req.settings.gate;
    let scores = crate::score::score(&ckpt, req.weights, &req.config, &validation)?;
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        bail!(
            "the initial model gives a non-finite probability ({}) for {}: it cannot be served",
            scores[i],
            validation[i].file.display()
        );
    }
    let metrics =
        crate::score::record(site, &dir, &validation, &scores, gate.level, gate.threshold)?;
    let version = ModelVersion {
        id,
        parent: None,
        created_at: crate::now_rfc3339(),
        status: Status::Promoted,
        checkpoint: site.relative(&ckpt),
        checkpoint_sha256: crate::file_sha256(&ckpt)?,
        weights: req.weights,
        config: site.relative(&config),
        config_sha256: crate::file_sha256(&config)?,
        trained_on: TrainingSet {
            images: 0,
            new_images: 0,
            labeled: req.labeled.len(),
            list: None,
            list_sha256: None,
        },
        validation: metrics,
        gate: None,
    };
    let mut reg = Registry::default();
    reg.record_initial(version.clone())?;
    reg.commit(site)?;
    tracing::info!(
        site = %site.root().display(),
        auc = format!("{:.4}", version.validation.auc),
        validation = validation.len(),
        labeled = req.labeled.len(),
        "initial model v1 in service"
    );
    Ok(version)
}
