//! Scoring every model of a seed on the test and validation images, the paired comparisons
//! with DISTL, the attention grids and the robustness table.

use anyhow::Context;
use sevit_data::Subset;
use sevit_distill::layout::stage_name;
use sevit_distill::{RunLayout, Weights};
use sevit_infer::{compare_predictions, evaluate_checkpoint, CaseSource, EvalRequest};

use super::Runner;

impl Runner {
    /// Every model of `seed` that is scored: (run, stage, name, weights).
    pub(super) fn models(&self, seed: u64) -> Vec<(RunLayout, String, String, Weights)> {
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
            for a in p.ablations.iter().filter(|a| a.runs_on(seed)) {
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

    pub(super) fn evaluate_seed(&mut self, seed: u64) -> anyhow::Result<String> {
        let mut n = 0;
        for (run, stage, name, weights) in self.models(seed) {
            for subset in [Subset::Test, Subset::Val] {
                let out = self.layout.eval(seed, subset, &name);
                if out.join("predictions.csv").is_file() {
                    continue;
                }
                evaluate_checkpoint(&eval_request(&run, &stage, weights, subset, out))?;
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
                .filter(|a| a.runs_on(seed))
                .map(|a| format!("ablation-{}", a.name))
                .collect();
            if self.protocol.baselines.ssl_finetune.is_some() {
                others.push("ssl-finetune".into());
            }
            for o in others {
                let json = self.layout.comparison(seed, &o, t);
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

    pub(super) fn attention(&mut self) -> anyhow::Result<String> {
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
            let title = sevit_infer::grid_title(&stage, &model);
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

    pub(super) fn robustness(&mut self) -> anyhow::Result<String> {
        let seed = self.protocol.seeds[0];
        let run = self.layout.run(seed);
        let k = self.protocol.data.folds;
        for (stage, tag) in self.robustness_tags() {
            let out = self.layout.robustness(seed, &tag);
            if !out.join("nuisance.csv").is_file() {
                evaluate_checkpoint(&EvalRequest {
                    robustness: Some(sevit_infer::RobustnessOptions {
                        kinds: sevit_data::nuisance::NuisanceKind::ALL.to_vec(),
                        severities: vec![1, 3, 5],
                        seed: 0,
                        level: 0.95,
                    }),
                    ..eval_request(&run, &stage, Weights::Student, Subset::Test, out.clone())
                })?;
            }
        }
        Ok(format!("AUC under nuisances at T=0 and T={k}"))
    }

    /// (stage, tag) of the models measured under nuisances: the initial model and the last step.
    fn robustness_tags(&self) -> [(String, String); 2] {
        let k = self.protocol.data.folds;
        [
            (stage_name::PRETRAIN.to_string(), "T0".to_string()),
            (stage_name::step(k), format!("T{k}")),
        ]
    }

    /// Copies the robustness tables and plots measured so far into the report's assets
    /// (`DOCS/results/robustness/nuisance-T<t>.{csv,png}`); the report reads them there.
    pub(super) fn publish_robustness(&self) -> anyhow::Result<()> {
        let seed = self.protocol.seeds[0];
        let assets = self.protocol.docs.join("results").join("robustness");
        for (_, tag) in self.robustness_tags() {
            let out = self.layout.robustness(seed, &tag);
            if !out.join("nuisance.csv").is_file() {
                continue;
            }
            std::fs::create_dir_all(&assets)?;
            for ext in ["csv", "png"] {
                let to = assets.join(format!("nuisance-{tag}.{ext}"));
                std::fs::copy(out.join(format!("nuisance.{ext}")), &to)
                    .with_context(|| format!("copying the robustness {ext} to {}", to.display()))?;
            }
        }
        Ok(())
    }
}

/// The evaluation of network `weights` of `run`'s stage `stage` on its `subset`, into `out`,
/// with the default metrics.
fn eval_request(
    run: &RunLayout,
    stage: &str,
    weights: Weights,
    subset: Subset,
    out: std::path::PathBuf,
) -> EvalRequest {
    EvalRequest {
        checkpoint: run.checkpoint(stage),
        stage: stage.to_string(),
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
    }
}
