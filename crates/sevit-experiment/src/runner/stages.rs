//! The training stages of a protocol: backbone and its gate, split, DISTL, supervised
//! baselines, labeled-only control, ablations, SSL + fine-tuning.

use anyhow::{bail, Context};
use sevit_data::{Dataset, Sample, Split, SplitConfig, Subset, TestSelection};
use sevit_distill::layout::stage_name;
use sevit_distill::log::read_log;
use sevit_distill::{EvolveOptions, PretrainOptions, RunLayout, TrainConfig, Weights};

use super::{copy_split, extra_pool, Runner};

impl Runner {
    /// The dataset cut into the reserved corpus and the part every seed splits, read once.
    pub(super) fn reserved(&mut self) -> anyhow::Result<&crate::corpus::Reserved> {
        if self.reserved.is_none() {
            let ds = Dataset::from_descriptor(&self.protocol.data.dataset)?;
            let r = match &self.protocol.backbone {
                Some(b) => crate::corpus::reserve(&ds, b.reserve_fraction, b.reserve_seed)?,
                None => crate::corpus::Reserved {
                    corpus: Vec::new(),
                    curriculum: ds,
                },
            };
            self.reserved = Some(r);
        }
        Ok(self.reserved.as_ref().expect("set above"))
    }

    pub(super) fn backbone_init(&self) -> PretrainOptions {
        match &self.protocol.backbone {
            Some(b) => PretrainOptions {
                init: Some(self.layout.backbone().checkpoint(stage_name::SSL)),
                init_weights: Some(b.weights),
                ..Default::default()
            },
            None => PretrainOptions::default(),
        }
    }

    pub(super) fn pretrain_backbone(
        &mut self,
        b: &crate::protocol::BackboneSpec,
    ) -> anyhow::Result<String> {
        let run = self.layout.backbone();
        let mut pool = self.reserved()?.corpus.clone();
        let n_reserved = pool.len();
        crate::corpus::write_manifest(&run.root.join("corpus.csv"), &pool)?;
        pool.extend(extra_pool(&b.pool, &run)?);
        let seed = self.protocol.seeds[0];
        let cfg = self.config(seed, &b.set)?;
        let _lock = run.lock()?;
        run.write_config_once(&cfg)?;
        let out = sevit_distill::pretrain_self_supervised(&run, &cfg, &pool, &self.run_options())?;
        anyhow::ensure!(out.complete, "the backbone's pretraining stopped early");
        let sha = self.check_backbone()?;
        Ok(format!(
            "DINO pretraining on {} images ({} reserved from the dataset): {} epochs, {} iterations; networks sha256 {sha}",
            pool.len(),
            n_reserved,
            out.epochs,
            out.iterations
        ))
    }

    pub(super) fn backbone_gate(
        &mut self,
        b: &crate::protocol::BackboneSpec,
    ) -> anyhow::Result<String> {
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
            &crate::gate::result_path(&run.root),
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

    pub(super) fn make_split(&mut self, seed: u64) -> anyhow::Result<Split> {
        let d = self.protocol.data.clone();
        let curriculum = &self.reserved()?.curriculum;
        let cfg = SplitConfig {
            seed,
            labeled_fraction: d.labeled_fraction,
            folds: d.folds,
            val_fraction: d.val_fraction,
            test: TestSelection::default_for(curriculum),
        };
        Split::create(curriculum, &cfg)
    }

    pub(super) fn split(&mut self, seed: u64) -> anyhow::Result<String> {
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
        let reserved = self.reserved()?.corpus.len();
        if reserved > 0 {
            table.push_str(&format!(
                "({reserved} images of the dataset's training part reserved for the backbone, left out)\n"
            ));
        }
        table.push_str(&split.summary_table());
        sevit_fs::write_atomic(
            &self.layout.seed_dir(seed).join("split.txt"),
            table.as_bytes(),
        )?;
        Ok(format!("{} images split", split.entries.len()))
    }

    pub(super) fn distl(&mut self, seed: u64) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        let cfg = self.config(seed, &[])?;
        let rows = self.evolve(&run, &cfg, self.backbone_init())?;
        Ok(format!("initial model and DISTL T=1..{}", rows))
    }

    pub(super) fn evolve(
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
    pub(super) fn labeled_at(split: &Split, t: usize) -> usize {
        split.samples(Subset::Labeled).len() + split.unlabeled_upto(t).len()
    }

    pub(super) fn supervised(&mut self, seed: u64, t: usize) -> anyhow::Result<String> {
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

    pub(super) fn control(&mut self, seed: u64, t: usize) -> anyhow::Result<String> {
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

    pub(super) fn ablation(
        &mut self,
        seed: u64,
        name: &str,
        set: &[String],
    ) -> anyhow::Result<String> {
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

    pub(super) fn ssl_finetune(
        &mut self,
        seed: u64,
        t: usize,
        set: &[String],
    ) -> anyhow::Result<String> {
        let run = self.layout.run(seed);
        let dir = self.layout.ssl_finetune(seed, t);
        copy_split(&run, &dir)?;
        let split = Split::read_csv(&run.split_csv())?;
        let mut pool = self.reserved()?.corpus.clone();
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
}
