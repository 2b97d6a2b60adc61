//! Tests of the experiment report.

use super::*;
use sevit_metrics::write_predictions_csv;

/// Scores that separate the classes better as `quality` grows.
fn scores(labels: &[bool], quality: f64, salt: u64) -> Vec<f64> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let noise = (((i as u64 * 2654435761 + salt * 97) % 1000) as f64) / 1000.0;
            let v = quality * f64::from(u8::from(l)) + noise;
            v / (1.0 + quality)
        })
        .collect()
}

fn write_exp(dir: &Path, seeds: &[u64]) -> Vec<bool> {
    let labels: Vec<bool> = (0..80).map(|i| i % 3 != 0).collect();
    let ids: Vec<String> = (0..80).map(|i| format!("img{i}.png")).collect();
    for &s in seeds {
        for t in 0..=2usize {
            let q = 0.2 + 0.3 * t as f64;
            let p = dir.join(format!("seed-{s}/eval/distl-T{t}/predictions.csv"));
            write_predictions_csv(&p, &ids, &labels, &scores(&labels, q, s), "pos", 0.5).unwrap();
            if t > 0 {
                let p = dir.join(format!("seed-{s}/eval/supervised-T{t}/predictions.csv"));
                // reversed case order: the report must align by id
                let mut idr = ids.clone();
                let mut lr = labels.clone();
                let mut sr = scores(&labels, q * 0.5, s + 11);
                idr.reverse();
                lr.reverse();
                sr.reverse();
                write_predictions_csv(&p, &idr, &lr, &sr, "pos", 0.5).unwrap();
            }
        }
    }
    labels
}

#[test]
fn collects_summarizes_and_writes() {
    let d = tempfile::tempdir().unwrap();
    write_exp(d.path(), &[0, 1, 2]);
    std::fs::create_dir_all(d.path().join("seed-0/eval/other")).unwrap();
    let entries = collect(d.path()).unwrap();
    assert_eq!(entries.len(), 3 * 5);
    let r = summarize(&entries, 0.95).unwrap();
    assert_eq!(r.seeds, vec![0, 1, 2]);
    // supervised T=0 is the initial model
    let auc = |s, arm, t| {
        r.models
            .iter()
            .find(|m| m.seed == s && m.arm == arm && m.t == t)
            .unwrap()
            .auc
            .auc
    };
    assert_eq!(auc(1, Arm::Supervised, 0), auc(1, Arm::Distl, 0));
    assert_eq!(r.distl_vs_supervised.len(), 3 * 2);
    assert_eq!(r.distl_vs_initial.len(), 3 * 2);
    for p in &r.distl_vs_supervised {
        // aligned by id: the paired AUCs equal the separately computed ones
        assert!((p.test.auc_b - auc(p.seed, Arm::Supervised, p.t)).abs() < 1e-12);
        assert!((p.test.auc_a - auc(p.seed, Arm::Distl, p.t)).abs() < 1e-12);
    }
    let row = r
        .aggregate
        .iter()
        .find(|a| a.arm == Arm::Distl && a.t == 2)
        .unwrap();
    let v: Vec<f64> = (0..3).map(|s| auc(s, Arm::Distl, 2)).collect();
    assert!((row.auc.mean - v.iter().sum::<f64>() / 3.0).abs() < 1e-12);
    assert_eq!(row.auc.n, 3);
    // DISTL improves with T and beats the weaker supervised scores here
    assert_eq!(r.targets[1].met, 3);
    assert_eq!(r.targets[2].met, 3);
    let md = r.to_markdown(&MarkdownOptions {
        title: "Results".into(),
        plot: Some("auc_vs_t.png".into()),
        ..Default::default()
    });
    assert!(md.contains("| 2 | 0.") && md.contains("DISTL T=2 vs supervised T=2"));
    assert!(
        md.contains("## Summary") && md.contains("in 6 of 6 (seed, T) comparisons"),
        "{md}"
    );
    assert!(md.contains("the claim is **shown** over 3 seed(s)"), "{md}");
    assert!(md.contains("met in every seed: yes"), "{md}");
    assert!(r.claim.as_ref().is_some_and(|c| c.met && c.seeds == 3));
    assert!(!md.contains("labeled-only control") && r.distl_vs_control.is_empty());
    assert_eq!(r.auc_series().len(), 2);
    let out = d.path().join("out");
    r.write_files(&out).unwrap();
    for f in ["results.json", "models.csv", "paired.csv", "auc_vs_t.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let back: ExperimentResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(back.models.len(), r.models.len());
    assert_eq!(r.models_csv().lines().count(), 1 + r.models.len());
}

#[test]
fn the_labeled_only_control_is_an_optional_third_arm() {
    let d = tempfile::tempdir().unwrap();
    let labels = write_exp(d.path(), &[0, 1]);
    let ids: Vec<String> = (0..labels.len()).map(|i| format!("img{i}.png")).collect();
    for s in [0u64, 1] {
        for t in 1..=2usize {
            // a control that separates the classes better than DISTL at every T
            let p = d
                .path()
                .join(format!("seed-{s}/eval/control-T{t}/predictions.csv"));
            write_predictions_csv(&p, &ids, &labels, &scores(&labels, 3.0, s + 5), "pos", 0.5)
                .unwrap();
        }
    }
    let r = summarize(&collect(d.path()).unwrap(), 0.95).unwrap();
    let auc = |s, arm, t| {
        r.models
            .iter()
            .find(|m| m.seed == s && m.arm == arm && m.t == t)
            .map(|m| m.auc.auc)
    };
    assert_eq!(auc(0, Arm::Control, 0), auc(0, Arm::Distl, 0));
    assert_eq!(r.distl_vs_control.len(), 2 * 2);
    for p in &r.distl_vs_control {
        assert!((p.test.auc_b - auc(p.seed, Arm::Control, p.t).unwrap()).abs() < 1e-12);
        assert!(p.test.diff < 0.0, "{p:?}");
    }
    let md = r.to_markdown(&MarkdownOptions::default());
    assert!(
        md.contains("| T | DISTL AUC | supervised AUC | labeled-only control AUC |"),
        "{md}"
    );
    assert!(md.contains("DISTL T=2 vs control T=2"), "{md}");
    assert!(
        md.contains(
            "labeled-only control (as many more updates on the labeled images alone) in 0 of 4"
        ),
        "{md}"
    );
    assert_eq!(r.auc_series().len(), 3);
    assert_eq!(r.paired_csv().lines().count(), 1 + 3 * 4);
    // the per-seed table lists the control from T = 1 on
    assert_eq!(md.lines().filter(|l| l.contains("| control |")).count(), 4);
}

#[test]
fn errors_are_clear() {
    let d = tempfile::tempdir().unwrap();
    let e = collect(d.path()).unwrap_err().to_string();
    assert!(e.contains("no predictions"), "{e}");
    assert!(collect(&d.path().join("missing")).is_err());
    // the error of summarising after writing one model's predictions on cases `ids`
    let after_writing = |model: &str, ids: &[&str], scores: &[f64]| {
        write_predictions_csv(
            &d.path()
                .join(format!("seed-3/eval/{model}/predictions.csv")),
            ids,
            &[true, false, true, false],
            scores,
            "pos",
            0.5,
        )
        .unwrap();
        format!(
            "{:#}",
            summarize(&collect(d.path()).unwrap(), 0.95).unwrap_err()
        )
    };
    // a seed without its initial model
    let e = after_writing("distl-T1", &["a", "b", "x", "y"], &[0.9, 0.1, 0.6, 0.4]);
    assert!(e.contains("seed 3") && e.contains("distl-T0"), "{e}");
    // different cases in the two models
    let e = after_writing("distl-T0", &["a", "c", "x", "y"], &[0.9, 0.1, 0.3, 0.4]);
    assert!(e.contains("not on the same cases"), "{e}");
}

#[test]
fn report_with_sections_and_attention() {
    let d = tempfile::tempdir().unwrap();
    let exp = d.path().join("exp");
    write_exp(&exp, &[4]);
    let docs = d.path().join("docs");
    for t in 0..=2 {
        let p = docs.join(format!("results/attention/T{t}/img1.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"png").unwrap();
    }
    std::fs::write(exp.join("setup.md"), "## Setup\n\nconfig here\n").unwrap();
    let r = write_report(&ReportSpec {
        exp: exp.clone(),
        out: docs.join("results.md"),
        assets: docs.join("results"),
        title: "DISTL on test data".into(),
        declared_seeds: 3,
        preamble: vec![exp.join("setup.md")],
        appendix: vec![],
        attention: Some(docs.join("results/attention")),
        level: 0.95,
        criteria: Default::default(),
    })
    .unwrap();
    assert_eq!(r.seeds, vec![4]);
    let md = std::fs::read_to_string(docs.join("results.md")).unwrap();
    assert!(md.starts_with("# DISTL on test data"));
    assert!(md.contains("## Setup"));
    assert!(
        md.contains(
            "over the 1 seed(s) run so far; provisional, the decision is taken over all 3 declared"
        ),
        "{md}"
    );
    assert!(md.contains("](results/auc_vs_t.png)"), "{md}");
    assert!(md.contains("](results/attention/T2/img1.png)"), "{md}");
    let e = write_report(&ReportSpec {
        preamble: vec![exp.join("nope.md")],
        exp,
        out: docs.join("r2.md"),
        assets: docs.join("r2"),
        title: "x".into(),
        declared_seeds: 0,
        appendix: vec![],
        attention: None,
        level: 0.95,
        criteria: Default::default(),
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("nope.md"));
}

#[test]
fn links_are_relative_to_the_markdown() {
    let d = tempfile::tempdir().unwrap();
    let (docs, img) = (
        d.path().join("docs"),
        d.path().join("runs/exp/attention/T1/a.png"),
    );
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::write(&img, b"png").unwrap();
    assert_eq!(relative_to(&img, &docs), "../runs/exp/attention/T1/a.png");
    assert_eq!(
        relative_to(&docs.join("missing.png"), &docs),
        docs.join("missing.png").to_string_lossy()
    );
}

#[test]
fn mean_sd() {
    let m = MeanSd::of(&[1.0, 2.0, 3.0]);
    assert_eq!((m.mean, m.sd, m.n), (2.0, 1.0, 3));
    assert_eq!(MeanSd::of(&[0.5]).sd, 0.0);
}

fn vs_initial(seed: u64, diff: f64, p_value: f64) -> PairedResult {
    PairedResult {
        seed,
        t: 3,
        label: format!("DISTL T=3 vs initial (T=0), seed {seed}"),
        test: sevit_metrics::PairedTest {
            auc_a: 0.5 + diff,
            auc_b: 0.5,
            diff,
            var_diff: 1e-4,
            z: diff / 1e-2,
            p_value,
            ci_diff: (diff - 0.02, diff + 0.02),
            level: 0.95,
        },
    }
}

#[test]
fn the_claim_is_decided_by_the_declared_criteria_not_the_stricter_per_seed_target() {
    let c = Criteria::default();
    // mean +0.035, each seed above with p < 0.05, one seed under +0.03: shown
    let seeds = [vs_initial(0, 0.02, 0.01), vs_initial(1, 0.05, 0.001)];
    let d = ClaimDecision::of(2, &seeds.iter().collect::<Vec<_>>(), &c);
    assert!(d.met && d.seeds_above == 2 && (d.mean_gain - 0.035).abs() < 1e-12);
    // a large mean with one seed not significant: not shown
    let seeds = [vs_initial(0, 0.01, 0.2), vs_initial(1, 0.09, 0.001)];
    let d = ClaimDecision::of(2, &seeds.iter().collect::<Vec<_>>(), &c);
    assert!(!d.met && d.seeds_above == 1);
    // every seed significant but the mean below the declared gain: not shown
    let seeds = [vs_initial(0, 0.01, 0.01), vs_initial(1, 0.02, 0.01)];
    assert!(!ClaimDecision::of(2, &seeds.iter().collect::<Vec<_>>(), &c).met);
    // a seed without its last step scored: not shown
    let seeds = [vs_initial(0, 0.09, 0.001)];
    assert!(!ClaimDecision::of(2, &seeds.iter().collect::<Vec<_>>(), &c).met);
}
