//! PNG plots with plotters' bitmap backend: the ROC curve, AUC against the DISTL step T (or any
//! x) with CI error bars, AUC per nuisance severity, and the reliability diagram.
//!
//! Text needs no system font library: the DejaVu Sans font shipped by the `dejavu` crate is
//! embedded in the binary and registered with plotters' `ab_glyph` renderer on first use. The
//! image is rendered into memory, encoded as PNG with the `image` crate and written atomically.
//! Every plot is [`PLOT_SIZE`] pixels.

use std::path::Path;

use anyhow::Context;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use sevit_metrics::io::write_atomic;
use sevit_metrics::{AucCi, Calibration, CiMethod, NuisanceTable, RocPoint};

use crate::font::{ensure_font, FONT};

/// Width and height in pixels of every PNG written here.
pub const PLOT_SIZE: (u32, u32) = (900, 720);

/// Okabe–Ito colour-blind-safe palette (yellow left out: unreadable on white), then black.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// Colour of the `i`-th series.
fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Turns a plotters error (whose type borrows the backend) into an anyhow error.
fn perr<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> anyhow::Error {
    move |e| anyhow::anyhow!("plotting ({what}): {e}")
}

/// Renders with `draw` into an RGB buffer of [`PLOT_SIZE`] and writes it as PNG to `path`.
fn render_png(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    ensure_font()?;
    let (w, h) = PLOT_SIZE;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr("background"))?;
        draw(&root).with_context(|| format!("drawing {}", path.display()))?;
        root.present().map_err(perr("present"))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).context("RGB buffer of the wrong size")?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .context("encoding PNG")?;
    write_atomic(path, png.get_ref()).with_context(|| format!("saving plot {}", path.display()))?;
    tracing::info!(path = %path.display(), "wrote plot");
    Ok(())
}

/// Axes over the unit square with a grid, the axis names `(x, y)`, and the dashed diagonal
/// labelled `diagonal` in the legend (ROC curves and reliability diagrams).
fn unit_square_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    diagonal: &str,
) -> anyhow::Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>>
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 28))
        .margin(24)
        .x_label_area_size(64)
        .y_label_area_size(76)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(perr("axes"))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 22))
        .label_style((FONT, 17))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(perr("mesh"))?;
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            8,
            6,
            grey.stroke_width(2),
        ))
        .map_err(perr("diagonal"))?
        .label(diagonal)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 28, y)], grey.stroke_width(2)));
    Ok(chart)
}

/// The legend box of `chart`'s labelled series at `position`.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .margin(12)
        .legend_area_size(40)
        .label_font((FONT, 17))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(perr("legend"))
}

/// Formats an axis tick: integers without decimals, others with up to 3.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// One ROC curve to draw: the legend shows `label`, the AUC and its CI.
#[derive(Debug, Clone)]
pub struct RocSeries {
    /// Legend label (model name).
    pub label: String,
    /// The curve, as returned by [`sevit_metrics::roc_curve`].
    pub points: Vec<RocPoint>,
    /// The AUC and its confidence interval.
    pub ci: AucCi,
}

fn ci_text(ci: &AucCi) -> String {
    let method = match ci.method {
        CiMethod::Delong => "DeLong",
        CiMethod::Bootstrap { .. } => "bootstrap",
    };
    format!(
        "AUC {:.3} ({:.0}% CI {:.3}–{:.3}, {method})",
        ci.auc,
        ci.level * 100.0,
        ci.lower,
        ci.upper
    )
}

/// ROC curves with the chance diagonal; axes "1 − specificity" and "sensitivity"; the legend
/// gives each curve's AUC and CI.
///
/// # Errors
/// No curve, a curve without points, or a drawing/I-O failure.
pub fn roc_png(path: &Path, title: &str, curves: &[RocSeries]) -> anyhow::Result<()> {
    anyhow::ensure!(
        !curves.is_empty(),
        "no ROC curve to plot into {}",
        path.display()
    );
    for c in curves {
        anyhow::ensure!(
            !c.points.is_empty(),
            "ROC curve {:?} has no points",
            c.label
        );
    }
    render_png(path, |root| {
        let mut chart = unit_square_chart(
            root,
            title,
            ("1 − specificity", "sensitivity"),
            "chance (AUC 0.5)",
        )?;
        for (i, c) in curves.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().map(|p| (p.fpr, p.tpr)),
                    col.stroke_width(3),
                ))
                .map_err(perr("curve"))?
                .label(format!("{}: {}", c.label, ci_text(&c.ci)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 28, y)], col.stroke_width(3))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// One point of a line series, with an optional error bar from `lower` to `upper`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// x value (e.g. the DISTL step T, or a severity).
    pub x: f64,
    /// y value (e.g. the AUC).
    pub y: f64,
    /// Lower end of the error bar.
    pub lower: Option<f64>,
    /// Upper end of the error bar.
    pub upper: Option<f64>,
}

/// A named line series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points, in drawing order (sorted by x for a line).
    pub points: Vec<SeriesPoint>,
}

/// Where the legend goes inside the plot area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegendPosition {
    /// Top left corner.
    UpperLeft,
    /// Top right corner.
    UpperRight,
    /// Bottom left corner.
    #[default]
    LowerLeft,
    /// Bottom right corner.
    LowerRight,
}

/// A line plot of several series with optional error bars.
#[derive(Debug, Clone, Copy)]
pub struct LinePlot<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// x axis label.
    pub x_label: &'a str,
    /// y axis label.
    pub y_label: &'a str,
    /// The series.
    pub series: &'a [Series],
    /// Fixed y range; `None` fits the data and error bars, with a margin and room for the legend.
    pub y_range: Option<(f64, f64)>,
}

/// Draws a [`LinePlot`] (lines, points, error bars, legend) as a PNG with the legend at the
/// lower left; see [`line_png_with_legend`].
pub fn line_png(path: &Path, plot: &LinePlot<'_>) -> anyhow::Result<()> {
    line_png_with_legend(path, plot, LegendPosition::LowerLeft)
}

/// Draws a [`LinePlot`] as a PNG with the legend at `legend`.
///
/// # Errors
/// No series, a series without points, a non-finite value, or a drawing/I-O failure.
pub fn line_png_with_legend(
    path: &Path,
    plot: &LinePlot<'_>,
    legend: LegendPosition,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !plot.series.is_empty(),
        "no series to plot into {}",
        path.display()
    );
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in plot.series {
        anyhow::ensure!(!s.points.is_empty(), "series {:?} has no points", s.label);
        for p in &s.points {
            anyhow::ensure!(
                p.x.is_finite() && p.y.is_finite(),
                "series {:?} has a non-finite point ({}, {})",
                s.label,
                p.x,
                p.y
            );
            xs.push(p.x);
            ys.push(p.y);
            ys.extend(
                p.lower
                    .iter()
                    .chain(p.upper.iter())
                    .filter(|v| v.is_finite()),
            );
        }
    }
    if let Some((lo, hi)) = plot.y_range {
        anyhow::ensure!(
            lo.is_finite() && hi.is_finite() && lo < hi,
            "invalid y range {lo}..{hi}"
        );
    }
    let (xmin, xmax) = min_max(&xs);
    let xpad = if xmax > xmin {
        (xmax - xmin) * 0.06
    } else {
        0.5
    };
    let (ymin, ymax) = match plot.y_range {
        Some(r) => r,
        None => {
            let (lo, hi) = min_max(&ys);
            let span = if hi > lo { hi - lo } else { 0.1 };
            // Leave room for the legend (about 7% of the height per row) on its side.
            let legend_room = span * 0.07 * (plot.series.len() as f64 + 0.5);
            match legend {
                LegendPosition::UpperLeft | LegendPosition::UpperRight => {
                    (lo - span * 0.08, hi + span * 0.08 + legend_room)
                }
                LegendPosition::LowerLeft | LegendPosition::LowerRight => {
                    (lo - span * 0.08 - legend_room, hi + span * 0.08)
                }
            }
        }
    };
    // Whole-number x values (steps T) get one tick per value when there are few.
    let integral = xs.iter().all(|x| (x - x.round()).abs() < 1e-9);
    let n_xticks = if integral && xmax - xmin <= 12.0 {
        (xmax - xmin) as usize + 1
    } else {
        8
    };
    render_png(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(plot.title, (FONT, 28))
            .margin(24)
            .x_label_area_size(64)
            .y_label_area_size(80)
            .build_cartesian_2d((xmin - xpad)..(xmax + xpad), ymin..ymax)
            .map_err(perr("axes"))?;
        chart
            .configure_mesh()
            .x_desc(plot.x_label)
            .y_desc(plot.y_label)
            .axis_desc_style((FONT, 22))
            .label_style((FONT, 17))
            .x_labels(n_xticks)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .light_line_style(RGBColor(242, 242, 242))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(perr("mesh"))?;
        // Offset the series sideways a little so that error bars at the same x do not overlap.
        let k = plot.series.len();
        let dodge = if k > 1 && xmax > xmin {
            (xmax - xmin) * 0.012
        } else {
            0.0
        };
        for (i, s) in plot.series.iter().enumerate() {
            let col = color(i);
            let off = dodge * (i as f64 - (k as f64 - 1.0) / 2.0);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|p| (p.x + off, p.y)),
                    col.stroke_width(3),
                ))
                .map_err(perr("line"))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (28, 0)], col.stroke_width(3))
                        + Circle::new((14, 0), 5, col.filled())
                });
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new((p.x + off, p.y), 5, col.filled())),
                )
                .map_err(perr("points"))?;
            chart
                .draw_series(s.points.iter().filter_map(|p| match (p.lower, p.upper) {
                    (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() => Some(
                        ErrorBar::new_vertical(p.x + off, lo, p.y, hi, col.stroke_width(2), 12),
                    ),
                    _ => None,
                }))
                .map_err(perr("error bars"))?;
        }
        draw_legend(
            &mut chart,
            match legend {
                LegendPosition::UpperLeft => SeriesLabelPosition::UpperLeft,
                LegendPosition::UpperRight => SeriesLabelPosition::UpperRight,
                LegendPosition::LowerLeft => SeriesLabelPosition::LowerLeft,
                LegendPosition::LowerRight => SeriesLabelPosition::LowerRight,
            },
        )?;
        Ok(())
    })
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// AUC against the DISTL step T (0 = the initial model), one series per method (e.g. "DISTL",
/// "supervised"), with CI error bars; axes "DISTL step T" and "AUC", legend at the upper
/// left (the y range is extended to make room for it).
pub fn auc_vs_t_png(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    line_png_with_legend(
        path,
        &LinePlot {
            title,
            x_label: "DISTL step T",
            y_label: "AUC",
            series,
            y_range: None,
        },
        LegendPosition::UpperLeft,
    )
}

/// AUC per nuisance severity (one series per nuisance kind or model), CI error bars; axes
/// "nuisance severity" and "AUC", legend at the lower left (the y range is extended to make
/// room for it).
pub fn nuisance_png(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    line_png(
        path,
        &LinePlot {
            title,
            x_label: "nuisance severity",
            y_label: "AUC",
            series,
            y_range: None,
        },
    )
}

/// Reliability diagram: observed fraction of positives against the mean predicted probability
/// of each non-empty bin, one series per model, with the diagonal of perfect calibration; the
/// legend gives ECE and Brier score.
///
/// # Errors
/// No series, or a drawing/I-O failure.
pub fn reliability_png(
    path: &Path,
    title: &str,
    series: &[(String, Calibration)],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !series.is_empty(),
        "no calibration to plot into {}",
        path.display()
    );
    render_png(path, |root| {
        let mut chart = unit_square_chart(
            root,
            title,
            ("mean predicted probability", "observed fraction positive"),
            "perfect calibration",
        )?;
        for (i, (label, cal)) in series.iter().enumerate() {
            let col = color(i);
            let pts: Vec<(f64, f64)> = cal
                .bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.mean_prob, b.frac_pos))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), col.stroke_width(3)))
                .map_err(perr("curve"))?
                .label(format!(
                    "{label}: ECE {:.3}, Brier {:.3}",
                    cal.ece, cal.brier
                ))
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (28, 0)], col.stroke_width(3))
                        + Circle::new((14, 0), 5, col.filled())
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 5, col.filled())))
                .map_err(perr("points"))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// AUC against nuisance severity of a [`NuisanceTable`] (one line per model and kind, CI error
/// bars) as a PNG.
///
/// # Errors
/// An empty table; drawing or writing fails.
pub fn nuisance_table_png(table: &NuisanceTable, path: &Path, title: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !table.rows.is_empty(),
        "the nuisance table is empty: nothing to plot into {}",
        path.display()
    );
    let series = nuisance_series(table);
    line_png(
        path,
        &LinePlot {
            title,
            x_label: "nuisance severity",
            y_label: "AUC",
            series: &series,
            y_range: None,
        },
    )
}

/// The rows of a [`NuisanceTable`] as plot series: one per (model, kind) in first-seen order,
/// points sorted by severity, with the CI as error bars. The label is `"model: kind"` (just `kind` when there is one model).
pub fn nuisance_series(table: &NuisanceTable) -> Vec<Series> {
    let one_model = table.rows.iter().all(|r| r.model == table.rows[0].model);
    let mut out: Vec<(String, String, Series)> = Vec::new();
    for r in &table.rows {
        let idx = match out
            .iter()
            .position(|(m, k, _)| *m == r.model && *k == r.kind)
        {
            Some(i) => i,
            None => {
                let label = if one_model {
                    r.kind.clone()
                } else {
                    format!("{}: {}", r.model, r.kind)
                };
                out.push((
                    r.model.clone(),
                    r.kind.clone(),
                    Series {
                        label,
                        points: Vec::new(),
                    },
                ));
                out.len() - 1
            }
        };
        out[idx].2.points.push(SeriesPoint {
            x: r.severity,
            y: r.auc,
            lower: Some(r.lower),
            upper: Some(r.upper),
        });
    }
    out.into_iter()
        .map(|(_, _, mut s)| {
            s.points.sort_by(|a, b| a.x.total_cmp(&b.x));
            s
        })
        .collect()
}
