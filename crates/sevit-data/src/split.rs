//! The seeded, label-stratified, patient-grouped split, and its `split.csv` file.
//!
//! Subsets: `labeled` (the small labeled set), `fold0..fold{k-1}` (the unlabeled folds used
//! cumulatively by DISTL steps T = 1..k), `val` (optional, carved from the training images for
//! tuning), and `test` (never trained on).
//!
//! Algorithm: images are grouped by patient; each group falls into a stratum (its label, or
//! the sorted set of labels when a patient has several); within each stratum the groups are
//! shuffled with a ChaCha8 generator seeded from `(seed, stratum)` and handed out one by one
//! to the subset that is proportionally least filled relative to its target share
//! (ties: test, val, labeled, fold0, ...). So no patient is in two subsets, every subset gets
//! its share of each label up to patient granularity, and small subsets receive a patient as
//! soon as possible. Fractions: `test` is a fraction of all images; `labeled` and `val` are
//! fractions of the training pool (all non-test images); the folds share the rest equally.
//!
//! The test set can instead be given by a file prefix (Kermany's official `images/test_`) or a
//! separate manifest. **Caveat**: then the grouping by patient is applied on the training side
//! only (each patient in one training subset), and a patient id present in both the test set
//! and the training pool is only reported (warning with the count), not removed: for Kermany
//! the ids are derived from file names and it is not documented whether they are unique across
//! the official train/test split, so such collisions may be different children.
//!
//! `split.csv`: a few `# key: value` lines (format, dataset name, absolute root, positive label,
//! fold count, seed and fractions) followed by a CSV with header `file,label,patient_id,subset`;
//! `file` is relative to the root (absolute for images outside it). Rows keep the dataset
//! order. Same dataset + same config → byte-identical file.

use crate::dataset::{Dataset, Sample};
use crate::rng::{derive_seed, hash_str};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A subset of the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subset {
    /// The labeled training set.
    Labeled,
    /// Unlabeled fold `i` (0-based).
    Fold(usize),
    /// Validation images (from the training pool; for tuning only).
    Val,
    /// Test images.
    Test,
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subset::Labeled => write!(f, "labeled"),
            Subset::Fold(i) => write!(f, "fold{i}"),
            Subset::Val => write!(f, "val"),
            Subset::Test => write!(f, "test"),
        }
    }
}

impl std::str::FromStr for Subset {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Subset> {
        Ok(match s {
            "labeled" => Subset::Labeled,
            "val" => Subset::Val,
            "test" => Subset::Test,
            _ => match s.strip_prefix("fold").and_then(|n| n.parse::<usize>().ok()) {
                Some(i) => Subset::Fold(i),
                None => bail!("unknown subset {s:?} (expected labeled, fold<N>, val or test)"),
            },
        })
    }
}

/// How the test set is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum TestSelection {
    /// No test set.
    None,
    /// A stratified, patient-grouped fraction of all images.
    Fraction(f64),
    /// The images whose path relative to the dataset root starts with this prefix.
    Prefix(String),
    /// The images of another manifest CSV (labels not in the dataset are dropped).
    Manifest(PathBuf),
}

impl TestSelection {
    /// The test selection to use when none is given explicitly: the dataset's descriptor
    /// `test_prefix` when it has one, else the DISTL default (20% of the patients).
    pub fn default_for(ds: &Dataset) -> TestSelection {
        match &ds.test_prefix {
            Some(p) => TestSelection::Prefix(p.clone()),
            None => SplitConfig::default().test,
        }
    }
}

impl fmt::Display for TestSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestSelection::None => write!(f, "none"),
            TestSelection::Fraction(x) => write!(f, "fraction:{x}"),
            TestSelection::Prefix(p) => write!(f, "prefix:{p}"),
            TestSelection::Manifest(p) => write!(f, "manifest:{}", p.display()),
        }
    }
}

/// Split parameters. `Default` = DISTL: 10% labeled, 3 folds, no validation, 20% test.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitConfig {
    /// Seed of the shuffles.
    pub seed: u64,
    /// Fraction of the training pool that is labeled, in (0, 1).
    pub labeled_fraction: f64,
    /// Number of unlabeled folds, >= 1.
    pub folds: usize,
    /// Fraction of the training pool held out for validation, in [0, 1).
    pub val_fraction: f64,
    /// Test set selection.
    pub test: TestSelection,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            seed: 0,
            labeled_fraction: 0.1,
            folds: 3,
            val_fraction: 0.0,
            test: TestSelection::Fraction(0.2),
        }
    }
}

impl SplitConfig {
    /// Checks the ranges of the fractions and the fold count.
    pub fn validate(&self) -> Result<()> {
        let in_open = |x: f64| x > 0.0 && x < 1.0;
        if !in_open(self.labeled_fraction) {
            bail!(
                "labeled fraction {} is out of range: must be in (0, 1)",
                self.labeled_fraction
            );
        }
        if !(self.val_fraction >= 0.0 && self.val_fraction < 1.0) {
            bail!(
                "validation fraction {} is out of range: must be in [0, 1)",
                self.val_fraction
            );
        }
        if self.labeled_fraction + self.val_fraction >= 1.0 {
            bail!(
                "labeled fraction {} + validation fraction {} leave nothing for the unlabeled folds (sum must be < 1)",
                self.labeled_fraction,
                self.val_fraction
            );
        }
        if self.folds == 0 {
            bail!("the number of unlabeled folds must be at least 1");
        }
        match &self.test {
            TestSelection::Fraction(f) if !(*f >= 0.0 && *f < 1.0) => {
                bail!("test fraction {f} is out of range: must be in [0, 1)")
            }
            TestSelection::Prefix(p) if p.is_empty() => bail!("empty test prefix"),
            _ => Ok(()),
        }
    }
}

/// One row of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitEntry {
    /// The image.
    pub sample: Sample,
    /// Its subset.
    pub subset: Subset,
}

/// A dataset split into labeled / unlabeled folds / val / test (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Dataset name.
    pub name: String,
    /// Dataset root (absolute when created from an existing folder).
    pub root: PathBuf,
    positive: String,
    folds: usize,
    /// The configuration that produced it (test selection as text when read back).
    pub description: String,
    /// All rows, in dataset order.
    pub entries: Vec<SplitEntry>,
}

struct Group {
    members: Vec<usize>,
}

impl Split {
    /// Splits `ds` according to `cfg` (deterministic in `cfg.seed`).
    pub fn create(ds: &Dataset, cfg: &SplitConfig) -> Result<Split> {
        cfg.validate()?;
        if ds.samples.is_empty() {
            bail!("dataset {} has no images", ds.name);
        }
        // Paths as absolute and clean as the dataset readers make them, also for datasets
        // built by hand; symlinks are not resolved, so files keep the names they were listed
        // under and split.csv stays relative to the root.
        let root = crate::paths::absolute_clean(&ds.root)?;
        let labels: BTreeSet<&str> = ds.samples.iter().map(|s| s.label.as_str()).collect();
        let mut samples: Vec<Sample> = ds
            .samples
            .iter()
            .map(|s| {
                Ok(Sample {
                    path: crate::paths::absolute_clean(&s.path)?,
                    ..s.clone()
                })
            })
            .collect::<Result<_>>()?;
        let mut seen: HashSet<PathBuf> = HashSet::new();
        for s in &samples {
            if !seen.insert(s.path.clone()) {
                bail!("dataset {} lists {} twice", ds.name, s.path.display());
            }
        }
        let mut subset: Vec<Option<Subset>> = vec![None; samples.len()];

        // 1. Test images chosen outside the stratified assignment.
        let mut fixed_test = false;
        match &cfg.test {
            TestSelection::Prefix(prefix) => {
                fixed_test = true;
                let mut n = 0;
                for (i, s) in samples.iter().enumerate() {
                    if rel_file(&root, &s.path).starts_with(prefix.as_str()) {
                        subset[i] = Some(Subset::Test);
                        n += 1;
                    }
                }
                if n == 0 {
                    bail!("test prefix {prefix:?} matches no file of dataset {} (files are relative to {})", ds.name, root.display());
                }
                if n == samples.len() {
                    bail!("test prefix {prefix:?} matches every file of dataset {}: nothing left to train on", ds.name);
                }
            }
            TestSelection::Manifest(path) => {
                fixed_test = true;
                let test = Dataset::from_manifest(path, &ds.positive_label, None)
                    .with_context(|| format!("reading the test manifest {}", path.display()))?;
                let before = test.samples.len();
                let extra: Vec<Sample> = test
                    .samples
                    .into_iter()
                    .filter(|s| labels.contains(s.label.as_str()))
                    .collect();
                if extra.len() < before {
                    tracing::info!(
                        "test manifest {}: dropped {} images whose label is not in the dataset",
                        path.display(),
                        before - extra.len()
                    );
                }
                let own: HashSet<PathBuf> = samples
                    .iter()
                    .map(|s| s.path.canonicalize().unwrap_or_else(|_| s.path.clone()))
                    .collect();
                for s in extra {
                    let c = s.path.canonicalize().unwrap_or_else(|_| s.path.clone());
                    if own.contains(&c) {
                        bail!(
                            "test manifest {} lists {} which is also in the training dataset",
                            path.display(),
                            s.path.display()
                        );
                    }
                    samples.push(s);
                    subset.push(Some(Subset::Test));
                }
            }
            _ => {}
        }
        if fixed_test {
            let test_pat: HashSet<&str> = samples
                .iter()
                .zip(&subset)
                .filter(|(_, s)| **s == Some(Subset::Test))
                .map(|(s, _)| s.patient_id.as_str())
                .collect();
            let train_pat: HashSet<&str> = samples
                .iter()
                .zip(&subset)
                .filter(|(_, s)| s.is_none())
                .map(|(s, _)| s.patient_id.as_str())
                .collect();
            let both = test_pat.intersection(&train_pat).count();
            if both > 0 {
                tracing::warn!(
                    "{both} patient id(s) occur in both the given test set and the training pool; grouping by patient applies to the training subsets only (ids may collide across sources)"
                );
            }
        }

        // 2. Target shares of the stratified subsets.
        let pool_share = match cfg.test {
            TestSelection::Fraction(f) => 1.0 - f,
            _ => 1.0,
        };
        let mut targets: Vec<(Subset, f64)> = Vec::new();
        if let TestSelection::Fraction(f) = cfg.test {
            if f > 0.0 {
                targets.push((Subset::Test, f));
            }
        }
        if cfg.val_fraction > 0.0 {
            targets.push((Subset::Val, cfg.val_fraction * pool_share));
        }
        targets.push((Subset::Labeled, cfg.labeled_fraction * pool_share));
        let fold_share =
            (1.0 - cfg.labeled_fraction - cfg.val_fraction) * pool_share / cfg.folds as f64;
        for k in 0..cfg.folds {
            targets.push((Subset::Fold(k), fold_share));
        }

        // 3. Patient groups of the unassigned images, by stratum.
        let mut by_patient: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, s) in samples.iter().enumerate() {
            if subset[i].is_none() {
                by_patient.entry(s.patient_id.as_str()).or_default().push(i);
            }
        }
        let mut strata: BTreeMap<String, Vec<Group>> = BTreeMap::new();
        for (_, members) in by_patient {
            let key: BTreeSet<&str> = members.iter().map(|&i| samples[i].label.as_str()).collect();
            let key = key.into_iter().collect::<Vec<_>>().join("+");
            strata.entry(key).or_default().push(Group { members });
        }
        let mut assignment: Vec<(usize, Subset)> = Vec::new();
        for (key, mut groups) in strata {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(&[cfg.seed, hash_str(&key)]));
            groups.shuffle(&mut rng);
            let n: usize = groups.iter().map(|g| g.members.len()).sum();
            let mut filled = vec![0usize; targets.len()];
            for g in groups {
                let mut best = 0;
                let mut best_def = f64::NEG_INFINITY;
                for (t, (_, share)) in targets.iter().enumerate() {
                    let want = share * n as f64;
                    let def = (want - filled[t] as f64) / want;
                    if def > best_def {
                        best_def = def;
                        best = t;
                    }
                }
                filled[best] += g.members.len();
                for i in g.members {
                    assignment.push((i, targets[best].0));
                }
            }
        }
        for (i, s) in assignment {
            subset[i] = Some(s);
        }
        let entries: Vec<SplitEntry> = samples
            .into_iter()
            .zip(subset)
            .map(|(sample, s)| SplitEntry {
                sample,
                subset: s.expect("every image assigned"),
            })
            .collect();
        let split = Split {
            name: ds.name.clone(),
            root,
            positive: ds.positive_label.clone(),
            folds: cfg.folds,
            description: format!(
                "seed={} labeled_fraction={} folds={} val_fraction={} test={}",
                cfg.seed, cfg.labeled_fraction, cfg.folds, cfg.val_fraction, cfg.test
            ),
            entries,
        };
        split.check_classes(cfg)?;
        Ok(split)
    }

    /// Errors when a label has no image in `labeled`, in `val` (when requested) or in `test`
    /// (when there is one), or when a fold is empty; warns when a fold lacks a label.
    fn check_classes(&self, cfg: &SplitConfig) -> Result<()> {
        let mut counts: BTreeMap<(Subset, &str), usize> = BTreeMap::new();
        let mut per_label: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &self.entries {
            *counts
                .entry((e.subset, e.sample.label.as_str()))
                .or_insert(0) += 1;
            if e.subset != Subset::Test {
                *per_label.entry(e.sample.label.as_str()).or_insert(0) += 1;
            }
        }
        let mut required = vec![Subset::Labeled];
        if cfg.val_fraction > 0.0 {
            required.push(Subset::Val);
        }
        if !matches!(cfg.test, TestSelection::None | TestSelection::Fraction(0.0)) {
            required.push(Subset::Test);
        }
        let all_labels: BTreeSet<&str> = self
            .entries
            .iter()
            .map(|e| e.sample.label.as_str())
            .collect();
        for &sub in &required {
            for &label in &all_labels {
                if counts.get(&(sub, label)).copied().unwrap_or(0) == 0 {
                    bail!(
                        "the split leaves label {label:?} with no image in subset {sub} ({} training-pool images of that label); \
                         use a larger fraction, fewer folds or more data",
                        per_label.get(label).copied().unwrap_or(0)
                    );
                }
            }
        }
        for k in 0..self.folds {
            let sub = Subset::Fold(k);
            let n: usize = all_labels
                .iter()
                .map(|l| counts.get(&(sub, *l)).copied().unwrap_or(0))
                .sum();
            if n == 0 {
                bail!("the split leaves unlabeled fold {k} empty; use fewer folds or more data");
            }
            for &label in &all_labels {
                if counts.get(&(sub, label)).copied().unwrap_or(0) == 0
                    && per_label.get(label).copied().unwrap_or(0) > 0
                {
                    tracing::warn!("unlabeled fold {k} has no image labelled {label:?}");
                }
            }
        }
        Ok(())
    }

    /// The images of one subset, in dataset order.
    pub fn samples(&self, s: Subset) -> Vec<Sample> {
        self.entries
            .iter()
            .filter(|e| e.subset == s)
            .map(|e| e.sample.clone())
            .collect()
    }

    /// The unlabeled images of folds `0..t` (DISTL step T uses `unlabeled_upto(T)`).
    pub fn unlabeled_upto(&self, t: usize) -> Vec<Sample> {
        self.entries
            .iter()
            .filter(|e| matches!(e.subset, Subset::Fold(k) if k < t))
            .map(|e| e.sample.clone())
            .collect()
    }

    /// The fold of each image of [`Split::unlabeled_upto`]`(t)`, in the same order.
    pub fn unlabeled_folds_upto(&self, t: usize) -> Vec<usize> {
        self.entries
            .iter()
            .filter_map(|e| match e.subset {
                Subset::Fold(k) if k < t => Some(k),
                _ => None,
            })
            .collect()
    }

    /// Number of unlabeled folds.
    pub fn num_folds(&self) -> usize {
        self.folds
    }

    /// The positive label.
    pub fn positive_label(&self) -> &str {
        &self.positive
    }

    /// Image counts per subset and label (`subset -> label -> n`), subsets in order labeled,
    /// fold0.., val, test.
    pub fn counts(&self) -> BTreeMap<Subset, BTreeMap<String, usize>> {
        let mut m: BTreeMap<Subset, BTreeMap<String, usize>> = BTreeMap::new();
        for e in &self.entries {
            *m.entry(e.subset)
                .or_default()
                .entry(e.sample.label.clone())
                .or_insert(0) += 1;
        }
        m
    }

    /// A plain-text table of image and patient counts per subset and label.
    pub fn summary_table(&self) -> String {
        let labels: BTreeSet<&str> = self
            .entries
            .iter()
            .map(|e| e.sample.label.as_str())
            .collect();
        let mut subsets: Vec<Subset> = self
            .entries
            .iter()
            .map(|e| e.subset)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        subsets.sort();
        let mut out = format!("{:<10}", "subset");
        for l in &labels {
            out += &format!(" {:>12}", l);
        }
        out += &format!(" {:>8} {:>9}\n", "images", "patients");
        let counts = self.counts();
        for sub in subsets {
            out += &format!("{:<10}", sub.to_string());
            let c = &counts[&sub];
            for l in &labels {
                out += &format!(" {:>12}", c.get(*l).copied().unwrap_or(0));
            }
            let n: usize = c.values().sum();
            let pats: HashSet<&str> = self
                .entries
                .iter()
                .filter(|e| e.subset == sub)
                .map(|e| e.sample.patient_id.as_str())
                .collect();
            out += &format!(" {:>8} {:>9}\n", n, pats.len());
        }
        out += &format!("{:<10}", "total");
        for l in &labels {
            out += &format!(
                " {:>12}",
                self.entries.iter().filter(|e| e.sample.label == *l).count()
            );
        }
        let pats: HashSet<&str> = self
            .entries
            .iter()
            .map(|e| e.sample.patient_id.as_str())
            .collect();
        out += &format!(" {:>8} {:>9}\n", self.entries.len(), pats.len());
        out
    }

    /// Writes `split.csv` atomically (see the module docs for the format).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut head = String::new();
        head += "# sevit-split: 1\n";
        head += &format!("# dataset: {}\n", one_line(&self.name));
        head += &format!("# root: {}\n", one_line(&self.root.to_string_lossy()));
        head += &format!("# positive: {}\n", one_line(&self.positive));
        head += &format!("# folds: {}\n", self.folds);
        head += &format!("# config: {}\n", one_line(&self.description));
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        w.write_record(["file", "label", "patient_id", "subset"])?;
        for e in &self.entries {
            let file = rel_file(&self.root, &e.sample.path);
            w.write_record([
                file.as_str(),
                e.sample.label.as_str(),
                e.sample.patient_id.as_str(),
                e.subset.to_string().as_str(),
            ])?;
        }
        let body = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        crate::util::write_atomic(path, &bytes)
            .with_context(|| format!("writing split {}", path.display()))
    }

    /// Reads a `split.csv` written by [`Split::write_csv`]. Errors name the file and line.
    pub fn read_csv(path: &Path) -> Result<Split> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read split file {}", path.display()))?;
        let mut meta: BTreeMap<String, String> = BTreeMap::new();
        let mut body_start = 0;
        let mut header_lines = 0u64;
        for line in text.split_inclusive('\n') {
            let Some(rest) = line.strip_prefix('#') else {
                break;
            };
            header_lines += 1;
            body_start += line.len();
            if let Some((k, v)) = rest.trim().split_once(':') {
                meta.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let at = |line: u64| format!("split file {} line {}", path.display(), line);
        if meta.get("sevit-split").map(String::as_str) != Some("1") {
            bail!(
                "{}: not a sevit split file (missing `# sevit-split: 1` header)",
                at(1)
            );
        }
        let get = |k: &str| {
            meta.get(k).cloned().with_context(|| {
                format!(
                    "split file {}: missing `# {k}:` header line",
                    path.display()
                )
            })
        };
        let root = PathBuf::from(get("root")?);
        let positive = get("positive")?;
        let folds: usize = get("folds")?
            .parse()
            .with_context(|| format!("split file {}: bad `# folds:` value", path.display()))?;
        let mut rdr = csv::ReaderBuilder::new().from_reader(&text.as_bytes()[body_start..]);
        let headers = rdr.headers().with_context(|| at(header_lines + 1))?.clone();
        if headers.iter().collect::<Vec<_>>() != ["file", "label", "patient_id", "subset"] {
            bail!(
                "{}: header must be file,label,patient_id,subset",
                at(header_lines + 1)
            );
        }
        let mut entries = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for rec in rdr.records() {
            let rec =
                rec.with_context(|| format!("malformed row in split file {}", path.display()))?;
            let line = header_lines + rec.position().map(|p| p.line()).unwrap_or(0);
            let (file, label, pid, sub) = (&rec[0], &rec[1], &rec[2], &rec[3]);
            if file.is_empty() || label.is_empty() || pid.is_empty() {
                bail!("{}: empty field", at(line));
            }
            if !seen.insert(file.to_string()) {
                bail!("{}: duplicate entry {file}", at(line));
            }
            let subset: Subset = sub.parse().with_context(|| at(line))?;
            if let Subset::Fold(k) = subset {
                if k >= folds {
                    bail!("{}: {subset} but the split has {folds} folds", at(line));
                }
            }
            let sample = Sample {
                path: root.join(file),
                label: label.to_string(),
                target: if label == positive { 1.0 } else { 0.0 },
                patient_id: pid.to_string(),
            };
            entries.push(SplitEntry { sample, subset });
        }
        if entries.is_empty() {
            bail!("split file {} has no rows", path.display());
        }
        if !entries.iter().any(|e| e.sample.label == positive) {
            bail!(
                "split file {}: unknown positive label {positive:?}: no row has it",
                path.display()
            );
        }
        Ok(Split {
            name: meta.get("dataset").cloned().unwrap_or_default(),
            root,
            positive,
            folds,
            description: meta.get("config").cloned().unwrap_or_default(),
            entries,
        })
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `path` relative to `root` with `/` separators, or the full path when outside `root`.
fn rel_file(root: &Path, path: &Path) -> String {
    crate::paths::relative_to(root, path)
}

#[cfg(test)]
mod tests;
