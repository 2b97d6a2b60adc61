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
use serde::{Deserialize, Serialize};
use sevit_data::{Dataset, Sample, Split, SplitConfig, Subset, TestSelection};
use sevit_distill::layout::stage_name;
use sevit_distill::log::read_log;
use sevit_distill::{EvolveOptions, PretrainOptions, RunLayout, RunOptions, TrainConfig, Weights};
use sevit_infer::{compare_predictions, evaluate_checkpoint, CaseSource, EvalRequest};

use crate::protocol::Protocol;

/// One finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage id (`seed-0/distl`, `backbone`, ...).
    pub id: String,
    /// Wall time of the run that finished it, in seconds.
    pub seconds: f64,
    /// What it did, in words.
    pub detail: String,
}

/// The stages finished so far (`EXP/ledger.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// In the order they finished.
    pub stages: Vec<StageRecord>,
}

impl Ledger {
    /// Reads `path`, or an empty ledger when it does not exist.
    ///
    /// # Errors
    /// Unreadable or malformed file.
    pub fn load(path: &Path) -> anyhow::Result<Ledger> {
        if !path.exists() {
            return Ok(Ledger::default());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the stage ledger {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a stage ledger: remove it to rerun every stage",
                path.display()
            )
        })
    }

    /// Whether stage `id` finished.
    pub fn done(&self, id: &str) -> bool {
        self.stages.iter().any(|s| s.id == id)
    }
}

/// The directory layout of one experiment.
#[derive(Debug, Clone)]
pub struct ExperimentLayout {
    /// `EXP`.
    pub root: PathBuf,
}

impl ExperimentLayout {
    /// `EXP/ledger.json`.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger.json")
    }
    /// `EXP/backbone/`: the shared self-supervised pretraining run.
    pub fn backbone(&self) -> RunLayout {
        RunLayout::new(self.root.join("backbone"))
    }
    /// `EXP/seed-S/`.
    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.root.join(format!("seed-{seed}"))
    }
    /// `EXP/seed-S/run/`: the DISTL curriculum and the supervised baselines.
    pub fn run(&self, seed: u64) -> RunLayout {
        RunLayout::new(self.seed_dir(seed).join("run"))
    }
    /// `EXP/seed-S/control/T<t>/`.
    pub fn control(&self, seed: u64, t: usize) -> RunLayout {
        RunLayout::new(self.seed_dir(seed).join("control").join(format!("T{t}")))
    }
    /// `EXP/seed-S/ablation-NAME/`.
    pub fn ablation(&self, seed: u64, name: &str) -> RunLayout {
        RunLayout::new(self.seed_dir(seed).join(format!("ablation-{name}")))
    }
    /// `EXP/seed-S/ssl-finetune/T<t>/`.
    pub fn ssl_finetune(&self, seed: u64, t: usize) -> RunLayout {
        RunLayout::new(
            self.seed_dir(seed)
                .join("ssl-finetune")
                .join(format!("T{t}")),
        )
    }
    /// `EXP/seed-S/eval/NAME` (test) or `EXP/seed-S/eval-val/NAME` (validation).
    pub fn eval(&self, seed: u64, subset: Subset, name: &str) -> PathBuf {
        let leaf = if subset == Subset::Val {
            "eval-val"
        } else {
            "eval"
        };
        self.seed_dir(seed).join(leaf).join(name)
    }
    /// `EXP/attention/`.
    pub fn attention(&self) -> PathBuf {
        self.root.join("attention")
    }
}

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
    corpus: Vec<Sample>,
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
            corpus: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The ids of every stage of the protocol, in the order they run.
    pub fn plan(&self) -> Vec<String> {
        let p = &self.protocol;
        let mut ids = Vec::new();
        if p.backbone.is_some() {
            ids.extend(["backbone".to_string(), "backbone-gate".to_string()]);
        }
        for s in &p.seeds {
            ids.push(format!("seed-{s}/split"));
            ids.push(format!("seed-{s}/distl"));
            for t in 1..=p.data.folds {
                if p.baselines.supervised {
                    ids.push(format!("seed-{s}/supervised-T{t}"));
                }
            }
            for t in 1..=p.data.folds {
                if p.baselines.control {
                    ids.push(format!("seed-{s}/control-T{t}"));
                }
            }
            for a in &p.ablations {
                ids.push(format!("seed-{s}/ablation-{}", a.name));
            }
            for t in 1..=p.data.folds {
                if p.baselines.ssl_finetune.is_some() {
                    ids.push(format!("seed-{s}/ssl-finetune-T{t}"));
                }
            }
            ids.push(format!("seed-{s}/eval"));
        }
        if p.report.attention {
            ids.push("attention".into());
        }
        if p.report.robustness {
            ids.push("robustness".into());
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
        let plan = self.plan();
        let todo = plan.iter().filter(|id| !self.ledger.done(id)).count();
        tracing::info!(
            experiment = %self.layout.root.display(),
            stages = plan.len(),
            left = todo,
            "experiment"
        );
        let cfg = self.protocol.train_config(&[])?;
        cfg.apply_threads();
        let _lock = sevit_distill::layout::lock_dir(&self.layout.root, "experiment")?;
        self.bar =
            sevit_distill::log::progress_bar(plan.len() as u64, "experiment", self.opts.progress);
        self.bar.set_position((plan.len() - todo) as u64);
        if let Some(b) = self.protocol.backbone.clone() {
            self.corpus = self.reserve()?.corpus;
            self.stage("backbone", |r| r.pretrain_backbone(&b))?;
            self.stage("backbone-gate", |r| r.backbone_gate(&b))?;
        }
        for seed in self.protocol.seeds.clone() {
            self.run_seed(seed)?;
        }
        if self.protocol.report.attention {
            self.stage("attention", Runner::attention)?;
        }
        if self.protocol.report.robustness {
            self.stage("robustness", Runner::robustness)?;
        }
        self.bar.finish_and_clear();
        let results = self.report()?;
        tracing::info!(
            seconds = self.started.elapsed().as_secs(),
            "experiment done"
        );
        Ok(results)
    }

    fn run_seed(&mut self, seed: u64) -> anyhow::Result<()> {
        let p = self.protocol.clone();
        let k = p.data.folds;
        self.stage(&format!("seed-{seed}/split"), |r| r.split(seed))?;
        self.stage(&format!("seed-{seed}/distl"), |r| r.distl(seed))?;
        if p.baselines.supervised {
            for t in 1..=k {
                self.stage(&format!("seed-{seed}/supervised-T{t}"), |r| {
                    r.supervised(seed, t)
                })?;
            }
        }
        if p.baselines.control {
            for t in 1..=k {
                self.stage(&format!("seed-{seed}/control-T{t}"), |r| r.control(seed, t))?;
            }
        }
        for a in &p.ablations {
            self.stage(&format!("seed-{seed}/ablation-{}", a.name), |r| {
                r.ablation(seed, &a.name, &a.set)
            })?;
        }
        if let Some(sf) = &p.baselines.ssl_finetune {
            for t in 1..=k {
                self.stage(&format!("seed-{seed}/ssl-finetune-T{t}"), |r| {
                    r.ssl_finetune(seed, t, &sf.set)
                })?;
            }
        }
        self.stage(&format!("seed-{seed}/eval"), |r| r.evaluate_seed(seed))
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
        self.bar.set_message(id.to_string());
        tracing::info!(stage = id, "experiment stage");
        let t0 = Instant::now();
        let detail = f(self).with_context(|| format!("experiment stage {id}"))?;
        let seconds = t0.elapsed().as_secs_f64();
        tracing::info!(stage = id, seconds, "{detail}");
        self.ledger.stages.push(StageRecord {
            id: id.to_string(),
            seconds,
            detail,
        });
        let json = serde_json::to_string_pretty(&self.ledger)?;
        sevit_fs::write_atomic(&self.layout.ledger(), json.as_bytes())?;
        self.bar.inc(1);
        Ok(())
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

    /// The dataset every seed splits (without the reserved corpus).
    fn reserve(&self) -> anyhow::Result<crate::corpus::Reserved> {
        let ds = Dataset::from_descriptor(&self.protocol.data.dataset)?;
        match &self.protocol.backbone {
            Some(b) => crate::corpus::reserve(&ds, b.reserve_fraction, b.reserve_seed),
            None => Ok(crate::corpus::Reserved {
                corpus: Vec::new(),
                curriculum: ds,
            }),
        }
    }

    fn backbone_init(&self) -> PretrainOptions {
        match &self.protocol.backbone {
            Some(b) => PretrainOptions {
                init: Some(self.layout.backbone().checkpoint(stage_name::SSL)),
                init_weights: Some(b.weights),
                ..Default::default()
            },
            None => PretrainOptions::default(),
        }
    }

    fn pretrain_backbone(&mut self, b: &crate::protocol::BackboneSpec) -> anyhow::Result<String> {
        let run = self.layout.backbone();
        let mut pool = self.corpus.clone();
        crate::corpus::write_manifest(&run.root.join("corpus.csv"), &pool)?;
        pool.extend(extra_pool(&b.pool, &run)?);
        let seed = self.protocol.seeds[0];
        let cfg = self.config(seed, &b.set)?;
        let _lock = run.lock()?;
        run.write_config_once(&cfg)?;
        let out = sevit_distill::pretrain_self_supervised(&run, &cfg, &pool, &self.run_options())?;
        anyhow::ensure!(out.complete, "the backbone's pretraining stopped early");
        Ok(format!(
            "DINO pretraining on {} images ({} reserved from the dataset): {} epochs, {} iterations",
            pool.len(),
            self.corpus.len(),
            out.epochs,
            out.iterations
        ))
    }

    fn backbone_gate(&mut self, b: &crate::protocol::BackboneSpec) -> anyhow::Result<String> {
        let run = self.layout.backbone();
        // The probe: the reserved-free training pool of the first seed's split as the bank
        // (labels used by the probe only), its validation images as the queries.
        let first = self.protocol.seeds[0];
        let split = self.make_split(first)?;
        let bank: Vec<Sample> = split
            .entries
            .iter()
            .filter(|e| matches!(e.subset, Subset::Labeled | Subset::Fold(_)))
            .map(|e| e.sample.clone())
            .collect();
        let queries = split.samples(Subset::Val);
        anyhow::ensure!(
            !queries.is_empty(),
            "the backbone gate probes on validation images: set data.val_fraction > 0"
        );
        let cfg = self.config(first, &b.set)?;
        let g = crate::gate::measure(
            &run.checkpoint(stage_name::SSL),
            b.weights,
            &run.log(stage_name::SSL),
            cfg.model.out_dim,
            &bank,
            &queries,
            &b.gate,
            first,
        )?;
        sevit_fs::write_atomic(
            &run.root.join("gate.json"),
            serde_json::to_string_pretty(&g)?.as_bytes(),
        )?;
        let said = format!(
            "DINO loss {:.3} = {:.2} ln K (at most {}); k-NN probe AUC {:.3} vs {:.3} on random weights (gain at least {}): {}",
            g.dino_loss,
            g.loss_ratio,
            b.gate.max_loss_ratio,
            g.probe_auc,
            g.random_probe_auc,
            b.gate.min_probe_gain,
            if g.passed { "passed" } else { "FAILED" }
        );
        if !g.passed && b.gate.required {
            bail!("backbone gate failed: {said}; the curriculum does not start from this backbone (set backbone.gate.required = false to go on anyway)");
        }
        Ok(said)
    }

    fn make_split(&self, seed: u64) -> anyhow::Result<Split> {
        let reserved = self.reserve()?;
        let d = &self.protocol.data;
        let cfg = SplitConfig {
            seed,
            labeled_fraction: d.labeled_fraction,
            folds: d.folds,
            val_fraction: d.val_fraction,
            test: TestSelection::default_for(&reserved.curriculum),
        };
        Split::create(&reserved.curriculum, &cfg)
    }

    fn split(&mut self, seed: u64) -> anyhow::Result<String> {
        let split = self.make_split(seed)?;
        let run = self.layout.run(seed);
        split.write_csv(&run.split_csv())?;
        let mut table = format!(
            "dataset {} ({} images, positive {:?}), {}\n",
            split.name,
            split.entries.len(),
            split.positive_label(),
            split.description
        );
        if !self.corpus.is_empty() {
            table.push_str(&format!(
                "({} images of the dataset's training part reserved for the backbone, left out)\n",
                self.corpus.len()
            ));
        }
        table.push_str(&split.summary_table());
        sevit_fs::write_atomic(
            &self.layout.seed_dir(seed).join("split.txt"),
            table.as_bytes(),
        )?;
        Ok(format!("{} images split", split.entries.len()))
    }

    fn distl(&mut self, seed: u64) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        let cfg = self.config(seed, &[])?;
        let rows = self.evolve(&run, &cfg, self.backbone_init())?;
        Ok(format!("initial model and DISTL T=1..{}", rows))
    }

    fn evolve(
        &self,
        run: &RunLayout,
        cfg: &TrainConfig,
        init: PretrainOptions,
    ) -> anyhow::Result<usize> {
        let _lock = run.lock()?;
        run.write_config_once(cfg)?;
        let eo = EvolveOptions {
            pretrain: init,
            run: self.run_options(),
            until: None,
        };
        sevit_distill::evolve(run, cfg, &eo)?;
        let k = self.protocol.data.folds;
        anyhow::ensure!(
            sevit_distill::trainer::is_complete(&run.checkpoint(&stage_name::step(k)))?,
            "{}: step {k} did not finish",
            run.root.display()
        );
        Ok(k)
    }

    /// Images with labels at `T`: the labeled set plus folds `0..T`.
    fn labeled_at(split: &Split, t: usize) -> usize {
        split
            .entries
            .iter()
            .filter(|e| match e.subset {
                Subset::Labeled => true,
                Subset::Fold(k) => k < t,
                _ => false,
            })
            .count()
    }

    fn supervised(&mut self, seed: u64, t: usize) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        let split = Split::read_csv(&run.split_csv())?;
        let (n0, nt) = (Self::labeled_at(&split, 0), Self::labeled_at(&split, t));
        let init_epochs = self.config(seed, &[])?.pretrain.epochs;
        // As many iterations as the initial model, unless the protocol fixes the epochs.
        let epochs = self
            .protocol
            .baselines
            .supervised_epochs
            .unwrap_or((init_epochs * n0).div_ceil(nt));
        let cfg = self.config(seed, &[format!("pretrain.epochs={epochs}")])?;
        let _lock = run.lock()?;
        let out = sevit_distill::pretrain(
            &run,
            &cfg,
            &PretrainOptions {
                label_folds: t,
                run: self.run_options(),
                ..self.backbone_init()
            },
        )?;
        anyhow::ensure!(out.complete, "supervised T={t} stopped early");
        Ok(format!("supervised T={t} ({nt} images, {epochs} epochs)"))
    }

    fn control(&mut self, seed: u64, t: usize) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        // Updates of DISTL step T (unlabeled iterations and correction batches), rounded to
        // whole epochs of the labeled set (the initial model's iterations in its first epoch).
        let ipe = read_log(&run.log(stage_name::PRETRAIN))?
            .iter()
            .filter(|r| r.epoch == 0)
            .count();
        anyhow::ensure!(
            ipe > 0,
            "{} has no first-epoch iterations",
            run.log(stage_name::PRETRAIN).display()
        );
        let updates = read_log(&run.log(&stage_name::step(t)))?.len();
        let epochs = (updates + ipe / 2) / ipe;
        let prev = if t == 1 {
            run.checkpoint(stage_name::PRETRAIN)
        } else {
            self.layout
                .control(seed, t - 1)
                .checkpoint(stage_name::PRETRAIN)
        };
        let ctl = self.layout.control(seed, t);
        copy_split(&run, &ctl)?;
        let cfg = self.config(
            seed,
            &[
                format!("pretrain.epochs={epochs}"),
                "pretrain.select=last".into(),
                "pretrain.restarts=1".into(),
            ],
        )?;
        let _lock = ctl.lock()?;
        ctl.write_config_once(&cfg)?;
        let out = sevit_distill::pretrain(
            &ctl,
            &cfg,
            &PretrainOptions {
                init: Some(prev),
                run: self.run_options(),
                ..Default::default()
            },
        )?;
        anyhow::ensure!(out.complete, "control T={t} stopped early");
        Ok(format!(
            "labeled-only control T={t} ({epochs} epochs, {updates} updates in DISTL)"
        ))
    }

    fn ablation(&mut self, seed: u64, name: &str, set: &[String]) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        let ab = self.layout.ablation(seed, name);
        copy_split(&run, &ab)?;
        let init = ab.checkpoint(stage_name::PRETRAIN);
        if !init.is_file() {
            std::fs::create_dir_all(ab.stage_dir(stage_name::PRETRAIN))?;
            std::fs::copy(run.checkpoint(stage_name::PRETRAIN), &init)
                .with_context(|| format!("copying the initial model to {}", init.display()))?;
        }
        let cfg = self.config(seed, set)?;
        let k = self.evolve(&ab, &cfg, PretrainOptions::default())?;
        Ok(format!(
            "ablation {name} ({}), DISTL T=1..{k}",
            set.join(" ")
        ))
    }

    fn ssl_finetune(&mut self, seed: u64, t: usize, set: &[String]) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        let dir = self.layout.ssl_finetune(seed, t);
        copy_split(&run, &dir)?;
        let split = Split::read_csv(&run.split_csv())?;
        let mut pool = self.corpus.clone();
        if let Some(b) = &self.protocol.backbone {
            pool.extend(extra_pool(&b.pool, &run)?);
        }
        pool.extend(split.unlabeled_upto(t));
        let ssl_cfg = self.config(seed, set)?;
        let _lock = dir.lock()?;
        dir.write_config_once(&ssl_cfg)?;
        let backbone = self.layout.backbone().checkpoint(stage_name::SSL);
        let o = sevit_distill::continue_self_supervised(
            &dir,
            &ssl_cfg,
            &pool,
            &backbone,
            &self.run_options(),
        )?;
        anyhow::ensure!(o.complete, "SSL of T={t} stopped early");
        let cfg = self.config(seed, &[])?;
        let out = sevit_distill::pretrain(
            &dir,
            &cfg,
            &PretrainOptions {
                init: Some(dir.checkpoint(stage_name::SSL)),
                init_weights: Some(Weights::Teacher),
                run: self.run_options(),
                ..Default::default()
            },
        )?;
        anyhow::ensure!(out.complete, "fine-tuning of T={t} stopped early");
        Ok(format!(
            "DINO from the backbone on {} images (corpus + folds 1..{t}), then supervised fine-tuning",
            pool.len()
        ))
    }

    /// Every model of `seed` that is scored: (run, stage, name, weights).
    fn models(&self, seed: u64) -> Vec<(RunLayout, String, String, Weights)> {
        let p = &self.protocol;
        let run = self.layout.run(seed);
        let s = Weights::Student;
        let mut m = vec![(
            run.clone(),
            stage_name::PRETRAIN.to_string(),
            "distl-T0".to_string(),
            s,
        )];
        for t in 1..=p.data.folds {
            let step = stage_name::step(t);
            m.push((run.clone(), step.clone(), format!("distl-T{t}"), s));
            m.push((
                run.clone(),
                step.clone(),
                format!("distl-teacher-T{t}"),
                Weights::Teacher,
            ));
            if p.baselines.supervised {
                m.push((
                    run.clone(),
                    stage_name::supervised(t),
                    format!("supervised-T{t}"),
                    s,
                ));
            }
            if p.baselines.control {
                let ctl = self.layout.control(seed, t);
                m.push((ctl, stage_name::PRETRAIN.into(), format!("control-T{t}"), s));
            }
            for a in &p.ablations {
                let ab = self.layout.ablation(seed, &a.name);
                m.push((ab, step.clone(), format!("ablation-{}-T{t}", a.name), s));
            }
            if p.baselines.ssl_finetune.is_some() {
                let d = self.layout.ssl_finetune(seed, t);
                m.push((
                    d,
                    stage_name::PRETRAIN.into(),
                    format!("ssl-finetune-T{t}"),
                    s,
                ));
            }
        }
        m
    }

    fn evaluate_seed(&mut self, seed: u64) -> anyhow::Result<String> {
        let mut n = 0;
        for (run, stage, name, weights) in self.models(seed) {
            for subset in [Subset::Test, Subset::Val] {
                let out = self.layout.eval(seed, subset, &name);
                if out.join("predictions.csv").is_file() {
                    continue;
                }
                evaluate_checkpoint(&EvalRequest {
                    checkpoint: run.checkpoint(&stage),
                    stage: stage.clone(),
                    weights,
                    run: Some(run.root.clone()),
                    cases: CaseSource::Run {
                        run: run.root.clone(),
                        subset,
                    },
                    out_dir: out,
                    overrides: Default::default(),
                    metrics: Default::default(),
                    robustness: None,
                })?;
                n += 1;
            }
        }
        // Every other arm against DISTL at the same T, paired by case.
        for t in 1..=self.protocol.data.folds {
            let distl = self.layout.eval(seed, Subset::Test, &format!("distl-T{t}"));
            let mut others: Vec<String> = self
                .protocol
                .ablations
                .iter()
                .map(|a| format!("ablation-{}", a.name))
                .collect();
            if self.protocol.baselines.ssl_finetune.is_some() {
                others.push("ssl-finetune".into());
            }
            for o in others {
                let json = self
                    .layout
                    .seed_dir(seed)
                    .join("eval")
                    .join(format!("{o}-vs-distl-T{t}.json"));
                if json.is_file() {
                    continue;
                }
                let a = self.layout.eval(seed, Subset::Test, &format!("{o}-T{t}"));
                let name = o.strip_prefix("ablation-").unwrap_or(&o);
                compare_predictions(
                    &a,
                    &distl,
                    &format!("{name} T={t}"),
                    &format!("DISTL T={t}"),
                    0.95,
                )?
                .save_json(&json)?;
            }
        }
        Ok(format!("{n} evaluations"))
    }

    fn attention(&mut self) -> anyhow::Result<String> {
        let seed = self.protocol.seeds[0];
        let run = self.layout.run(seed);
        let out = self.layout.attention();
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        let mut n = 0;
        for t in 0..=self.protocol.data.folds {
            let stage = if t == 0 {
                stage_name::PRETRAIN.to_string()
            } else {
                stage_name::step(t)
            };
            let ckpt = run.checkpoint(&stage);
            let images = sevit_infer::ImageSelection::Run {
                run: run.root.clone(),
                subset: Subset::Test,
                n: 2,
            }
            .resolve()?;
            let model = sevit_infer::InferenceModel::load(
                &ckpt,
                Weights::Student,
                Some(&run.root),
                &Default::default(),
            )?;
            let title = format!("{stage} (student) - {}", ckpt.display());
            let opts = sevit_infer::GridOptions {
                threshold: 0.6,
                tile_size: 160,
                columns: 0,
            };
            n +=
                sevit_infer::visualize(&model, &images, &out.join(format!("T{t}")), &title, &opts)?
                    .len();
        }
        Ok(format!("{n} attention grids"))
    }

    fn robustness(&mut self) -> anyhow::Result<String> {
        let seed = self.protocol.seeds[0];
        let run = self.layout.run(seed);
        let k = self.protocol.data.folds;
        let assets = self.protocol.docs.join("results").join("robustness");
        for (stage, tag) in [
            (stage_name::PRETRAIN.to_string(), "T0".to_string()),
            (stage_name::step(k), format!("T{k}")),
        ] {
            let out = self.layout.seed_dir(seed).join("robustness").join(&tag);
            if !out.join("nuisance.csv").is_file() {
                evaluate_checkpoint(&EvalRequest {
                    checkpoint: run.checkpoint(&stage),
                    stage: stage.clone(),
                    weights: Weights::Student,
                    run: Some(run.root.clone()),
                    cases: CaseSource::Run {
                        run: run.root.clone(),
                        subset: Subset::Test,
                    },
                    out_dir: out.clone(),
                    overrides: Default::default(),
                    metrics: Default::default(),
                    robustness: Some(sevit_infer::RobustnessOptions {
                        kinds: sevit_data::nuisance::NuisanceKind::ALL.to_vec(),
                        severities: vec![1, 3, 5],
                        seed: 0,
                        level: 0.95,
                    }),
                })?;
            }
            std::fs::create_dir_all(&assets)?;
            for ext in ["csv", "png"] {
                std::fs::copy(
                    out.join(format!("nuisance.{ext}")),
                    assets.join(format!("nuisance-{tag}.{ext}")),
                )?;
            }
        }
        Ok(format!("AUC under nuisances at T=0 and T={k}"))
    }

    /// Writes `results.md`, `results/` and the appendix sections from what has run.
    ///
    /// # Errors
    /// No predictions yet, or a write fails.
    pub fn report(&self) -> anyhow::Result<crate::ExperimentResults> {
        let sections = crate::sections::write_sections(self)?;
        let p = &self.protocol;
        let mut appendix = sections.appendix;
        appendix.extend(p.notes.iter().cloned());
        let attention = self.layout.attention();
        crate::write_report(&crate::ReportSpec {
            exp: self.layout.root.clone(),
            out: p.docs.join("results.md"),
            assets: p.docs.join("results"),
            title: p.title.clone(),
            preamble: sections.preamble,
            appendix,
            attention: attention.is_dir().then_some(attention),
            level: 0.95,
            criteria: p.criteria.clone(),
        })
    }
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
