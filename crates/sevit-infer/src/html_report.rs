//! `report.html`: one self-contained page per evaluation, viewable offline (no script, no
//! external file): the AUC with its intervals, the ROC curve with the fixed, Youden and
//! target-sensitivity operating points marked, the reliability diagram with the number of
//! cases per bin, the threshold table, the class names, and attention grids of the most
//! telling cases (embedded PNGs).

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use sevit_metrics::{EvalReport, ThresholdMetrics};

use sevit_distill::layout::write_atomic;

/// One attention grid shown in the report.
#[derive(Debug, Clone)]
pub struct AttentionCase {
    /// Case id.
    pub id: String,
    /// True label.
    pub label: String,
    /// The model's probability of the positive class.
    pub probability: f64,
    /// Why it is shown (e.g. "highest-scored pneumonia").
    pub why: String,
    /// The grid, PNG bytes.
    pub png: Vec<u8>,
}

/// What the page shows besides the report's numbers.
#[derive(Debug, Clone)]
pub struct HtmlReport<'a> {
    /// Page title.
    pub title: String,
    /// The metrics.
    pub report: &'a EvalReport,
    /// Positive class name.
    pub positive: String,
    /// Names of the labels counted as negative.
    pub negatives: Vec<String>,
    /// Attention grids.
    pub attention: Vec<AttentionCase>,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

/// Square plot frame: data `[0, 1]²` onto `SIZE` px with margins for the axes.
const SIZE: f64 = 300.0;
const MARGIN: f64 = 48.0;

fn px(x: f64) -> f64 {
    MARGIN + x.clamp(0.0, 1.0) * SIZE
}

fn py(y: f64) -> f64 {
    MARGIN + (1.0 - y.clamp(0.0, 1.0)) * SIZE
}

fn svg_frame(out: &mut String, title: &str, xlabel: &str, ylabel: &str) {
    let (w, h) = (SIZE + 2.0 * MARGIN, SIZE + 2.0 * MARGIN);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}">
<rect x="{m}" y="{m}" width="{s}" height="{s}" fill="#fff" stroke="#333"/>
"##,
        t = escape(title),
        m = MARGIN,
        s = SIZE
    );
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{y1}" stroke="#ddd"/><line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#ddd"/>
<text x="{x}" y="{ty}" font-size="11" text-anchor="middle">{v:.1}</text><text x="{tx}" y="{yy}" font-size="11" text-anchor="end">{v:.1}</text>
"##,
            x = px(v),
            y = py(v),
            y0 = py(0.0),
            y1 = py(1.0),
            x0 = px(0.0),
            x1 = px(1.0),
            ty = py(0.0) + 15.0,
            tx = px(0.0) - 5.0,
            yy = py(v) + 4.0,
        );
    }
    let _ = write!(
        out,
        r##"<text x="{cx}" y="{by}" font-size="12" text-anchor="middle">{xl}</text>
<text x="14" y="{cy}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {cy})">{yl}</text>
<text x="{cx}" y="20" font-size="13" font-weight="bold" text-anchor="middle">{t}</text>
<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 4"/>
"##,
        cx = MARGIN + SIZE / 2.0,
        cy = MARGIN + SIZE / 2.0,
        by = py(0.0) + 34.0,
        xl = escape(xlabel),
        yl = escape(ylabel),
        t = escape(title),
        x0 = px(0.0),
        y0 = py(0.0),
        x1 = px(1.0),
        y1 = py(1.0),
    );
}

/// The operating points marked on the ROC curve: name, colour, metrics.
fn operating_points(r: &EvalReport) -> Vec<(String, &'static str, ThresholdMetrics)> {
    let t = &r.thresholds;
    let mut v = vec![
        ("fixed".to_string(), "#d62728", t.fixed),
        ("Youden".to_string(), "#2ca02c", t.youden),
    ];
    if let Some(ts) = &t.target_sensitivity {
        v.push((
            format!("sensitivity ≥ {}", num(ts.target, 2)),
            "#9467bd",
            ts.metrics,
        ));
    }
    v
}

fn roc_svg(r: &EvalReport) -> String {
    let mut s = String::new();
    svg_frame(
        &mut s,
        &format!("ROC, AUC {}", num(r.auc, 3)),
        "1 − specificity (false positive rate)",
        "sensitivity (true positive rate)",
    );
    let points: Vec<String> = r
        .roc
        .iter()
        .map(|p| format!("{:.2},{:.2}", px(p.fpr), py(p.tpr)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
        points.join(" ")
    );
    for (name, colour, m) in operating_points(r) {
        if !(m.sensitivity.is_finite() && m.specificity.is_finite()) {
            continue;
        }
        let (x, y) = (px(1.0 - m.specificity), py(m.sensitivity));
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.2}" cy="{y:.2}" r="5" fill="{colour}" stroke="#000"><title>{} threshold {}: sensitivity {}, specificity {}</title></circle>"##,
            escape(&name),
            num(m.threshold, 3),
            num(m.sensitivity, 3),
            num(m.specificity, 3)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn reliability_svg(r: &EvalReport) -> String {
    let mut s = String::new();
    svg_frame(
        &mut s,
        "Reliability",
        "predicted probability",
        "observed fraction positive",
    );
    for b in &r.calibration.bins {
        let (x0, x1) = (px(b.lower), px(b.upper));
        if b.count == 0 || !b.frac_pos.is_finite() {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#999">0</text>"##,
                (x0 + x1) / 2.0,
                py(0.0) - 4.0
            );
            continue;
        }
        let y = py(b.frac_pos);
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4" fill-opacity="0.35" stroke="#1f77b4"><title>{}–{}: {} cases, mean predicted {}, observed {}</title></rect>
<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#ff7f0e"/>
<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"##,
            x0 + 1.0,
            (x1 - x0 - 2.0).max(1.0),
            py(0.0) - y,
            num(b.lower, 1),
            num(b.upper, 1),
            b.count,
            num(b.mean_prob, 3),
            num(b.frac_pos, 3),
            px(b.mean_prob),
            py(b.frac_pos),
            (x0 + x1) / 2.0,
            (y - 4.0).max(MARGIN + 9.0),
            b.count
        );
    }
    s.push_str("</svg>\n");
    s
}

fn threshold_table(r: &EvalReport) -> String {
    let mut s = String::from(
        "<table><thead><tr><th>operating point</th><th>threshold</th><th>sensitivity</th>\
         <th>specificity</th><th>PPV</th><th>NPV</th><th>accuracy</th><th>F1</th>\
         <th>TP</th><th>FP</th><th>TN</th><th>FN</th></tr></thead><tbody>\n",
    );
    for (name, colour, m) in operating_points(r) {
        let _ = writeln!(
            s,
            "<tr><td><span class=\"dot\" style=\"background:{colour}\"></span>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&name),
            num(m.threshold, 4),
            num(m.sensitivity, 3),
            num(m.specificity, 3),
            num(m.ppv, 3),
            num(m.npv, 3),
            num(m.accuracy, 3),
            num(m.f1, 3),
            m.tp,
            m.fp,
            m.tn,
            m.fn_
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;\
max-width:1100px;margin:24px auto;padding:0 16px;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}td:first-child,th:first-child{text-align:left}\
.plots{display:flex;flex-wrap:wrap;gap:16px}.dot{display:inline-block;width:10px;height:10px;\
border-radius:5px;margin-right:6px;border:1px solid #000}\
figure{margin:12px 0}figcaption{font-size:.9em;color:#444}img{max-width:100%}\
.meta td{text-align:left}";

/// Renders the page.
pub fn render(page: &HtmlReport<'_>) -> String {
    let r = page.report;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(&page.title)
    );
    let ci = &r.ci;
    let _ = writeln!(
        s,
        "<p><b>AUC {}</b> ({}% DeLong CI {}–{}){}, {} cases: {} <b>{}</b> (positive), {} {} \
         (negative). Brier {}, ECE {}.</p>",
        num(r.auc, 4),
        num(ci.level * 100.0, 0),
        num(ci.lower, 4),
        num(ci.upper, 4),
        r.bootstrap_ci
            .map(|b| format!("; bootstrap CI {}–{}", num(b.lower, 4), num(b.upper, 4)))
            .unwrap_or_default(),
        r.n,
        r.n_pos,
        escape(&page.positive),
        r.n_neg,
        escape(&page.negatives.join(", ")),
        num(r.calibration.brier, 4),
        num(r.calibration.ece, 4)
    );
    s.push_str("<table class=\"meta\">\n");
    let _ = writeln!(s, "<tr><td>model</td><td>{}</td></tr>", escape(&r.model));
    let _ = writeln!(s, "<tr><td>cases</td><td>{}</td></tr>", escape(&r.run));
    for (k, v) in &r.info {
        let v = match v {
            serde_json::Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(s, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(&v));
    }
    s.push_str("</table>\n<h2>Discrimination and calibration</h2>\n<div class=\"plots\">\n");
    s.push_str(&roc_svg(r));
    s.push_str(&reliability_svg(r));
    s.push_str(
        "</div>\n<p>Left: the ROC curve; the dots mark the operating points of the table \
         below. Right: cases binned by predicted probability; bar height is the observed \
         fraction positive, the orange dot the bin's mean prediction, the number above a bar \
         the cases in it. A calibrated model's dots lie on the diagonal.</p>\n\
         <h2>Operating points</h2>\n",
    );
    s.push_str(&threshold_table(r));
    let _ = writeln!(
        s,
        "<p>A case is called {} when its probability is at least the threshold.</p>",
        escape(&page.positive)
    );
    if !page.attention.is_empty() {
        s.push_str(
            "<h2>Attention</h2>\n<p>Last-block attention of the CLS token: the mean over \
             heads, the patches holding most of its mass, and each head.</p>\n",
        );
        for a in &page.attention {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&a.png);
            let _ = writeln!(
                s,
                "<figure><img alt=\"attention grid of {id}\" src=\"data:image/png;base64,{b64}\">\
                 <figcaption>{why}: {id}, label {label}, P({pos}) = {p}</figcaption></figure>",
                id = escape(&a.id),
                why = escape(&a.why),
                label = escape(&a.label),
                pos = escape(&page.positive),
                p = num(a.probability, 3),
            );
        }
    }
    s.push_str("</body></html>\n");
    s
}

/// Writes the page to `path` atomically.
pub fn write_html_report(path: &Path, page: &HtmlReport<'_>) -> anyhow::Result<()> {
    write_atomic(path, render(page).as_bytes())
}

/// The cases whose attention the report shows: the highest- and lowest-scored case of each
/// class (at most 4 distinct indices), with why each is shown.
pub fn telling_cases(labels: &[bool], probs: &[f64], positive: &str) -> Vec<(usize, String)> {
    let by = |want: bool, highest: bool| {
        labels
            .iter()
            .zip(probs)
            .enumerate()
            .filter(|(_, (&l, p))| l == want && p.is_finite())
            .max_by(|a, b| {
                let o = a.1 .1.total_cmp(b.1 .1);
                if highest {
                    o
                } else {
                    o.reverse()
                }
            })
            .map(|(i, _)| i)
    };
    let mut out: Vec<(usize, String)> = Vec::new();
    for (want, highest, why) in [
        (true, true, format!("highest-scored {positive} case")),
        (true, false, format!("lowest-scored {positive} case")),
        (false, true, "highest-scored negative case".to_string()),
        (false, false, "lowest-scored negative case".to_string()),
    ] {
        if let Some(i) = by(want, highest) {
            if !out.iter().any(|(j, _)| *j == i) {
                out.push((i, why));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevit_metrics::{evaluate, EvalOptions};

    #[test]
    fn page_is_self_contained_and_shows_every_part() {
        let labels = [true, true, true, false, false, false, true, false];
        let probs = [0.9, 0.8, 0.4, 0.3, 0.6, 0.1, 0.7, 0.2];
        let report = evaluate(&labels, &probs, &EvalOptions::default()).unwrap();
        let page = HtmlReport {
            title: "step3 <student> on test".into(),
            report: &report,
            positive: "pneumonia".into(),
            negatives: vec!["normal".into()],
            attention: vec![AttentionCase {
                id: "a&b.png".into(),
                label: "pneumonia".into(),
                probability: 0.9,
                why: "highest-scored pneumonia case".into(),
                png: vec![0x89, b'P', b'N', b'G'],
            }],
        };
        let html = render(&page);
        assert!(html.contains("step3 &lt;student&gt; on test"));
        assert!(html.contains("pneumonia") && html.contains("normal"));
        assert!(html.contains("data:image/png;base64,iVBORw=="));
        assert!(html.contains("a&amp;b.png"));
        // three operating points on the curve and in the table; per non-empty calibration
        // bin a bar and a dot; a frame per plot
        assert!(html.contains("Youden") && html.contains("sensitivity ≥ 0.90"));
        assert_eq!(html.matches("<tr><td><span class=\"dot\"").count(), 3);
        let nonempty = report
            .calibration
            .bins
            .iter()
            .filter(|b| b.count > 0)
            .count();
        assert_eq!(html.matches("<circle cx").count(), 3 + nonempty);
        assert_eq!(html.matches("<rect x=").count(), 2 + nonempty);
        // nothing is fetched from elsewhere
        for needle in ["http://", "https://", "<script", "<link", "src=\"/", "url("] {
            let outside = html
                .match_indices(needle)
                .filter(|(i, _)| !html[..*i].ends_with("xmlns=\""))
                .count();
            assert_eq!(outside, 0, "{needle}");
        }
    }

    #[test]
    fn telling_cases_are_the_extremes_of_each_class() {
        let labels = [true, true, false, false, true];
        let probs = [0.9, 0.2, 0.7, 0.1, 0.5];
        let picked: Vec<usize> = telling_cases(&labels, &probs, "p")
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(picked, [0, 1, 2, 3]);
        // one positive only: it is both extremes, shown once
        let picked = telling_cases(&[true, false, false], &[0.4, 0.2, 0.3], "p");
        assert_eq!(picked.len(), 3);
    }
}
