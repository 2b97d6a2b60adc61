//! The model registry (`registry.json`): every model version of a site, which one is in
//! service, and every decision as a numbered event.
//!
//! A version is recorded only once its files are complete (checkpoint, training list,
//! validation predictions), in one atomic write together with the gate's decision, so a
//! crash never leaves a version that points to missing or half-written files. The service
//! stack makes rollback exact: promotion pushes a version, rollback pops back to the one
//! served before.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sevit_distill::Weights;

use crate::gate::GateOutcome;
use crate::site::{read_json, write_json, Site};

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Trained and scored, not yet decided. Never stored: a step records a candidate
    /// together with its decision.
    Candidate,
    /// Passed the gate (or is the initial model, or was promoted by hand).
    Promoted,
    /// Failed the gate: kept for inspection, never served.
    Rejected,
    /// Was promoted, then taken out of service by a rollback.
    RolledBack,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Candidate => "candidate",
            Status::Promoted => "promoted",
            Status::Rejected => "rejected",
            Status::RolledBack => "rolled_back",
        })
    }
}

/// What a version was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSet {
    /// Inbox images (unlabeled), cumulative over the version's lineage.
    pub images: usize,
    /// Of those, images no earlier version had trained on.
    pub new_images: usize,
    /// Labeled images of the correction passes (the initial model: its training set).
    pub labeled: usize,
    /// The list of image hashes, one per line (site-relative path; absent for the initial
    /// model, which trained on no inbox image).
    pub list: Option<String>,
    /// SHA-256 of that list.
    pub list_sha256: Option<String>,
}

/// A version's numbers on the locked validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationMetrics {
    /// Cases.
    pub n: usize,
    /// Positive cases.
    pub n_positive: usize,
    /// ROC AUC.
    pub auc: f64,
    /// DeLong interval (at the gate's level).
    pub auc_lower: f64,
    /// Upper bound.
    pub auc_upper: f64,
    /// Deployed threshold the next two are taken at.
    pub threshold: f64,
    /// Sensitivity at the threshold.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub sensitivity: f64,
    /// Specificity at the threshold.
    #[serde(with = "sevit_metrics::serde_nan::nan_as_null")]
    pub specificity: f64,
    /// The per-case probabilities (site-relative CSV `file,label,probability`).
    pub predictions: String,
}

/// One model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// `v1`, `v2`, ...
    pub id: String,
    /// The version it was trained from (`None`: the initial model).
    pub parent: Option<String>,
    /// When it was recorded.
    pub created_at: String,
    /// Where it stands.
    pub status: Status,
    /// Its checkpoint (site-relative).
    pub checkpoint: String,
    /// SHA-256 of the checkpoint file.
    pub checkpoint_sha256: String,
    /// Which network of the checkpoint is served.
    pub weights: Weights,
    /// The training config it was trained with (site-relative TOML).
    pub config: String,
    /// SHA-256 of that config file.
    pub config_sha256: String,
    /// What it trained on.
    pub trained_on: TrainingSet,
    /// Its numbers on the locked validation set.
    pub validation: ValidationMetrics,
    /// The gate's decision (`None` for the initial model).
    pub gate: Option<GateOutcome>,
}

impl ModelVersion {
    /// The number of a version id (`v12` → 12).
    pub fn number(id: &str) -> Option<u64> {
        id.strip_prefix('v')?.parse().ok()
    }
}

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The initial model was registered and put in service.
    Initial,
    /// The gate promoted a candidate.
    GatePromoted,
    /// The gate rejected a candidate.
    GateRejected,
    /// A version was put in service by hand.
    ManualPromote,
    /// The version in service was taken out; the previous one is served again.
    Rollback,
}

/// One decision, as recorded in the registry and mirrored to `audit.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number (1, 2, ...).
    pub seq: u64,
    /// When.
    pub at: String,
    /// What.
    pub action: Action,
    /// The version decided on.
    pub version: String,
    /// The version in service before.
    pub served_before: Option<String>,
    /// The version in service after.
    pub served_after: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The gate's numbers, for gate decisions.
    pub gate: Option<GateOutcome>,
}

/// `registry.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Every version, oldest first.
    pub versions: Vec<ModelVersion>,
    /// Versions put in service, oldest first; the last one is in service.
    pub service: Vec<String>,
    /// Every decision, oldest first.
    pub events: Vec<Event>,
}

impl Registry {
    /// Reads the site's registry (empty when absent) and checks it.
    pub fn load(site: &Site) -> anyhow::Result<Registry> {
        let p = site.registry_json();
        if !p.exists() {
            return Ok(Registry::default());
        }
        let r: Registry = read_json(&p)?;
        r.check(site)
            .with_context(|| format!("inconsistent registry {}", p.display()))?;
        Ok(r)
    }

    /// The registry of a site that must have one (an error saying how to create it
    /// otherwise).
    pub fn load_existing(site: &Site) -> anyhow::Result<Registry> {
        anyhow::ensure!(
            site.registry_json().is_file(),
            "{} has no model registry (create one with `sevit models init --store {} --run RUN`)",
            site.root().display(),
            site.root().display()
        );
        Self::load(site)
    }

    /// Writes it atomically (after checking it), then brings the audit log up to date. The
    /// caller holds the site's lock.
    pub fn commit(&self, site: &Site) -> anyhow::Result<()> {
        self.check(site)?;
        write_json(&site.registry_json(), self)?;
        crate::fault::crash_point("after-registry");
        crate::audit::sync(site, self)?;
        Ok(())
    }

    /// Serves version `id` by hand (see [`Registry::promote`]): lock, change, commit.
    pub fn promote_on(
        site: &Site,
        id: &str,
        override_gate: bool,
        reason: &str,
    ) -> anyhow::Result<()> {
        let _lock = site.lock()?;
        let mut reg = Self::load_existing(site)?;
        reg.promote(id, override_gate, reason)?;
        reg.commit(site)
    }

    /// Rolls back the version in service of a site (see [`Registry::rollback`]): lock,
    /// change, commit. Returns (the version taken out, the version served now).
    pub fn rollback_on(site: &Site, reason: &str) -> anyhow::Result<(String, String)> {
        let _lock = site.lock()?;
        let mut reg = Self::load_existing(site)?;
        let out = reg.current_id().unwrap_or_default().to_string();
        let now = reg.rollback(reason)?;
        reg.commit(site)?;
        Ok((out, now))
    }

    /// The id of the version in service.
    pub fn current_id(&self) -> Option<&str> {
        self.service.last().map(String::as_str)
    }

    /// The version in service.
    pub fn current(&self) -> Option<&ModelVersion> {
        self.current_id().and_then(|id| self.get(id))
    }

    /// A version by id.
    pub fn get(&self, id: &str) -> Option<&ModelVersion> {
        self.versions.iter().find(|v| v.id == id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut ModelVersion> {
        self.versions.iter_mut().find(|v| v.id == id)
    }

    /// Version `id`, or the one in service when `None`.
    pub fn select(&self, id: Option<&str>) -> anyhow::Result<&ModelVersion> {
        match id {
            Some(id) => self.require(id),
            None => self.current().context("no model version is in service"),
        }
    }

    /// A version by id, or an error listing the ids.
    pub fn require(&self, id: &str) -> anyhow::Result<&ModelVersion> {
        self.get(id).with_context(|| {
            format!(
                "no model version {id} (versions: {})",
                self.versions
                    .iter()
                    .map(|v| v.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The next version id.
    pub fn next_id(&self) -> String {
        let n = self
            .versions
            .iter()
            .filter_map(|v| ModelVersion::number(&v.id))
            .max();
        format!("v{}", n.unwrap_or(0) + 1)
    }

    /// Appends an event (numbered here).
    pub fn push_event(&mut self, mut e: Event) -> &Event {
        e.seq = self.events.last().map_or(0, |l| l.seq) + 1;
        self.events.push(e);
        self.events.last().expect("just pushed")
    }

    /// Records a new version with the gate's decision: promoted versions go into service.
    pub fn record_decided(&mut self, mut v: ModelVersion, reason: String) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.get(&v.id).is_none(),
            "version {} is already recorded",
            v.id
        );
        let before = self.current_id().map(str::to_string);
        let promoted = v.gate.as_ref().is_some_and(|g| g.promote);
        v.status = if promoted {
            Status::Promoted
        } else {
            Status::Rejected
        };
        let gate = v.gate.clone();
        let id = v.id.clone();
        self.versions.push(v);
        if promoted {
            self.service.push(id.clone());
        }
        let after = self.current_id().map(str::to_string);
        self.push_event(Event {
            seq: 0,
            at: crate::now_rfc3339(),
            action: if promoted {
                Action::GatePromoted
            } else {
                Action::GateRejected
            },
            version: id,
            served_before: before,
            served_after: after,
            reason,
            gate,
        });
        Ok(())
    }

    /// Records the initial model and puts it in service.
    pub fn record_initial(&mut self, mut v: ModelVersion) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.versions.is_empty(),
            "the site already has model versions"
        );
        v.status = Status::Promoted;
        let id = v.id.clone();
        self.versions.push(v);
        self.service.push(id.clone());
        self.push_event(Event {
            seq: 0,
            at: crate::now_rfc3339(),
            action: Action::Initial,
            version: id.clone(),
            served_before: None,
            served_after: Some(id),
            reason: "initial model".into(),
            gate: None,
        });
        Ok(())
    }

    /// Puts version `id` in service by hand. A rejected version needs `override_gate`.
    pub fn promote(&mut self, id: &str, override_gate: bool, reason: &str) -> anyhow::Result<()> {
        let v = self.require(id)?;
        if self.current_id() == Some(id) {
            bail!("{id} is already in service");
        }
        if v.status == Status::Rejected && !override_gate {
            bail!(
                "{id} was rejected by the gate ({}); promoting it anyway needs --override-gate \
                 and a --reason",
                v.gate
                    .as_ref()
                    .map_or("no gate record", |g| g.reason.as_str())
            );
        }
        anyhow::ensure!(
            !reason.trim().is_empty(),
            "a manual promotion needs a reason"
        );
        let before = self.current_id().map(str::to_string);
        self.get_mut(id).expect("checked").status = Status::Promoted;
        self.service.push(id.to_string());
        self.push_event(Event {
            seq: 0,
            at: crate::now_rfc3339(),
            action: Action::ManualPromote,
            version: id.to_string(),
            served_before: before,
            served_after: Some(id.to_string()),
            reason: reason.to_string(),
            gate: None,
        });
        Ok(())
    }

    /// Takes the version in service out (status `rolled_back`) and serves the one before it.
    pub fn rollback(&mut self, reason: &str) -> anyhow::Result<String> {
        if self.service.len() < 2 {
            bail!(
                "nothing to roll back to: {} is the only version that has been in service",
                self.current_id().unwrap_or("no version")
            );
        }
        let out = self.service.pop().expect("len >= 2");
        let after = self.current_id().expect("non-empty").to_string();
        self.get_mut(&out).expect("in service").status = Status::RolledBack;
        // served again: a version rolled back earlier and promoted by hand since is back too
        self.get_mut(&after).expect("in service").status = Status::Promoted;
        self.push_event(Event {
            seq: 0,
            at: crate::now_rfc3339(),
            action: Action::Rollback,
            version: out.clone(),
            served_before: Some(out),
            served_after: Some(after.clone()),
            reason: if reason.trim().is_empty() {
                "rollback".into()
            } else {
                reason.to_string()
            },
            gate: None,
        });
        Ok(after)
    }

    /// Internal consistency: unique ids, known parents, service entries that exist and were
    /// not rejected, every recorded file present.
    pub fn check(&self, site: &Site) -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.versions {
            anyhow::ensure!(
                seen.insert(v.id.as_str()),
                "version {} is recorded twice",
                v.id
            );
            if let Some(p) = &v.parent {
                anyhow::ensure!(seen.contains(p.as_str()), "{}: unknown parent {p}", v.id);
            }
            for f in [
                Some(&v.checkpoint),
                Some(&v.config),
                v.trained_on.list.as_ref(),
            ]
            .into_iter()
            .flatten()
            .chain([&v.validation.predictions])
            {
                let p = site.resolve(f);
                anyhow::ensure!(
                    p.is_file(),
                    "{}: recorded file {} is missing",
                    v.id,
                    Path::new(f).display()
                );
            }
        }
        for id in &self.service {
            let v = self
                .get(id)
                .with_context(|| format!("version {id} in service is not recorded"))?;
            anyhow::ensure!(
                v.status != Status::Rejected,
                "rejected version {id} is in service"
            );
        }
        if let Some(cur) = self.current() {
            anyhow::ensure!(
                cur.status == Status::Promoted,
                "version {} in service is {}",
                cur.id,
                cur.status
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, parent: Option<&str>) -> ModelVersion {
        ModelVersion {
            id: id.into(),
            parent: parent.map(String::from),
            created_at: String::new(),
            status: Status::Candidate,
            checkpoint: String::new(),
            checkpoint_sha256: String::new(),
            weights: Weights::Student,
            config: String::new(),
            config_sha256: String::new(),
            trained_on: TrainingSet {
                images: 0,
                new_images: 0,
                labeled: 0,
                list: None,
                list_sha256: None,
            },
            validation: ValidationMetrics {
                n: 0,
                n_positive: 0,
                auc: 0.5,
                auc_lower: 0.5,
                auc_upper: 0.5,
                threshold: 0.5,
                sensitivity: 0.5,
                specificity: 0.5,
                predictions: String::new(),
            },
            gate: None,
        }
    }

    #[test]
    fn rollback_walks_back_the_service_stack_and_keeps_statuses_consistent() {
        let mut reg = Registry::default();
        reg.record_initial(version("v1", None)).unwrap();
        reg.versions.push(ModelVersion {
            status: Status::Promoted,
            ..version("v2", Some("v1"))
        });
        reg.service.push("v2".into());
        // v1 served again by hand, then rolled back twice: v2, then v1 again
        reg.promote("v1", false, "back to the first").unwrap();
        assert_eq!(reg.rollback("r1").unwrap(), "v2");
        assert_eq!(reg.get("v1").unwrap().status, Status::RolledBack);
        assert_eq!(reg.get("v2").unwrap().status, Status::Promoted);
        assert_eq!(reg.rollback("r2").unwrap(), "v1");
        assert_eq!(
            reg.get("v1").unwrap().status,
            Status::Promoted,
            "served again"
        );
        assert_eq!(reg.get("v2").unwrap().status, Status::RolledBack);
        assert!(reg.rollback("r3").is_err());
        assert!(reg.promote("v1", false, "x").is_err(), "already in service");
        assert!(
            reg.promote("v2", false, " ").is_err(),
            "a reason is required"
        );
        let seqs: Vec<u64> = reg.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }
}
