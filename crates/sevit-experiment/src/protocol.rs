//! An experiment protocol as data (`experiments/*.toml`): the dataset and its split, the
//! training preset, the seeds, the stages and arms with their overrides, and the success
//! criteria, all declared before anything runs. Relative paths are relative to the protocol
//! file's folder, as in dataset descriptors.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use sevit_distill::Weights;

/// A whole experiment protocol (see the module docs and `experiments/README.md`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// Short name (the default experiment directory is `runs/<name>` beside `experiments/`).
    pub name: String,
    /// Title of `results.md`.
    pub title: String,
    /// Seeds: each one a split and a training of every arm.
    pub seeds: Vec<u64>,
    /// Training preset (TOML), for every stage.
    pub config: PathBuf,
    /// `section.key=value` overrides of the preset, for every stage.
    #[serde(default)]
    pub set: Vec<String>,
    /// Experiment directory (runs, evaluations, the stage ledger).
    pub out: PathBuf,
    /// Where `results.md` and `results/` go.
    pub docs: PathBuf,
    /// Markdown files appended to the report as they are (notes written by people).
    #[serde(default)]
    pub notes: Vec<PathBuf>,
    /// The dataset and its split.
    pub data: DataSpec,
    /// Optional self-supervised backbone shared by every seed.
    #[serde(default)]
    pub backbone: Option<BackboneSpec>,
    /// Supervised baseline, labeled-only control and the SSL + fine-tuning alternative.
    #[serde(default)]
    pub baselines: BaselineSpec,
    /// DISTL curricula with one override set each, reported beside DISTL.
    #[serde(default, rename = "ablation")]
    pub ablations: Vec<Ablation>,
    /// The success criteria, declared up front.
    pub criteria: Criteria,
    /// What the report draws besides the tables.
    #[serde(default)]
    pub report: ReportOptions,
}

/// The dataset and how each seed splits it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Dataset descriptor; its `test_prefix` (or a 20% patient-grouped share) is the test set.
    pub dataset: PathBuf,
    /// Share of the training pool with labels.
    #[serde(default = "default_labeled")]
    pub labeled_fraction: f64,
    /// Unlabeled folds, one DISTL step each.
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Share of the training pool held out for validation (tuning only).
    #[serde(default = "default_val")]
    pub val_fraction: f64,
}

fn default_labeled() -> f64 {
    0.1
}
fn default_folds() -> usize {
    3
}
fn default_val() -> f64 {
    0.1
}

/// DINO self-supervised pretraining on images the curriculum never sees, shared by every
/// seed (the paper's CheXpert backbone), with a gate before use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    /// Extra image pools (descriptors, manifests or folders; labels ignored).
    #[serde(default)]
    pub pool: Vec<PathBuf>,
    /// Share of the dataset's training patients (never test) reserved for pretraining and
    /// removed from every seed's split.
    #[serde(default)]
    pub reserve_fraction: f64,
    /// Seed of the reserved share (one share for every seed).
    #[serde(default)]
    pub reserve_seed: u64,
    /// Overrides of the pretraining stage only (e.g. its epochs).
    #[serde(default)]
    pub set: Vec<String>,
    /// Which network of the pretraining checkpoint starts the initial model.
    #[serde(default = "default_teacher")]
    pub weights: Weights,
    /// The gate before use.
    pub gate: BackboneGate,
}

fn default_teacher() -> Weights {
    Weights::Teacher
}

/// Backbone gate: the DINO loss well below chance and a k-NN probe clearly above the same
/// probe on random weights.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneGate {
    /// Final-epoch DINO loss over ln(K) must be at most this.
    pub max_loss_ratio: f64,
    /// Probe validation AUC of the backbone minus that of random weights, at least.
    pub min_probe_gain: f64,
    /// Neighbours of the k-NN probe.
    #[serde(default = "default_k")]
    pub probe_k: usize,
    /// Stop the experiment when the gate fails (else report it and go on).
    #[serde(default = "default_true")]
    pub required: bool,
}

fn default_k() -> usize {
    20
}
fn default_true() -> bool {
    true
}

/// The comparison arms besides DISTL.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// Supervised with labels on the labeled set plus the folds seen so far.
    #[serde(default = "default_true")]
    pub supervised: bool,
    /// Epochs of each supervised baseline; default: the initial model's iterations.
    #[serde(default)]
    pub supervised_epochs: Option<usize>,
    /// The initial model trained on the labeled set alone for as many updates as DISTL step T.
    #[serde(default = "default_true")]
    pub control: bool,
    /// What a user would pick today: the backbone's self-supervised pretraining continued on
    /// the corpus plus the folds seen so far, then supervised fine-tuning on the labeled set
    /// (the same unlabeled images as DISTL, no self-training).
    #[serde(default)]
    pub ssl_finetune: Option<SslFinetuneSpec>,
}

impl Default for BaselineSpec {
    fn default() -> Self {
        BaselineSpec {
            supervised: true,
            supervised_epochs: None,
            control: true,
            ssl_finetune: None,
        }
    }
}

/// The SSL + fine-tuning arm.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SslFinetuneSpec {
    /// Overrides of its self-supervised stage (e.g. `pretrain.self_supervised_epochs`).
    #[serde(default)]
    pub set: Vec<String>,
}

/// One ablation: the DISTL curriculum from the same initial model with these overrides.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ablation {
    /// Name (directory and table column).
    pub name: String,
    /// Overrides.
    pub set: Vec<String>,
    /// The seeds it runs on (a subset of the protocol's; default: all).
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
}

impl Ablation {
    /// Whether it runs on `seed`.
    pub fn runs_on(&self, seed: u64) -> bool {
        self.seeds.as_ref().is_none_or(|s| s.contains(&seed))
    }
}

/// Success criteria of the DISTL claim.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    /// Mean AUC(T=k) − AUC(T=0) over seeds, at least.
    pub min_mean_gain: f64,
    /// Significance level of the paired DeLong tests.
    pub alpha: f64,
}

impl Default for Criteria {
    /// The paper-sized claim: +0.03 AUC at p < 0.05.
    fn default() -> Self {
        Criteria {
            min_mean_gain: 0.03,
            alpha: 0.05,
        }
    }
}

/// Extra report parts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportOptions {
    /// Attention maps of two test images at every T (first seed).
    #[serde(default = "default_true")]
    pub attention: bool,
    /// AUC under image nuisances at T=0 and T=k (first seed).
    #[serde(default = "default_true")]
    pub robustness: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            attention: true,
            robustness: true,
        }
    }
}

impl Protocol {
    /// Reads and checks a protocol, making its paths absolute against its folder.
    ///
    /// # Errors
    /// Unreadable file, bad TOML or unknown keys (named), or an inconsistent protocol.
    pub fn load(path: &Path) -> anyhow::Result<(Protocol, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the experiment protocol {}", path.display()))?;
        let mut p: Protocol = toml::from_str(&text)
            .with_context(|| format!("parsing the experiment protocol {}", path.display()))?;
        let base = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base)?;
        p.resolve_paths(&base)?;
        p.validate()
            .with_context(|| format!("experiment protocol {}", path.display()))?;
        Ok((p, text))
    }

    /// Every path made absolute against the protocol's folder and lexically clean
    /// (`experiments/../configs` is `configs`), so reports and logs name each file one way.
    fn resolve_paths(&mut self, base: &Path) -> anyhow::Result<()> {
        let abs = |p: &mut PathBuf| -> anyhow::Result<()> {
            *p = sevit_data::paths::absolute_clean(&base.join(&*p))?;
            Ok(())
        };
        abs(&mut self.config)?;
        abs(&mut self.out)?;
        abs(&mut self.docs)?;
        self.notes.iter_mut().try_for_each(abs)?;
        abs(&mut self.data.dataset)?;
        if let Some(b) = &mut self.backbone {
            b.pool.iter_mut().try_for_each(abs)?;
        }
        Ok(())
    }

    /// Checks the values (ranges, names, files that must exist).
    ///
    /// # Errors
    /// The first inconsistency, with what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.name.is_empty()
                && self
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
            "name {:?}: use letters, digits, '-' and '_'",
            self.name
        );
        ensure!(!self.seeds.is_empty(), "seeds: give at least one seed");
        let mut seeds = self.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        ensure!(
            seeds.len() == self.seeds.len(),
            "seeds: a seed is listed twice"
        );
        for (what, f) in [
            ("config", &self.config),
            ("data.dataset", &self.data.dataset),
        ] {
            ensure!(f.is_file(), "{what}: {} not found", f.display());
        }
        for n in &self.notes {
            ensure!(n.is_file(), "notes: {} not found", n.display());
        }
        let d = &self.data;
        ensure!(
            d.labeled_fraction > 0.0 && d.labeled_fraction < 1.0,
            "data.labeled_fraction {} must be in (0, 1)",
            d.labeled_fraction
        );
        ensure!(d.folds >= 1, "data.folds must be at least 1");
        ensure!(
            (0.0..1.0).contains(&d.val_fraction),
            "data.val_fraction {} must be in [0, 1)",
            d.val_fraction
        );
        if let Some(b) = &self.backbone {
            ensure!(
                (0.0..1.0).contains(&b.reserve_fraction),
                "backbone.reserve_fraction {} must be in [0, 1)",
                b.reserve_fraction
            );
            ensure!(
                b.reserve_fraction > 0.0 || !b.pool.is_empty(),
                "backbone: no images to pretrain on (set backbone.pool or backbone.reserve_fraction)"
            );
            ensure!(
                b.gate.probe_k >= 1,
                "backbone.gate.probe_k must be at least 1"
            );
        }
        if self.baselines.ssl_finetune.is_some() && self.backbone.is_none() {
            bail!(
                "baselines.ssl_finetune pretrains on the backbone corpus: add a [backbone] table"
            );
        }
        let mut names: Vec<&str> = self.ablations.iter().map(|a| a.name.as_str()).collect();
        for a in &self.ablations {
            ensure!(
                !a.name.is_empty()
                    && a.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "ablation name {:?}: use letters, digits and '-'",
                a.name
            );
            ensure!(!a.set.is_empty(), "ablation {}: no override", a.name);
            if let Some(s) = &a.seeds {
                ensure!(
                    !s.is_empty() && s.iter().all(|x| self.seeds.contains(x)),
                    "ablation {}: its seeds must be some of the protocol's seeds {:?}",
                    a.name,
                    self.seeds
                );
            }
        }
        names.sort_unstable();
        names.dedup();
        ensure!(
            names.len() == self.ablations.len(),
            "two ablations share a name"
        );
        ensure!(
            self.criteria.alpha > 0.0 && self.criteria.alpha < 1.0,
            "criteria.alpha {} must be in (0, 1)",
            self.criteria.alpha
        );
        Ok(())
    }

    /// The training config of every stage: the preset with the protocol's overrides, then
    /// `extra`.
    ///
    /// # Errors
    /// The preset or an override is invalid.
    pub fn train_config(&self, extra: &[String]) -> anyhow::Result<sevit_distill::TrainConfig> {
        let mut sets = self.set.clone();
        sets.extend_from_slice(extra);
        sevit_distill::TrainConfig::load(&self.config, &sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn every_committed_protocol_loads() {
        let dir = repo().join("experiments");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let (proto, _) = Protocol::load(&p).unwrap_or_else(|e| panic!("{e:#}"));
                proto.train_config(&[]).unwrap();
                // `config = "../configs/.."` is resolved to one clean absolute name.
                for path in [&proto.config, &proto.out, &proto.docs, &proto.data.dataset] {
                    assert!(path.is_absolute(), "{}", path.display());
                    assert!(
                        !path
                            .components()
                            .any(|c| c == std::path::Component::ParentDir),
                        "{} is not clean",
                        path.display()
                    );
                }
                n += 1;
            }
        }
        assert!(n >= 2, "experiments/ holds the protocols");
    }

    fn write(dir: &Path, body: &str) -> PathBuf {
        let config = repo().join("configs/micro.toml");
        let data = repo().join("data-manifests/covid_figure1.toml");
        let text = format!(
            "name = \"x\"\ntitle = \"t\"\nseeds = [0]\nconfig = \"{}\"\nout = \"o\"\ndocs = \"d\"\n{body}\n",
            config.display()
        )
        .replace("DATA", &data.display().to_string());
        let p = dir.join("p.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bad_protocols_say_what_to_change() {
        let d = tempfile::tempdir().unwrap();
        let ok = "[data]\ndataset = \"DATA\"\n[criteria]\nmin_mean_gain = 0.03\nalpha = 0.05";
        let (p, _) = Protocol::load(&write(d.path(), ok)).unwrap();
        assert!(p.out.is_absolute() && p.out.ends_with("o"));
        assert_eq!(p.data.folds, 3);
        for (body, want) in [
            (format!("{ok}\nextra = 1"), "unknown field"),
            (
                ok.replace("dataset = \"DATA\"", "dataset = \"DATA\"\nlabeled_fraction = 1.5"),
                "labeled_fraction",
            ),
            (ok.replace("DATA", "/nonexistent.toml"), "not found"),
            (ok.replace("alpha = 0.05", "alpha = 0"), "alpha"),
            (
                format!("{ok}\n[baselines.ssl_finetune]\nset = []"),
                "add a [backbone] table",
            ),
            (
                format!("{ok}\n[[ablation]]\nname = \"a\"\nset = [\"x=1\"]\n[[ablation]]\nname = \"a\"\nset = [\"y=1\"]"),
                "share a name",
            ),
            (
                format!("{ok}\n[[ablation]]\nname = \"a\"\nset = [\"x=1\"]\nseeds = [7]"),
                "some of the protocol's seeds",
            ),
            (
                format!("{ok}\n[backbone]\ngate = {{ max_loss_ratio = 1, min_probe_gain = 0 }}"),
                "no images to pretrain on",
            ),
        ] {
            let e = format!("{:#}", Protocol::load(&write(d.path(), &body)).unwrap_err());
            assert!(e.contains(want), "{want:?} not in {e}");
        }
    }
}
