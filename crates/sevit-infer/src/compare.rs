//! `sevit compare`: the paired DeLong test of two models' predictions on the same cases. The
//! two `predictions.csv` files (or evaluation folders holding one) are matched by case id;
//! differing case sets or disagreeing labels are errors that list the offending ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::bail;
use sevit_metrics::{compare, read_predictions_csv, ComparisonReport, Predictions};

/// `path` itself, or `path/predictions.csv` when `path` is a folder.
pub fn predictions_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("predictions.csv")
    } else {
        path.to_path_buf()
    }
}

/// Reads the predictions of a file or evaluation folder; duplicate ids are an error.
pub fn load_predictions(path: &Path) -> anyhow::Result<Predictions> {
    let p = predictions_path(path);
    let preds = read_predictions_csv(&p)?;
    let mut seen = HashMap::new();
    for (i, id) in preds.ids.iter().enumerate() {
        if let Some(j) = seen.insert(id.as_str(), i) {
            bail!(
                "{}: case {id:?} appears twice (rows {} and {})",
                p.display(),
                j + 2,
                i + 2
            );
        }
    }
    Ok(preds)
}

pub use sevit_metrics::pairing::{pair_predictions as pair, PairedPredictions as Paired};

/// Reads two prediction files (or evaluation folders), matches them and runs the paired DeLong
/// test at `level`; models are named `name_a` / `name_b`.
pub fn compare_predictions(
    a: &Path,
    b: &Path,
    name_a: &str,
    name_b: &str,
    level: f64,
) -> anyhow::Result<ComparisonReport> {
    let pa = load_predictions(a)?;
    let pb = load_predictions(b)?;
    let (_, labels, sa, sb) = pair(&pa, &pb, name_a, name_b)?;
    compare(&labels, &sa, &sb, name_a, name_b, level).map_err(|e| {
        anyhow::Error::from(e).context(format!(
            "paired DeLong test of {} against {}",
            predictions_path(a).display(),
            predictions_path(b).display()
        ))
    })
}

/// A short model name for a predictions path: the evaluation folder name, with the run folder
/// (`RUN/eval/<stage>` → `RUN/<stage>`), or the file stem.
pub fn model_name(path: &Path) -> String {
    let dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    let Some(dir) = dir else {
        return path.display().to_string();
    };
    let leaf = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent();
    match parent
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
    {
        Some(p) if p == "eval" => {
            let run = parent.and_then(|p| p.parent()).and_then(|r| r.file_name());
            match run {
                Some(r) => format!("{}/{leaf}", r.to_string_lossy()),
                None => leaf,
            }
        }
        _ if !leaf.is_empty() => leaf,
        _ => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(ids: &[&str], labels: &[bool], scores: &[f64]) -> Predictions {
        Predictions {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            labels: labels.to_vec(),
            scores: scores.to_vec(),
        }
    }

    #[test]
    fn pairs_by_id_in_a_order() {
        let a = preds(
            &["x", "y", "z", "w"],
            &[true, false, true, false],
            &[0.9, 0.2, 0.8, 0.3],
        );
        let b = preds(
            &["w", "z", "y", "x"],
            &[false, true, false, true],
            &[0.4, 0.6, 0.1, 0.7],
        );
        let (ids, labels, sa, sb) = pair(&a, &b, "A", "B").unwrap();
        assert_eq!(ids, vec!["x", "y", "z", "w"]);
        assert_eq!(labels, vec![true, false, true, false]);
        assert_eq!(sa, vec![0.9, 0.2, 0.8, 0.3]);
        assert_eq!(sb, vec![0.7, 0.1, 0.6, 0.4]);
    }

    #[test]
    fn different_case_sets_are_an_error() {
        let a = preds(&["x", "y", "z"], &[true, false, true], &[0.9, 0.2, 0.8]);
        let b = preds(&["x", "y", "q"], &[true, false, true], &[0.9, 0.2, 0.8]);
        let e = format!("{:#}", pair(&a, &b, "A", "B").unwrap_err());
        assert!(
            e.contains("1 cases only in A (\"z\")") && e.contains("1 only in B (\"q\")"),
            "{e}"
        );
        let c = preds(&["x", "y"], &[true, false], &[0.9, 0.2]);
        let e = format!("{:#}", pair(&a, &c, "A", "C").unwrap_err());
        assert!(
            e.contains("1 cases only in A") && e.contains("0 only in C"),
            "{e}"
        );
    }

    #[test]
    fn disagreeing_labels_are_an_error() {
        let a = preds(&["x", "y", "z"], &[true, false, true], &[0.9, 0.2, 0.8]);
        let b = preds(&["x", "y", "z"], &[true, true, true], &[0.9, 0.2, 0.8]);
        let e = format!("{:#}", pair(&a, &b, "A", "B").unwrap_err());
        assert!(
            e.contains("1 cases have different labels") && e.contains("\"y\""),
            "{e}"
        );
    }

    #[test]
    fn duplicates_and_files() {
        let d = tempfile::tempdir().unwrap();
        let ev = d.path().join("runA/eval/step2");
        std::fs::create_dir_all(&ev).unwrap();
        std::fs::write(
            ev.join("predictions.csv"),
            "id,label,score\na,1,0.9\nb,0,0.1\nc,1,0.4\nd,0,0.5\n",
        )
        .unwrap();
        let other = d.path().join("b.csv");
        std::fs::write(
            &other,
            "id,label,score\nd,0,0.2\nc,1,0.8\nb,0,0.3\na,1,0.6\n",
        )
        .unwrap();
        assert_eq!(model_name(&ev), "runA/step2");
        assert_eq!(model_name(&ev.join("predictions.csv")), "runA/step2");
        let r = compare_predictions(&ev, &other, "A", "B", 0.95).unwrap();
        assert_eq!(r.n, 4);
        assert_eq!(r.test.auc_a, 0.75);
        assert_eq!(r.test.auc_b, 1.0);
        std::fs::write(&other, "id,label,score\na,1,0.2\na,1,0.8\n").unwrap();
        let e = format!("{:#}", load_predictions(&other).unwrap_err());
        assert!(e.contains("appears twice (rows 2 and 3)"), "{e}");
    }
}
