//! The one test that reads the real data in `../shared/data` (skipped with a note when absent):
//! every descriptor in `data-manifests/` loads, Kermany splits by its official test prefix with
//! patients grouped, and one real image loads to `[0, 1]`.

use sevit_data::{load_gray, Dataset, Split, SplitConfig, Subset, TestSelection};
use std::collections::HashMap;
use std::path::PathBuf;

#[test]
fn descriptors_of_shared_data_load_and_kermany_splits() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = repo.join("../shared/data");
    if !shared
        .join("kermany_pediatric_224src/manifest.csv")
        .is_file()
    {
        eprintln!(
            "note: {} absent; skipping the shared-data test",
            shared.display()
        );
        return;
    }
    let dir = repo.join("data-manifests");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map(|x| x == "toml").unwrap_or(false) {
            let ds =
                Dataset::from_descriptor(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            assert!(ds.samples.len() >= 3, "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 5);

    let ds = Dataset::from_descriptor(&dir.join("kermany_pediatric_224src.toml")).unwrap();
    assert_eq!(ds.samples.len(), 2024);
    assert_eq!(ds.positive_label, "pneumonia");
    let cfg = SplitConfig {
        test: TestSelection::Prefix(ds.test_prefix.clone().unwrap()),
        val_fraction: 0.05,
        ..Default::default()
    };
    let split = Split::create(&ds, &cfg).unwrap();
    assert_eq!(split.samples(Subset::Test).len(), 624);
    let mut owner: HashMap<&str, Subset> = HashMap::new();
    for e in split.entries.iter().filter(|e| e.subset != Subset::Test) {
        if let Some(prev) = owner.insert(&e.sample.patient_id, e.subset) {
            assert_eq!(
                prev, e.subset,
                "train patient {} in two subsets",
                e.sample.patient_id
            );
        }
    }
    let img = load_gray(&split.samples(Subset::Labeled)[0].path, 64).unwrap();
    assert_eq!((img.width, img.height), (64, 64));
    let (lo, hi) = img.min_max();
    assert!(lo >= 0.0 && hi <= 1.0 && hi > lo);
}
