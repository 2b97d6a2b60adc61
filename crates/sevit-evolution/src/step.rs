//! One evolution step: when enough new images have arrived, train a DISTL candidate from the
//! model in service on the images so far, score it on the locked validation set, let the gate
//! decide, and record the decision.
//!
//! Which images a candidate trains on (cumulative, as DISTL's curriculum): the images its
//! parent (the model in service) trained on, plus every *new* image, one no recorded version
//! has trained on. Images that only rejected or rolled-back versions trained on are *held*:
//! they are left out unless the operator asks for them (`include_held`), so a batch that made
//! a candidate worse does not come back by itself.
//!
//! Resumption: the candidate's folder gets its plan (`plan.json`: parent, image list, config)
//! before training starts and its training checkpoints every epoch. A step that stopped or
//! crashed is resumed by the next `evolve` when the plan is the same; a stale plan's folder is
//! removed. The registry records the candidate only once it is trained, scored and decided.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sevit_data::Sample;
use sevit_distill::{stage_name, DistillInputs, RunLayout, RunOptions, TrainConfig};

use crate::fault::crash_point;
use crate::locked::read_locked;
use crate::registry::{ModelVersion, Registry, Status, TrainingSet};
use crate::site::{read_json, write_atomic, write_json, Site};
use crate::store::{ImageStore, Inbox};

/// Stage name of a candidate's DISTL training inside its folder.
pub const STAGE: &str = "distl";
/// File name of a version's training list (image hashes, one per line).
pub const TRAINED_ON_FILE: &str = "trained_on.txt";
/// File name of a candidate's plan.
pub const PLAN_FILE: &str = "plan.json";

/// Options of [`evolve_step`].
#[derive(Debug, Clone, Default)]
pub struct EvolveRequest {
    /// New images needed (default: the site's `min_new_images`).
    pub min_new: Option<usize>,
    /// Train even with fewer new images.
    pub force: bool,
    /// Also train on held images (those only rejected or rolled-back versions used).
    pub include_held: bool,
    /// `section.key=value` overrides of the site's training config (recorded with the version).
    pub overrides: Vec<String>,
    /// Stop options (the step always resumes its own unfinished training).
    pub run: RunOptions,
}

/// What [`evolve_step`] did.
#[derive(Debug, Clone)]
pub enum StepOutcome {
    /// Too few new images: nothing trained.
    Waiting {
        /// New images so far.
        new_images: usize,
        /// Needed.
        needed: usize,
    },
    /// The candidate's training stopped before its last epoch (`evolve` again resumes it).
    Stopped {
        /// Candidate id.
        version: String,
        /// Epochs done.
        epochs_done: usize,
        /// Epochs of the step.
        epochs: usize,
    },
    /// The candidate was trained, scored and decided.
    Decided {
        /// The recorded version (status promoted or rejected).
        version: Box<ModelVersion>,
        /// The version in service now.
        served: String,
    },
}

/// How the inbox's images stand against the registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageStates {
    /// Images the version in service trained on (arrival order).
    pub trained: Vec<String>,
    /// Images no version trained on.
    pub new: Vec<String>,
    /// Images only rejected or rolled-back versions trained on.
    pub held: Vec<String>,
}

/// Reads a version's training list (empty for the initial model).
pub fn training_list(site: &Site, v: &ModelVersion) -> anyhow::Result<Vec<String>> {
    let Some(list) = &v.trained_on.list else {
        return Ok(Vec::new());
    };
    let p = site.resolve(list);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Sorts the inbox's images into trained / new / held for the version in service.
pub fn image_states(site: &Site, reg: &Registry, inbox: &Inbox) -> anyhow::Result<ImageStates> {
    let mut seen = BTreeSet::new();
    for v in &reg.versions {
        seen.extend(training_list(site, v)?);
    }
    let trained: BTreeSet<String> = match reg.current() {
        Some(c) => training_list(site, c)?.into_iter().collect(),
        None => BTreeSet::new(),
    };
    let mut out = ImageStates::default();
    for img in &inbox.images {
        let h = &img.hash;
        if trained.contains(h) {
            out.trained.push(h.clone());
        } else if seen.contains(h) {
            out.held.push(h.clone());
        } else {
            out.new.push(h.clone());
        }
    }
    Ok(out)
}

/// A candidate's plan; an unfinished candidate is resumed only under the same plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plan {
    id: String,
    parent: String,
    images: usize,
    new_images: usize,
    images_sha256: String,
    config_sha256: String,
}

/// Runs one evolution step on `site` (see the module docs).
pub fn evolve_step(site: &Site, req: &EvolveRequest) -> anyhow::Result<StepOutcome> {
    let _lock = site.lock()?;
    let mut reg = Registry::load(site)?;
    crate::audit::sync(site, &reg)?;
    let current = reg
        .current()
        .with_context(|| {
            format!(
                "site {} has no model in service: register the initial model with `sevit models \
                 init --store {}` first",
                site.root().display(),
                site.root().display()
            )
        })?
        .clone();
    let settings = site.settings()?;
    let cfg = TrainConfig::load(&site.config_toml(), &req.overrides)?;
    let store = ImageStore::new(site);
    let inbox = store.inbox()?;
    let states = image_states(site, &reg, &inbox)?;
    let needed = req.min_new.unwrap_or(settings.min_new_images);
    if !req.force && states.new.len() < needed {
        tracing::info!(
            new = states.new.len(),
            needed,
            held = states.held.len(),
            "waiting for new images"
        );
        return Ok(StepOutcome::Waiting {
            new_images: states.new.len(),
            needed,
        });
    }
    let mut chosen: BTreeSet<&String> = states.trained.iter().chain(&states.new).collect();
    if req.include_held {
        chosen.extend(&states.held);
    }
    // arrival order, for a readable list and a deterministic loader
    let images: Vec<String> = inbox
        .images
        .iter()
        .map(|i| &i.hash)
        .filter(|h| chosen.contains(h))
        .cloned()
        .collect();
    if images.is_empty() {
        bail!(
            "no inbox image to train on: add images with `sevit inbox add --store {} DIR`",
            site.root().display()
        );
    }
    // the gate's cases, checked before the (long) training: unchanged, and not trained on
    let validation = read_locked(&site.validation_csv(), true)?;
    let locked: BTreeSet<&str> = validation.iter().map(|r| r.pixel_sha256.as_str()).collect();
    if let Some(h) = images.iter().find(|h| locked.contains(h.as_str())) {
        bail!(
            "inbox image {h} is an image of the locked validation set; it must not be trained on"
        );
    }
    let list_text: String = images.iter().map(|h| format!("{h}\n")).collect();
    let config_text = cfg.to_toml()?;
    let n_new = states.new.len(); // every new image is in the training set

    let id = claim_candidate_dir(
        site,
        &reg,
        &current.id,
        &images,
        &list_text,
        &config_text,
        n_new,
    )?;
    let dir = site.model_dir(&id);
    let layout = RunLayout::new(&dir);

    let unlabeled: Vec<Sample> = images
        .iter()
        .map(|h| Sample {
            path: store.path(h),
            label: "unlabeled".into(),
            target: 0.0,
            patient_id: h.clone(),
        })
        .collect();
    let labeled: Vec<Sample> = read_locked(&site.labeled_csv(), true)?
        .iter()
        .map(|r| r.sample())
        .collect();
    let parent_ckpt = site.resolve(&current.checkpoint);
    let from_initial = current.parent.is_none();
    tracing::info!(
        candidate = %id,
        parent = %current.id,
        images = images.len(),
        new = n_new,
        labeled = labeled.len(),
        "evolution step"
    );
    let mut opts = req.run.clone();
    opts.resume = true;
    let mut init = parent_ckpt.clone();
    if from_initial && cfg.distl.head_warmup_epochs > 0 {
        let warm =
            sevit_distill::warm_up_dino_head(&layout, &cfg, &unlabeled, &parent_ckpt, &opts)?;
        if !warm.complete {
            return Ok(StepOutcome::Stopped {
                version: id,
                epochs_done: warm.epochs_done,
                epochs: warm.epochs,
            });
        }
        init = layout.checkpoint(stage_name::HEAD_WARMUP);
    }
    let outcome = sevit_distill::distill_with(
        &layout,
        &cfg,
        &DistillInputs {
            stage: STAGE.into(),
            unlabeled,
            labeled: labeled.clone(),
            init,
            init_both_from_student: from_initial,
            audit_folds: None,
        },
        &opts,
    )?;
    if !outcome.complete {
        return Ok(StepOutcome::Stopped {
            version: id,
            epochs_done: outcome.epochs_done,
            epochs: outcome.epochs,
        });
    }
    crash_point("after-training");

    let ckpt = layout.checkpoint(STAGE);
    let weights = cfg.eval.weights;
    let cand_scores = crate::score::score(&ckpt, weights, &cfg, &validation)?;
    let gate_cfg = &settings.gate;
    let metrics = crate::score::record(
        site,
        &dir,
        &validation,
        &cand_scores,
        gate_cfg.level,
        gate_cfg.threshold,
    )?;
    let cur_scores =
        crate::score::read(&site.resolve(&current.validation.predictions), &validation)?;
    let labels = crate::score::labels(&validation);
    let gate = crate::gate::decide(&labels, &cur_scores, &cand_scores, gate_cfg)?;
    tracing::info!(candidate = %id, promote = gate.promote, "{}", gate.reason);
    let version = ModelVersion {
        id: id.clone(),
        parent: Some(current.id.clone()),
        created_at: crate::now_rfc3339(),
        status: Status::Candidate,
        checkpoint: site.relative(&ckpt),
        checkpoint_sha256: crate::file_sha256(&ckpt)?,
        weights,
        config: site.relative(&dir.join("config.toml")),
        config_sha256: crate::file_sha256(&dir.join("config.toml"))?,
        trained_on: TrainingSet {
            images: images.len(),
            new_images: n_new,
            labeled: labeled.len(),
            list: Some(site.relative(&dir.join(TRAINED_ON_FILE))),
            list_sha256: Some(crate::sha256_hex(list_text.as_bytes())),
        },
        validation: metrics,
        gate: Some(gate.clone()),
    };
    crash_point("before-registry");
    reg.record_decided(version, gate.reason.clone())?;
    reg.commit(site)?;
    let recorded = reg.require(&id)?.clone();
    Ok(StepOutcome::Decided {
        version: Box::new(recorded),
        served: reg.current_id().unwrap_or_default().to_string(),
    })
}

/// The folder of the next candidate: an unfinished one with the same plan is resumed; stale
/// unfinished folders (not in the registry, another plan) are removed. Writes the plan.
fn claim_candidate_dir(
    site: &Site,
    reg: &Registry,
    parent: &str,
    images: &[String],
    list_text: &str,
    config_text: &str,
    n_new: usize,
) -> anyhow::Result<String> {
    let mut plan = Plan {
        id: String::new(),
        parent: parent.to_string(),
        images: images.len(),
        new_images: n_new,
        images_sha256: crate::sha256_hex(list_text.as_bytes()),
        config_sha256: crate::sha256_hex(config_text.as_bytes()),
    };
    let mut orphans: BTreeMap<u64, String> = BTreeMap::new();
    if site.models_dir().is_dir() {
        for e in std::fs::read_dir(site.models_dir())? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(n) = ModelVersion::number(&name) {
                if reg.get(&name).is_none() {
                    orphans.insert(n, name);
                }
            }
        }
    }
    for (_, name) in orphans {
        let dir = site.model_dir(&name);
        let old: Option<Plan> = read_json(&dir.join(PLAN_FILE)).ok();
        if old.as_ref().is_some_and(|o| {
            Plan {
                id: o.id.clone(),
                ..plan.clone()
            } == *o
        }) {
            tracing::info!(candidate = %name, "resuming the unfinished candidate");
            return Ok(name);
        }
        tracing::warn!(folder = %dir.display(), "removing an unfinished candidate of another plan");
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    plan.id = reg.next_id();
    let dir = site.model_dir(&plan.id);
    write_atomic(&dir.join(TRAINED_ON_FILE), list_text.as_bytes())?;
    write_atomic(&dir.join("config.toml"), config_text.as_bytes())?;
    write_json(&dir.join(PLAN_FILE), &plan)?;
    Ok(plan.id)
}
