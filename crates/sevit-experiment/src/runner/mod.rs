//! Runs a [`Protocol`] end to end and resumably: the shared backbone and its gate, then for
//! every seed its split, DISTL (initial model and T = 1..k), the supervised baselines, the
//! labeled-only control, the ablations and the SSL + fine-tuning arm, every model scored on
//! the test and validation images; then attention maps, robustness and the report.
//!
//! Each stage is recorded in `EXP/ledger.json` (with its wall time) when it finishes and is
//! skipped on a rerun; a stage interrupted midway resumes from its last epoch checkpoint. An
//! experiment directory keeps one protocol: `EXP/protocol.toml` and `EXP/preset.toml` hold
//! the texts it was started with, and a rerun with other texts is refused.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use sevit_data::Sample;
use sevit_distill::{RunLayout, RunOptions, TrainConfig};

pub use crate::layout::{ExperimentLayout, Ledger, StageRecord};
use crate::protocol::Protocol;

mod keep;
mod scoring;
mod stages;

pub use keep::fingerprint;

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunnerOptions {
    /// Draw progress bars.
    pub progress: bool,
}

/// A protocol being run.
pub struct Runner {
    /// The protocol.
    pub protocol: Protocol,
    /// Its experiment directory.
    pub layout: ExperimentLayout,
    ledger: Ledger,
    opts: RunnerOptions,
    bar: indicatif::ProgressBar,
    reserved: Option<crate::corpus::Reserved>,
    started: Instant,
}

impl Runner {
    /// Opens (or starts) the experiment of the protocol at `path`.
    ///
    /// # Errors
    /// A bad protocol; the directory holds another protocol or preset.
    pub fn open(path: &Path, opts: RunnerOptions) -> anyhow::Result<Runner> {
        let (protocol, text) = Protocol::load(path)?;
        let layout = ExperimentLayout {
            root: protocol.out.clone(),
        };
        std::fs::create_dir_all(&layout.root)
            .with_context(|| format!("creating {}", layout.root.display()))?;
        let preset = std::fs::read_to_string(&protocol.config)
            .with_context(|| format!("reading {}", protocol.config.display()))?;
        for (file, now) in [("protocol.toml", &text), ("preset.toml", &preset)] {
            let kept = layout.root.join(file);
            match std::fs::read_to_string(&kept) {
                Ok(before) if before != *now => bail!(
                    "{} was started with another {file} ({}): give this protocol another `out`, or remove that directory",
                    layout.root.display(),
                    kept.display()
                ),
                Ok(_) => {}
                Err(_) => sevit_fs::write_atomic(&kept, now.as_bytes())?,
            }
        }
        let ledger = Ledger::load(&layout.ledger())?;
        Ok(Runner {
            protocol,
            layout,
            ledger,
            opts,
            bar: indicatif::ProgressBar::hidden(),
            reserved: None,
            started: Instant::now(),
        })
    }

    fn save_ledger(&self) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(&self.ledger)?;
        sevit_fs::write_atomic(&self.layout.ledger(), json.as_bytes())
    }

    /// The ids of every stage of the protocol, in the order they run.
    pub fn plan(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if self.protocol.backbone.is_some() {
            ids.extend(["backbone".to_string(), "backbone-gate".to_string()]);
        }
        for s in &self.protocol.seeds {
            ids.extend(self.seed_plan(*s));
        }
        ids
    }

    /// The finished stages.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Runs every unfinished stage, then writes the report.
    ///
    /// # Errors
    /// The first failing stage (finished ones stay recorded; a rerun continues), or a failed
    /// backbone gate marked `required`.
    pub fn run_all(&mut self) -> anyhow::Result<crate::ExperimentResults> {
        let cfg = self.protocol.train_config(&[])?;
        cfg.apply_threads();
        let _lock = sevit_distill::layout::lock_dir(&self.layout.root, "experiment")?;
        self.reconcile()?;
        let plan = self.plan();
        let todo = plan.iter().filter(|id| !self.ledger.done(id)).count();
        tracing::info!(
            experiment = %self.layout.root.display(),
            stages = plan.len(),
            left = todo,
            "experiment"
        );
        self.bar =
            sevit_distill::log::progress_bar(plan.len() as u64, "experiment", self.opts.progress);
        self.bar.set_position((plan.len() - todo) as u64);
        if let Some(b) = self.protocol.backbone.clone() {
            self.stage("backbone", |r| r.pretrain_backbone(&b))?;
            self.stage("backbone-gate", |r| r.backbone_gate(&b))?;
        }
        for seed in self.protocol.seeds.clone() {
            self.run_seed(seed)?;
        }
        self.bar.finish_and_clear();
        let results = self.report()?;
        tracing::info!(
            seconds = self.started.elapsed().as_secs(),
            "experiment done"
        );
        Ok(results)
    }

    /// The stage ids of `seed`, in the order they run (the first seed also draws the
    /// attention grids and the robustness table from its DISTL checkpoints, before its
    /// scoring, so that a finished seed needs none of its checkpoints again).
    pub(super) fn seed_plan(&self, seed: u64) -> Vec<String> {
        let p = &self.protocol;
        let k = p.data.folds;
        let mut ids = vec![format!("seed-{seed}/split"), format!("seed-{seed}/distl")];
        if p.baselines.supervised {
            ids.extend((1..=k).map(|t| format!("seed-{seed}/supervised-T{t}")));
        }
        if p.baselines.control {
            ids.extend((1..=k).map(|t| format!("seed-{seed}/control-T{t}")));
        }
        for a in p.ablations.iter().filter(|a| a.runs_on(seed)) {
            ids.push(format!("seed-{seed}/ablation-{}", a.name));
        }
        if p.baselines.ssl_finetune.is_some() {
            ids.extend((1..=k).map(|t| format!("seed-{seed}/ssl-finetune-T{t}")));
        }
        if p.seeds.first() == Some(&seed) {
            if p.report.attention {
                ids.push("attention".into());
            }
            if p.report.robustness {
                ids.push("robustness".into());
            }
        }
        ids.push(format!("seed-{seed}/eval"));
        ids
    }

    fn run_seed(&mut self, seed: u64) -> anyhow::Result<()> {
        for id in self.seed_plan(seed) {
            self.stage(&id, |r| r.run_stage(seed, &id))?;
        }
        Ok(())
    }

    /// Runs stage `id` of [`Self::seed_plan`]`(seed)`.
    fn run_stage(&mut self, seed: u64, id: &str) -> anyhow::Result<String> {
        let kind = id.strip_prefix(&format!("seed-{seed}/")).unwrap_or(id);
        let at = |prefix: &str| kind.strip_prefix(prefix).and_then(|t| t.parse().ok());
        if let Some(t) = at("supervised-T") {
            return self.supervised(seed, t);
        }
        if let Some(t) = at("control-T") {
            return self.control(seed, t);
        }
        if let Some(t) = at("ssl-finetune-T") {
            let set = self.protocol.baselines.ssl_finetune.as_ref();
            let set = set.map(|s| s.set.clone()).unwrap_or_default();
            return self.ssl_finetune(seed, t, &set);
        }
        if let Some(name) = kind.strip_prefix("ablation-") {
            let a = self.protocol.ablations.iter().find(|a| a.name == name);
            let set = a.map(|a| a.set.clone()).context("no such ablation")?;
            return self.ablation(seed, name, &set);
        }
        match kind {
            "split" => self.split(seed),
            "distl" => self.distl(seed),
            "attention" => self.attention(),
            "robustness" => self.robustness(),
            "eval" => self.evaluate_seed(seed),
            _ => bail!("the runner has no stage {id}"),
        }
    }

    /// Runs stage `id` unless the ledger has it, then records it.
    fn stage(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut Runner) -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        if self.ledger.done(id) {
            return Ok(());
        }
        let (known, unknown) = self.eta();
        let eta = if unknown == 0 {
            format!("ETA {}", hms(known))
        } else {
            format!(
                "ETA at least {} ({unknown} stages of a kind not timed yet)",
                hms(known)
            )
        };
        self.bar.set_message(format!("{id}; {eta}"));
        tracing::info!(
            stage = id,
            done = self.ledger.stages.len(),
            elapsed = %hms(self.started.elapsed().as_secs_f64()),
            "experiment stage; {eta}"
        );
        let t0 = Instant::now();
        let detail = f(self).with_context(|| format!("experiment stage {id}"))?;
        let seconds = t0.elapsed().as_secs_f64();
        tracing::info!(stage = id, seconds, "{detail}");
        self.ledger.stages.push(StageRecord {
            id: id.to_string(),
            seconds,
            detail,
        });
        self.save_ledger()?;
        self.bar.inc(1);
        Ok(())
    }

    /// Seconds left by the wall times of finished stages of the same kind (the same id in
    /// another seed), and the number of pending stages of a kind not timed yet.
    pub fn eta(&self) -> (f64, usize) {
        let kind = |id: &str| match id.split_once('/') {
            Some((_, k)) => k.to_string(),
            None => id.to_string(),
        };
        let (mut known, mut unknown) = (0.0, 0);
        for id in self.plan().iter().filter(|id| !self.ledger.done(id)) {
            let k = kind(id);
            let times: Vec<f64> = self
                .ledger
                .stages
                .iter()
                .filter(|s| kind(&s.id) == k)
                .map(|s| s.seconds)
                .collect();
            if times.is_empty() {
                unknown += 1;
            } else {
                known += times.iter().sum::<f64>() / times.len() as f64;
            }
        }
        (known, unknown)
    }

    fn run_options(&self) -> RunOptions {
        RunOptions {
            resume: true,
            stop_after_epochs: None,
            progress: self.opts.progress,
            dist: None,
        }
    }

    /// The training config of a stage of `seed` with `extra` overrides.
    fn config(&self, seed: u64, extra: &[String]) -> anyhow::Result<TrainConfig> {
        let mut sets = vec![format!("seed={seed}")];
        sets.extend_from_slice(extra);
        self.protocol.train_config(&sets)
    }

    /// Writes `results.md`, `results/` (with `diagnosis.json`, which ingredient fails) and the
    /// appendix sections from what has run.
    ///
    /// # Errors
    /// No predictions yet, or a write fails.
    pub fn report(&self) -> anyhow::Result<crate::ExperimentResults> {
        self.publish_robustness()?;
        let sections = crate::sections::write_sections(self)?;
        let p = &self.protocol;
        let mut appendix = sections.appendix;
        appendix.extend(p.notes.iter().cloned());
        let attention = self.layout.attention();
        let assets = p.docs.join("results");
        let results = crate::write_report(&crate::ReportSpec {
            exp: self.layout.root.clone(),
            out: p.docs.join("results.md"),
            assets: assets.clone(),
            title: p.title.clone(),
            declared_seeds: p.seeds.len(),
            preamble: sections.preamble,
            appendix,
            attention: attention.is_dir().then_some(attention),
            level: 0.95,
            criteria: p.criteria.clone(),
        })?;
        sevit_fs::write_atomic(
            &assets.join("diagnosis.json"),
            serde_json::to_string_pretty(&sections.diagnosis)?.as_bytes(),
        )?;
        Ok(results)
    }
}

/// `1h02m03s`.
fn hms(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

/// The images of the backbone's extra pools (none when none is given).
fn extra_pool(paths: &[PathBuf], run: &RunLayout) -> anyhow::Result<Vec<Sample>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    sevit_distill::data::pool(paths, run)
}

/// Copies `from`'s split into `to` (a run of the same seed's arms).
fn copy_split(from: &RunLayout, to: &RunLayout) -> anyhow::Result<()> {
    if !to.split_csv().is_file() {
        std::fs::create_dir_all(&to.root)?;
        std::fs::copy(from.split_csv(), to.split_csv())
            .with_context(|| format!("copying the split to {}", to.root.display()))?;
    }
    Ok(())
}
