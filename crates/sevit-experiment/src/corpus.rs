//! The pretraining corpus: a patient-disjoint share of a dataset's training part reserved for
//! self-supervised pretraining (one share for every seed, never in any seed's split), plus
//! extra image pools.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use sevit_data::rng::{derive_seed, hash_str};
use sevit_data::{Dataset, Sample};

/// A dataset cut in two: the reserved share and what the curriculum may use.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// Images of the reserved patients (pretraining only).
    pub corpus: Vec<Sample>,
    /// The dataset without them (what every seed splits).
    pub curriculum: Dataset,
}

/// Reserves whole patients of `ds`'s training part (files outside its `test_prefix`) until
/// `fraction` of its training images are reserved, in an order drawn with `seed`.
///
/// # Errors
/// `fraction` outside `[0, 1)`, or the dataset root cannot be made absolute.
pub fn reserve(ds: &Dataset, fraction: f64, seed: u64) -> anyhow::Result<Reserved> {
    anyhow::ensure!(
        (0.0..1.0).contains(&fraction),
        "reserve fraction {fraction} must be in [0, 1)"
    );
    // The split's own rule for its test files: the path relative to the root, both made
    // absolute and clean first.
    let root = sevit_data::paths::absolute_clean(&ds.root)?;
    let is_test = |s: &Sample| match &ds.test_prefix {
        Some(prefix) => sevit_data::paths::absolute_clean(&s.path)
            .map(|p| sevit_data::paths::relative_to(&root, &p).starts_with(prefix.as_str()))
            .unwrap_or(false),
        None => false,
    };
    let mut per_patient: BTreeMap<&str, usize> = BTreeMap::new();
    for s in ds.samples.iter().filter(|s| !is_test(s)) {
        *per_patient.entry(s.patient_id.as_str()).or_default() += 1;
    }
    let n_train: usize = per_patient.values().sum();
    let want = (fraction * n_train as f64).round() as usize;
    let mut order: Vec<(&str, usize)> = per_patient.into_iter().collect();
    order.sort_by_key(|(p, _)| derive_seed(&[seed, hash_str(p)]));
    let mut chosen: BTreeSet<&str> = BTreeSet::new();
    let mut got = 0;
    for (p, n) in order {
        if got >= want {
            break;
        }
        chosen.insert(p);
        got += n;
    }
    let (corpus, kept): (Vec<Sample>, Vec<Sample>) = ds
        .samples
        .iter()
        .cloned()
        .partition(|s| !is_test(s) && chosen.contains(s.patient_id.as_str()));
    Ok(Reserved {
        corpus,
        curriculum: Dataset {
            samples: kept,
            ..ds.clone()
        },
    })
}

/// Writes the corpus as a manifest (`file,label,patient_id`, absolute paths) for the record.
///
/// # Errors
/// The write fails.
pub fn write_manifest(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut out = String::from("file,label,patient_id\n");
    for s in samples {
        let _ = writeln!(out, "{},{},{}", s.path.display(), s.label, s.patient_id);
    }
    sevit_fs::write_atomic(path, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dataset() -> Dataset {
        let mut samples = Vec::new();
        for p in 0..20 {
            for k in 0..2 {
                let split = if p < 4 { "test" } else { "train" };
                samples.push(Sample {
                    path: PathBuf::from(format!("/d/images/{split}_{p}_{k}.png")),
                    label: if p % 2 == 0 { "a" } else { "b" }.into(),
                    target: (p % 2) as f32,
                    patient_id: format!("P{p}"),
                });
            }
        }
        Dataset {
            name: "t".into(),
            // not clean: the test files are still recognised by their prefix
            root: PathBuf::from("/x/../d"),
            positive_label: "b".into(),
            samples,
            test_prefix: Some("images/test_".into()),
            source: None,
            license: None,
        }
    }

    #[test]
    fn reserves_whole_training_patients_only_and_the_same_for_a_seed() {
        let ds = dataset();
        let r = reserve(&ds, 0.25, 7).unwrap();
        assert_eq!(r.corpus.len(), 8, "a quarter of 32 training images");
        assert_eq!(
            r.corpus.len() + r.curriculum.samples.len(),
            ds.samples.len()
        );
        let reserved: BTreeSet<&str> = r.corpus.iter().map(|s| s.patient_id.as_str()).collect();
        assert!(r
            .curriculum
            .samples
            .iter()
            .all(|s| !reserved.contains(s.patient_id.as_str())));
        assert!(r
            .corpus
            .iter()
            .all(|s| !s.path.to_string_lossy().contains("/test_")));
        let again = reserve(&ds, 0.25, 7).unwrap();
        assert_eq!(again.corpus, r.corpus);
        let other = reserve(&ds, 0.25, 8).unwrap();
        assert_ne!(other.corpus, r.corpus);
        assert!(reserve(&ds, 0.0, 7).unwrap().corpus.is_empty());
        assert!(reserve(&ds, 1.0, 7).is_err());
    }
}
