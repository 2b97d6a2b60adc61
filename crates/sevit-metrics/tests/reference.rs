//! AUC, DeLong CI and the paired DeLong test against independent reference values.
//!
//! `tests/reference/delong_cases.json` was written by `tests/reference/delong_reference.py`, an
//! O(m·n) pairwise-kernel implementation of DeLong et al. (1988) in numpy (nothing shared with
//! the Rust midrank algorithm), with scikit-learn's `roc_auc_score` recorded alongside. The test
//! vectors have many ties.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sevit_metrics::{delong_ci, delong_paired, roc_auc, roc_curve, trapezoid_area};

const TOL: f64 = 1e-9;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/delong_cases.json")
}

fn load(path: &std::path::Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(name: &str, what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "{name}: {what} = {got}, reference {want} (|diff| = {:e})",
        (got - want).abs()
    );
}

#[test]
fn matches_reference_values() {
    let fixture = load(&fixture_path());
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() == 1)
            .collect();
        let a = floats(&case["scores_a"]);
        let b = floats(&case["scores_b"]);
        let e = &case["expected"];
        let f = |k: &str| e[k].as_f64().unwrap_or_else(|| panic!("{name}: no {k}"));

        // AUC: Mann–Whitney, against the pairwise reference and scikit-learn.
        let auc_a = roc_auc(&labels, &a).unwrap();
        let auc_b = roc_auc(&labels, &b).unwrap();
        close(name, "auc_a", auc_a, f("auc_a"));
        close(name, "auc_b", auc_b, f("auc_b"));
        close(name, "auc_a vs sklearn", auc_a, f("sklearn_auc_a"));
        close(name, "auc_b vs sklearn", auc_b, f("sklearn_auc_b"));
        close(
            name,
            "trapezoid area",
            trapezoid_area(&roc_curve(&labels, &a).unwrap()),
            f("auc_a"),
        );

        // DeLong CI of each model.
        for (scores, var_key, ci_key) in [(&a, "var_a", "ci_a"), (&b, "var_b", "ci_b")] {
            let ci = delong_ci(&labels, scores, fixture["level"].as_f64().unwrap()).unwrap();
            let want = floats(&e[ci_key]);
            close(name, var_key, ci.variance, f(var_key));
            close(name, &format!("{ci_key}.lower"), ci.lower, want[0]);
            close(name, &format!("{ci_key}.upper"), ci.upper, want[1]);
        }

        // Paired test.
        let t = delong_paired(&labels, &a, &b).unwrap();
        close(name, "diff", t.diff, f("diff"));
        close(name, "var_diff", t.var_diff, f("var_diff"));
        close(name, "z", t.z, f("z"));
        close(name, "p_value", t.p_value, f("p_value"));
        let want = floats(&e["ci_diff"]);
        close(name, "ci_diff.lower", t.ci_diff.0, want[0]);
        close(name, "ci_diff.upper", t.ci_diff.1, want[1]);
    }
}

/// The fixture is what the committed script produces: rerun it with the project's Python
/// (`SEVIT_TORCH_PYTHON`, which has numpy) and compare every DeLong value. Skipped, with a
/// note, where that Python is not configured.
#[test]
fn fixture_is_reproducible_by_the_script() {
    let Ok(python) = std::env::var("SEVIT_TORCH_PYTHON") else {
        eprintln!("SEVIT_TORCH_PYTHON not set: skipping the regeneration check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cases.json");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/delong_reference.py");
    let status = Command::new(&python).arg(&script).arg(&out).status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("running {python} {}: {other:?}", script.display()),
    }
    let fresh = load(&out);
    let committed = load(&fixture_path());
    for (x, y) in fresh["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(committed["cases"].as_array().unwrap())
    {
        assert_eq!(x["labels"], y["labels"]);
        assert_eq!(x["scores_a"], y["scores_a"]);
        assert_eq!(x["scores_b"], y["scores_b"]);
        for key in [
            "auc_a", "auc_b", "var_a", "var_b", "diff", "var_diff", "z", "p_value",
        ] {
            let (u, v) = (
                x["expected"][key].as_f64().unwrap(),
                y["expected"][key].as_f64().unwrap(),
            );
            assert!(
                (u - v).abs() <= 1e-12,
                "{}: {key} regenerated {u}, committed {v}",
                x["name"]
            );
        }
    }
}

/// Published value: the CT ratings of Hanley & McNeil, "The meaning and use of the area under a
/// receiver operating characteristic (ROC) curve", Radiology 143:29–36 (1982), Table 1 — 58
/// normal and 51 abnormal cases rated 1 (definitely normal) to 5 (definitely abnormal); the
/// paper's trapezoidal (= Wilcoxon) area is 0.893. Exactly: 2642 / 2958.
#[test]
fn hanley_mcneil_ct_ratings() {
    let normal = [33, 6, 6, 11, 2];
    let abnormal = [3, 2, 2, 11, 33];
    let mut labels = Vec::new();
    let mut scores = Vec::new();
    for (rating, (&n0, &n1)) in normal.iter().zip(&abnormal).enumerate() {
        for _ in 0..n0 {
            labels.push(false);
            scores.push(rating as f64 + 1.0);
        }
        for _ in 0..n1 {
            labels.push(true);
            scores.push(rating as f64 + 1.0);
        }
    }
    let auc = roc_auc(&labels, &scores).unwrap();
    assert_eq!(format!("{auc:.3}"), "0.893");
    assert!((auc - 2642.0 / 2958.0).abs() < 1e-15);
    let ci = delong_ci(&labels, &scores, 0.95).unwrap();
    assert_eq!(ci.auc, auc);
    assert!(ci.lower < auc && auc < ci.upper);
}
