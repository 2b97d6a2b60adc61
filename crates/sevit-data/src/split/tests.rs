//! Tests of [`super`] (`split.rs`).

use super::*;
use std::collections::HashMap;

/// A dataset of `n_pat` patients (some with 2 images), ~40% positive, files not on disk.
fn fake(n_pat: usize, prefix_every: usize) -> Dataset {
    let mut samples = Vec::new();
    for p in 0..n_pat {
        let label = if p % 5 < 2 { "pos" } else { "neg" };
        let imgs = if p % 3 == 0 { 2 } else { 1 };
        for k in 0..imgs {
            let pre = if prefix_every > 0 && p % prefix_every == 0 {
                "test_"
            } else {
                "train_"
            };
            samples.push(Sample {
                path: PathBuf::from(format!("/data/x/{pre}{p}_{k}.png")),
                label: label.into(),
                target: if label == "pos" { 1.0 } else { 0.0 },
                patient_id: format!("P{p}"),
            });
        }
    }
    Dataset {
        name: "fake".into(),
        root: PathBuf::from("/data/x"),
        positive_label: "pos".into(),
        samples,
        test_prefix: None,
        source: None,
        license: None,
    }
}

fn patients_disjoint(split: &Split) {
    let mut owner: HashMap<&str, Subset> = HashMap::new();
    for e in &split.entries {
        if let Some(prev) = owner.insert(&e.sample.patient_id, e.subset) {
            assert_eq!(
                prev, e.subset,
                "patient {} in two subsets",
                e.sample.patient_id
            );
        }
    }
}

#[test]
fn default_split_is_grouped_stratified_and_proportional() {
    let ds = fake(600, 0);
    let split = Split::create(&ds, &SplitConfig::default()).unwrap();
    patients_disjoint(&split);
    let n = ds.samples.len() as f64;
    let c = split.counts();
    let total = |s: Subset| c.get(&s).map(|m| m.values().sum::<usize>()).unwrap_or(0) as f64;
    assert!((total(Subset::Test) / n - 0.2).abs() < 0.02);
    assert!((total(Subset::Labeled) / n - 0.08).abs() < 0.015);
    for k in 0..3 {
        assert!((total(Subset::Fold(k)) / n - 0.24).abs() < 0.02);
    }
    // Stratified: the positive share is about the same in each subset.
    for (sub, m) in &c {
        let pos = *m.get("pos").unwrap_or(&0) as f64;
        let all: usize = m.values().sum();
        assert!((pos / all as f64 - 0.4).abs() < 0.08, "{sub}: {m:?}");
    }
    assert_eq!(
        split.unlabeled_upto(2).len() as f64,
        total(Subset::Fold(0)) + total(Subset::Fold(1))
    );
    assert!(split.unlabeled_upto(0).is_empty());
    // The fold of each of those images, in the same order.
    let folds = split.unlabeled_folds_upto(2);
    assert_eq!(folds.len(), split.unlabeled_upto(2).len());
    for (s, f) in split.unlabeled_upto(2).iter().zip(&folds) {
        let e = split
            .entries
            .iter()
            .find(|e| e.sample.path == s.path)
            .unwrap();
        assert_eq!(e.subset, Subset::Fold(*f));
    }
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let ds = fake(200, 0);
    let d = tempfile::tempdir().unwrap();
    let cfg = SplitConfig {
        val_fraction: 0.1,
        ..Default::default()
    };
    let a = d.path().join("a.csv");
    let b = d.path().join("b.csv");
    Split::create(&ds, &cfg).unwrap().write_csv(&a).unwrap();
    Split::create(&ds, &cfg).unwrap().write_csv(&b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = d.path().join("c.csv");
    Split::create(&ds, &SplitConfig { seed: 1, ..cfg })
        .unwrap()
        .write_csv(&c)
        .unwrap();
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn csv_round_trip() {
    let ds = fake(120, 0);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("run/split.csv");
    let split = Split::create(
        &ds,
        &SplitConfig {
            val_fraction: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    split.write_csv(&p).unwrap();
    let back = Split::read_csv(&p).unwrap();
    assert_eq!(back.entries, split.entries);
    assert_eq!(back.num_folds(), 3);
    assert_eq!(back.positive_label(), "pos");
    assert!(!back.samples(Subset::Val).is_empty());
}

#[test]
fn prefix_test_keeps_train_patients_grouped() {
    let ds = fake(300, 4);
    let cfg = SplitConfig {
        test: TestSelection::Prefix("test_".into()),
        ..Default::default()
    };
    let split = Split::create(&ds, &cfg).unwrap();
    patients_disjoint(&split);
    for e in &split.entries {
        let is_test = e
            .sample
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("test_");
        assert_eq!(is_test, e.subset == Subset::Test);
    }
    let err = Split::create(
        &ds,
        &SplitConfig {
            test: TestSelection::Prefix("nope_".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("matches no file"));
}

#[test]
fn fractions_out_of_range_are_errors() {
    let ds = fake(50, 0);
    for cfg in [
        SplitConfig {
            labeled_fraction: 0.0,
            ..Default::default()
        },
        SplitConfig {
            labeled_fraction: 1.2,
            ..Default::default()
        },
        SplitConfig {
            val_fraction: -0.1,
            ..Default::default()
        },
        SplitConfig {
            labeled_fraction: 0.6,
            val_fraction: 0.5,
            ..Default::default()
        },
        SplitConfig {
            test: TestSelection::Fraction(1.0),
            ..Default::default()
        },
        SplitConfig {
            folds: 0,
            ..Default::default()
        },
    ] {
        let err = format!("{:#}", Split::create(&ds, &cfg).unwrap_err());
        assert!(
            err.contains("range") || err.contains("folds") || err.contains("< 1"),
            "{err}"
        );
    }
}

#[test]
fn a_class_left_empty_is_an_error() {
    // 2 positive patients only: labeled (10%) cannot get one after test and folds... force it
    // with many folds.
    let mut ds = fake(40, 0);
    let mut seen = 0;
    ds.samples.retain(|s| {
        if s.label == "pos" {
            seen += 1;
            seen <= 1
        } else {
            true
        }
    });
    let err = format!(
        "{:#}",
        Split::create(&ds, &SplitConfig::default()).unwrap_err()
    );
    assert!(
        err.contains("no image in subset") && err.contains("\"pos\""),
        "{err}"
    );
}

#[test]
fn read_csv_errors_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.csv");
    let head = "# sevit-split: 1\n# dataset: d\n# root: /r\n# positive: pos\n# folds: 2\nfile,label,patient_id,subset\n";
    std::fs::write(
        &p,
        format!("{head}a.png,pos,p1,labeled\nb.png,neg,p2,fold7\n"),
    )
    .unwrap();
    let err = format!("{:#}", Split::read_csv(&p).unwrap_err());
    assert!(err.contains("line 8") && err.contains("fold7"), "{err}");
    std::fs::write(
        &p,
        format!("{head}a.png,pos,p1,labeled\na.png,neg,p2,fold0\n"),
    )
    .unwrap();
    let err = format!("{:#}", Split::read_csv(&p).unwrap_err());
    assert!(err.contains("line 8") && err.contains("duplicate"), "{err}");
    std::fs::write(&p, format!("{head}a.png,pos,p1,training\n")).unwrap();
    let err = format!("{:#}", Split::read_csv(&p).unwrap_err());
    assert!(
        err.contains("line 7") && err.contains("unknown subset"),
        "{err}"
    );
}
