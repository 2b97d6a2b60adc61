//! Robustness to image nuisances: the test AUC when every image is degraded by one
//! [`sevit_data::nuisance`] kind at one severity (after loading, before the inference
//! transform; deterministic per (seed, image index)), written as `nuisance.csv`,
//! `nuisance.json` and `nuisance.png` (AUC against severity, one line per kind, the clean AUC
//! as a reference line).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sevit_data::nuisance::{Nuisance, NuisanceKind, MAX_SEVERITY};
use sevit_data::GrayImage;
use sevit_metrics::{delong_ci, AucCi, NuisanceTable};
use sevit_render::plot::{line_png_with_legend, LegendPosition, LinePlot, Series, SeriesPoint};

use super::images::{load_all, par_map};
use super::model::InferenceModel;
use super::source::Cases;
use sevit_distill::layout::write_atomic;

/// Which corruptions to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessOptions {
    /// Nuisance kinds (default: all).
    pub kinds: Vec<NuisanceKind>,
    /// Severities, each in `1..=MAX_SEVERITY` (default 1..=5); the clean AUC is severity 0.
    pub severities: Vec<u32>,
    /// Seed of the random parts (noise, rotation direction).
    pub seed: u64,
    /// Confidence level of the DeLong intervals.
    pub level: f64,
}

impl Default for RobustnessOptions {
    fn default() -> Self {
        RobustnessOptions {
            kinds: NuisanceKind::ALL.to_vec(),
            severities: (1..=MAX_SEVERITY).collect(),
            seed: 0,
            level: 0.95,
        }
    }
}

/// The AUC under one corruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessRow {
    /// Nuisance kind name.
    pub kind: String,
    /// Severity (0 = clean).
    pub severity: u32,
    /// What the parameter is (e.g. "Gaussian noise σ").
    pub parameter_name: String,
    /// The parameter value at this severity.
    pub parameter: f64,
    /// AUC with its DeLong CI.
    pub ci: AucCi,
    /// AUC minus the clean AUC.
    pub delta_auc: f64,
}

/// AUC per nuisance kind and severity; serialised as `nuisance.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessReport {
    /// Model description.
    pub model: String,
    /// Case description.
    pub cases: String,
    /// Number of cases.
    pub n: usize,
    /// Seed of the random corruptions.
    pub seed: u64,
    /// AUC on clean images (the same pipeline, no corruption).
    pub clean: AucCi,
    /// One row per (kind, severity), kind-major.
    pub rows: Vec<RobustnessRow>,
}

/// Paths written by [`RobustnessReport::save`].
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessFiles {
    /// `nuisance.csv` (`model,kind,severity,auc,lower,upper`, severity 0 = clean).
    pub csv: PathBuf,
    /// `nuisance.json` (the whole report, with parameters).
    pub json: PathBuf,
    /// `nuisance.png` (the plot).
    pub png: PathBuf,
}

/// Scores `cases` clean and under every corruption of `opts` with `model`.
///
/// # Errors
/// An unreadable image (named), invalid severities, or a set with one class only.
pub fn evaluate_robustness(
    model: &InferenceModel,
    cases: &Cases,
    opts: &RobustnessOptions,
) -> anyhow::Result<RobustnessReport> {
    anyhow::ensure!(
        !opts.kinds.is_empty() && !opts.severities.is_empty(),
        "no nuisance kind or severity to evaluate"
    );
    for &s in &opts.severities {
        anyhow::ensure!(
            (1..=MAX_SEVERITY).contains(&s),
            "nuisance severity {s} is out of range 1..={MAX_SEVERITY}"
        );
    }
    let labels = cases.labels();
    let paths: Vec<PathBuf> = cases.samples.iter().map(|s| s.path.clone()).collect();
    let images: Vec<GrayImage> = load_all(&paths, model.settings.image_size)
        .into_iter()
        .zip(&paths)
        .map(|(r, p)| r.with_context(|| format!("robustness evaluation image {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    let auc_of = |imgs: &[GrayImage], what: &str| -> anyhow::Result<AucCi> {
        let probs = model.score(imgs)?;
        delong_ci(&labels, &probs, opts.level).with_context(|| format!("AUC {what}"))
    };
    let clean = auc_of(&images, "on clean images")?;
    tracing::info!(auc = clean.auc, n = images.len(), "robustness: clean");
    let indexed: Vec<(usize, &GrayImage)> = images.iter().enumerate().collect();
    let mut rows = Vec::new();
    for &kind in &opts.kinds {
        for &severity in &opts.severities {
            let n = Nuisance::new(kind, severity)?;
            let degraded = par_map(&indexed, |(i, img)| n.apply(img, opts.seed, *i as u64));
            let ci = auc_of(&degraded, &format!("under {n}"))?;
            tracing::info!(%kind, severity, auc = ci.auc, "robustness");
            rows.push(RobustnessRow {
                kind: kind.name().to_string(),
                severity,
                parameter_name: kind.parameter_name().to_string(),
                parameter: n.parameter(),
                ci,
                delta_auc: ci.auc - clean.auc,
            });
        }
    }
    Ok(RobustnessReport {
        model: model.describe(),
        cases: cases.description.clone(),
        n: labels.len(),
        seed: opts.seed,
        clean,
        rows,
    })
}

/// Legend label of a kind's line: the kind and its parameter range.
fn series_label(kind: &str, first: f64, last: f64) -> String {
    let (a, b) = (format_param(first), format_param(last));
    match kind.parse::<NuisanceKind>() {
        Ok(NuisanceKind::Noise) => format!("noise: σ {a} to {b}"),
        Ok(NuisanceKind::Blur) => format!("blur: σ {a} to {b} px (at 256 px)"),
        Ok(NuisanceKind::Contrast) => format!("contrast: factor {a} to {b}"),
        Ok(NuisanceKind::Gamma) => format!("gamma: γ {a} to {b}"),
        Ok(NuisanceKind::Rotation) => format!("rotation: {a}° to {b}°"),
        Ok(NuisanceKind::Jpeg) => format!("JPEG: quality {a} to {b}"),
        Ok(NuisanceKind::Downsample) => format!("down-sampling: factor {a} to {b}"),
        Err(_) => format!("{kind}: {a} to {b}"),
    }
}

/// The y range of the plot: the data and intervals, within `[0, 1]`, with room below for the
/// legend (`n_series` lines) when the data leave it.
fn y_range(series: &[Series]) -> (f64, f64) {
    let vals = series
        .iter()
        .flat_map(|s| s.points.iter())
        .flat_map(|p| [Some(p.y), p.lower, p.upper])
        .flatten();
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((1.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let hi = (hi + 0.02).min(1.0).max(lo + 0.05);
    let f = (0.055 * (series.len() + 1) as f64).min(0.6);
    let lo = (lo - 0.02 - (hi - lo) * f / (1.0 - f)).max(0.0);
    (
        (lo * 20.0).floor() / 20.0,
        ((hi * 20.0).ceil() / 20.0).min(1.0),
    )
}

fn format_param(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl RobustnessReport {
    /// The rows as a [`NuisanceTable`] for model `model_name`, with a severity-0 (clean) row at
    /// the start of every kind.
    pub fn table(&self, model_name: &str) -> NuisanceTable {
        let mut t = NuisanceTable::new();
        let mut last_kind: Option<&str> = None;
        for r in &self.rows {
            if last_kind != Some(r.kind.as_str()) {
                t.push(model_name, &r.kind, 0.0, &self.clean);
                last_kind = Some(r.kind.as_str());
            }
            t.push(model_name, &r.kind, r.severity as f64, &r.ci);
        }
        t
    }

    /// One series per kind, starting at the clean AUC at severity 0 (the common reference),
    /// legend with the parameter range. No error bars: seven overlapping intervals are
    /// unreadable; they are in `nuisance.csv` / `nuisance.json`.
    pub fn series(&self) -> Vec<Series> {
        let mut out: Vec<Series> = Vec::new();
        let mut kinds: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !kinds.contains(&r.kind.as_str()) {
                kinds.push(&r.kind);
            }
        }
        for k in kinds {
            let rows: Vec<&RobustnessRow> = self.rows.iter().filter(|r| r.kind == k).collect();
            let lo = rows
                .iter()
                .map(|r| r.parameter)
                .fold(f64::INFINITY, f64::min);
            let hi = rows
                .iter()
                .map(|r| r.parameter)
                .fold(f64::NEG_INFINITY, f64::max);
            let first = rows.first().map(|r| r.parameter).unwrap_or(lo);
            let last = rows.last().map(|r| r.parameter).unwrap_or(hi);
            let mut points = vec![SeriesPoint {
                x: 0.0,
                y: self.clean.auc,
                lower: None,
                upper: None,
            }];
            points.extend(rows.iter().map(|r| SeriesPoint {
                x: r.severity as f64,
                y: r.ci.auc,
                lower: None,
                upper: None,
            }));
            out.push(Series {
                label: series_label(k, first, last),
                points,
            });
        }
        out
    }

    /// Writes `nuisance.csv`, `nuisance.json` and `nuisance.png` into `dir`, atomically.
    pub fn save(&self, dir: &Path, model_name: &str) -> anyhow::Result<RobustnessFiles> {
        let files = RobustnessFiles {
            csv: dir.join("nuisance.csv"),
            json: dir.join("nuisance.json"),
            png: dir.join("nuisance.png"),
        };
        self.table(model_name).write_csv(&files.csv)?;
        let mut text =
            serde_json::to_string_pretty(self).context("serialising the robustness report")?;
        text.push('\n');
        write_atomic(&files.json, text.as_bytes())?;
        let series = self.series();
        let y_label = format!("AUC ({:.0}% CIs in nuisance.csv)", self.clean.level * 100.0);
        line_png_with_legend(
            &files.png,
            &LinePlot {
                title: &format!(
                    "{model_name}: AUC under nuisances (clean {:.3}, n = {})",
                    self.clean.auc, self.n
                ),
                x_label: "nuisance severity (0 = clean image)",
                y_label: &y_label,
                series: &series,
                y_range: Some(y_range(&series)),
            },
            LegendPosition::LowerLeft,
        )?;
        Ok(files)
    }

    /// Reads a `nuisance.json` written by [`RobustnessReport::save`].
    pub fn load_json(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

impl fmt::Display for RobustnessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "robustness: {} cases, seed {}", self.n, self.seed)?;
        writeln!(
            f,
            "{:<11} {:>8} {:>10} {:>7}  {:<15} {:>7}",
            "nuisance", "severity", "parameter", "AUC", "CI", "ΔAUC"
        )?;
        writeln!(
            f,
            "{:<11} {:>8} {:>10} {:>7.4}  {:.4}-{:.4}   {:>7}",
            "clean", 0, "-", self.clean.auc, self.clean.lower, self.clean.upper, "-"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<11} {:>8} {:>10} {:>7.4}  {:.4}-{:.4}   {:>+7.4}",
                r.kind,
                r.severity,
                format_param(r.parameter),
                r.ci.auc,
                r.ci.lower,
                r.ci.upper,
                r.delta_auc
            )?;
        }
        Ok(())
    }
}
