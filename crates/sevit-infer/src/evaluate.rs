//! `sevit eval`: a checkpoint on labelled cases → `report.json` (AUC, DeLong and optional
//! bootstrap CI, operating points, calibration), `predictions.csv`, `roc.png`,
//! `reliability.png`, `report.html` (all of it on one self-contained page, with attention
//! grids of the extreme cases in `attention/`), and optionally the robustness table (see
//! [`super::robustness`]).
//!
//! Scores come from the engine's [`sevit_distill::scoring::predict`], the function `evolve` uses for its
//! test AUC, so the numbers agree with the run's `summary.csv`.

use std::path::{Path, PathBuf};

use sevit_metrics::{evaluate, write_predictions_csv, EvalOptions, EvalReport};
use sevit_render::plot::{reliability_png, roc_png, RocSeries};

use anyhow::Context;
use sevit_data::load_gray;

use super::attention::{write_attention_grid, GridOptions};
use super::html_report::{telling_cases, write_html_report, AttentionCase, HtmlReport};
use super::model::{InferenceModel, SettingOverrides};
use super::robustness::{
    evaluate_robustness, RobustnessFiles, RobustnessOptions, RobustnessReport,
};
use super::source::{CaseSource, Cases};
use super::visualize::grid_file_name;
use sevit_distill::config::Weights;
use sevit_distill::scoring::predict_with;

/// What to evaluate and where to write it.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// A label for the model (stage name such as `step3`), used in titles.
    pub stage: String,
    /// Student (default) or teacher.
    pub weights: Weights,
    /// The run directory, when known (settings fallback `RUN/config.toml`).
    pub run: Option<PathBuf>,
    /// The labelled cases.
    pub cases: CaseSource,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Preprocessing/device overrides.
    pub overrides: SettingOverrides,
    /// Metric options (threshold, target sensitivity, bootstrap, level); `model`, `run` and
    /// `info` are filled in here.
    pub metrics: EvalOptions,
    /// Also evaluate under image nuisances.
    pub robustness: Option<RobustnessOptions>,
}

/// Files written by [`evaluate_checkpoint`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalFiles {
    /// `report.json`.
    pub report: PathBuf,
    /// `predictions.csv` (`id,label,p_<positive>,predicted,threshold`).
    pub predictions: PathBuf,
    /// `roc.png`.
    pub roc: PathBuf,
    /// `reliability.png`.
    pub reliability: PathBuf,
    /// `report.html`: the self-contained page (see [`super::html_report`]).
    pub html: PathBuf,
    /// The robustness files, when asked for.
    pub robustness: Option<RobustnessFiles>,
}

/// The result of [`evaluate_checkpoint`].
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// The metrics.
    pub report: EvalReport,
    /// The robustness table, when asked for.
    pub robustness: Option<RobustnessReport>,
    /// What was written.
    pub files: EvalFiles,
}

/// The default output folder: `RUN/eval/<stage>[-teacher]` for the test subset of the run,
/// `RUN/eval/<stage>[-teacher]-<cases>` for other cases; without a run, `eval/...` beside the
/// checkpoint's folder.
pub fn default_out_dir(
    run: Option<&Path>,
    checkpoint: &Path,
    stage: &str,
    weights: Weights,
    cases: &str,
) -> PathBuf {
    let base = match run {
        Some(r) => r.join("eval"),
        None => checkpoint
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("eval"))
            .unwrap_or_else(|| PathBuf::from("eval")),
    };
    let mut name = stage.to_string();
    if weights == Weights::Teacher {
        name.push_str("-teacher");
    }
    if cases != "test" {
        let clean: String = cases
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name.push('-');
        name.push_str(&clean);
    }
    base.join(name)
}

/// Evaluates a checkpoint (see the module docs) and writes its files into `req.out_dir`.
///
/// # Errors
/// Missing checkpoint or cases, unreadable images (named), a set with one class only, I/O.
pub fn evaluate_checkpoint(req: &EvalRequest) -> anyhow::Result<EvalOutcome> {
    let cases: Cases = req.cases.load()?;
    // The checkpoint is read once: scores, attention grids and robustness share the network.
    let model = InferenceModel::load(
        &req.checkpoint,
        req.weights,
        req.run.as_deref(),
        &req.overrides,
    )?;
    let settings = &model.settings;
    tracing::info!(
        checkpoint = %req.checkpoint.display(),
        cases = %cases.description,
        n = cases.samples.len(),
        "evaluating"
    );
    let probs = predict_with(
        model.network(),
        &cases.samples,
        settings.image_size,
        settings.batch_size,
        settings.blur_radius,
        model.device,
    )?;
    let labels = cases.labels();
    let wname = req.weights.name();
    let mut opts = req.metrics.clone();
    opts.model = format!("{} {wname} ({})", req.stage, req.checkpoint.display());
    opts.run = cases.description.clone();
    opts.info
        .insert("positive_label".into(), cases.positive.clone().into());
    opts.info
        .insert("image_size".into(), settings.image_size.into());
    opts.info
        .insert("inference_blur".into(), settings.blur_radius.into());
    opts.info.insert("weights".into(), wname.into());
    let report = evaluate(&labels, &probs, &opts)
        .map_err(anyhow::Error::from)
        .map_err(|e| {
            e.context(format!(
                "metrics of {} on {}",
                req.checkpoint.display(),
                cases.description
            ))
        })?;

    let dir = &req.out_dir;
    let files = EvalFiles {
        report: dir.join("report.json"),
        predictions: dir.join("predictions.csv"),
        roc: dir.join("roc.png"),
        reliability: dir.join("reliability.png"),
        html: dir.join("report.html"),
        robustness: None,
    };
    write_predictions_csv(
        &files.predictions,
        &cases.ids,
        &labels,
        &probs,
        &cases.positive,
        opts.threshold,
    )?;
    report.save_json(&files.report)?;
    let label = format!("{} ({wname})", req.stage);
    let title = format!(
        "ROC: {label} on {} (n = {}, {} positive)",
        cases.name, report.n, report.n_pos
    );
    roc_png(
        &files.roc,
        &title,
        &[RocSeries {
            label: label.clone(),
            points: report.roc.clone(),
            ci: report.ci,
        }],
    )?;
    reliability_png(
        &files.reliability,
        &format!("Calibration: {label} on {}", cases.name),
        &[(label.clone(), report.calibration.clone())],
    )?;

    let mut attention = Vec::new();
    for (i, why) in telling_cases(&labels, &probs, &cases.positive) {
        let sample = &cases.samples[i];
        let image = load_gray(&sample.path, model.settings.image_size)
            .with_context(|| format!("image {}", sample.path.display()))?;
        let png = dir.join("attention").join(grid_file_name(&cases.ids[i]));
        let lines = vec![label.clone(), format!("{} ({why})", cases.ids[i])];
        let grid = write_attention_grid(&model, &image, &lines, &png, &GridOptions::default())?;
        attention.push(AttentionCase {
            id: cases.ids[i].clone(),
            label: sample.label.clone(),
            probability: grid.probability,
            why,
            png: grid.png,
        });
    }
    let mut negatives: Vec<String> = cases
        .samples
        .iter()
        .filter(|s| s.target <= 0.5)
        .map(|s| s.label.clone())
        .collect();
    negatives.sort();
    negatives.dedup();
    write_html_report(
        &files.html,
        &HtmlReport {
            title: format!("{label} on {}", cases.name),
            report: &report,
            positive: cases.positive.clone(),
            negatives,
            attention,
        },
    )?;

    let mut outcome = EvalOutcome {
        report,
        robustness: None,
        files,
    };
    if let Some(ropts) = &req.robustness {
        let mut ropts = ropts.clone();
        ropts.level = opts.level;
        let rob = evaluate_robustness(&model, &cases, &ropts)?;
        let rfiles = rob.save(dir, &label)?;
        outcome.files.robustness = Some(rfiles);
        outcome.robustness = Some(rob);
    }
    Ok(outcome)
}
