//! An experiment protocol end to end on synthetic 32 px phantoms with the micro model: the
//! shared backbone (reserved corpus, DINO pretraining, gate), the split, DISTL, the supervised
//! baselines, the labeled-only control, an ablation and the SSL + fine-tuning arm, the
//! evaluations and the report; then a rerun that does nothing, the same without checkpoints (a
//! fresh checkout), a seed cut off without its checkpoints that reruns to the same predictions,
//! a backbone that does not match its fingerprint, and a changed protocol that is refused.

use std::collections::BTreeSet;
use std::path::Path;

use sevit_data::{Split, Subset};
use sevit_experiment::runner::{Ledger, Runner, RunnerOptions};

fn write_protocol(dir: &Path, descriptor: &Path, epochs_note: &str) -> std::path::PathBuf {
    let config = sevit_suite::repo_root().join("configs").join("micro.toml");
    let text = format!(
        r#"# {epochs_note}
name = "flow"
title = "experiment flow"
seeds = [3]
config = "{config}"
set = ["threads=2", "optim.epochs=1", "pretrain.epochs=2", "pretrain.self_supervised_epochs=1"]
out = "exp"
docs = "docs"

[data]
dataset = "{descriptor}"
folds = 2
labeled_fraction = 0.2
val_fraction = 0.15

[backbone]
reserve_fraction = 0.2
reserve_seed = 1
gate = {{ max_loss_ratio = 1.5, min_probe_gain = -1.0, probe_k = 5 }}

[baselines.ssl_finetune]
set = ["pretrain.self_supervised_epochs=1"]

[[ablation]]
name = "no-self-training"
set = ["distl.self_training=false"]

[criteria]
min_mean_gain = 0.03
alpha = 0.05

[report]
attention = true
robustness = true
"#,
        config = config.display(),
        descriptor = descriptor.display(),
    );
    let p = dir.join("protocol.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_protocol_runs_end_to_end_resumes_and_keeps_its_directory() {
    let _g = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let synth = sevit_data::SynthConfig {
        size: 32,
        seed: 5,
        difficulty: 0.0,
        ..Default::default()
    };
    let descriptor = sevit_data::synth::generate(&tmp.path().join("data"), 120, &synth).unwrap();
    let protocol = write_protocol(tmp.path(), &descriptor, "first");

    let mut runner = Runner::open(&protocol, RunnerOptions::default()).unwrap();
    let plan = runner.plan();
    let results = runner.run_all().unwrap();
    let exp = tmp.path().join("exp");
    let ledger = Ledger::load(&exp.join("ledger.json")).unwrap();
    let done: Vec<&str> = ledger.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(done, plan.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        plan.contains(&"seed-3/ssl-finetune-T2".to_string()),
        "{plan:?}"
    );

    // The reserved corpus never enters the split.
    let corpus = std::fs::read_to_string(exp.join("backbone/corpus.csv")).unwrap();
    let reserved: BTreeSet<String> = corpus
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert!(!reserved.is_empty());
    let split = Split::read_csv(&exp.join("seed-3/run/split.csv")).unwrap();
    assert!(split
        .entries
        .iter()
        .all(|e| !reserved.contains(&e.sample.path.display().to_string())));
    assert!(!split.samples(Subset::Val).is_empty());

    // Typed outcomes on disk: the gate, the audit of each step, every arm's predictions.
    let gate: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exp.join("backbone/gate.json")).unwrap())
            .unwrap();
    assert!(gate["ln_k"].as_f64().unwrap() > 4.0, "{gate}");
    assert!(gate["probe_auc"].as_f64().unwrap().is_finite(), "{gate}");
    for t in 1..=2 {
        let audit = sevit_distill::audit::read_audit(
            &exp.join(format!("seed-3/run/step{t}/pseudo_labels.csv")),
        )
        .unwrap();
        let folds: BTreeSet<usize> = audit.iter().map(|r| r.fold).collect();
        assert_eq!(folds, (0..t).collect(), "step {t} audits folds 0..{t}");
        for name in [
            format!("distl-T{t}"),
            format!("distl-teacher-T{t}"),
            format!("supervised-T{t}"),
            format!("control-T{t}"),
            format!("ablation-no-self-training-T{t}"),
            format!("ssl-finetune-T{t}"),
        ] {
            for sub in ["eval", "eval-val"] {
                let p = exp.join(format!("seed-3/{sub}/{name}/predictions.csv"));
                assert!(p.is_file(), "{}", p.display());
            }
        }
        assert!(exp
            .join(format!("seed-3/eval/ssl-finetune-vs-distl-T{t}.json"))
            .is_file());
    }
    assert_eq!(results.seeds, vec![3]);
    let md = std::fs::read_to_string(tmp.path().join("docs/results.md")).unwrap();
    for section in [
        "## Setup",
        "## Backbone gate",
        "## Each ingredient, in numbers",
        "## Which ingredient fails",
        "## Pseudo-label audit",
        "## Other arms against DISTL",
        "## Robustness to image nuisances",
    ] {
        assert!(md.contains(section), "results.md lacks {section}");
    }
    assert!(tmp.path().join("docs/results/results.json").is_file());
    // The report copies the robustness tables from the run into its assets.
    assert!(tmp
        .path()
        .join("docs/results/robustness/nuisance-T2.csv")
        .is_file());
    assert!(!md.contains("(not measured yet)"), "{md}");
    // A finished run judges every ingredient, in the page and in diagnosis.json.
    assert!(!md.contains("| not measured yet |"), "{md}");
    let diagnosis: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("docs/results/diagnosis.json")).unwrap(),
    )
    .unwrap();
    assert!(diagnosis.len() >= 5, "{diagnosis:?}");
    assert!(diagnosis
        .iter()
        .all(|f| matches!(f["verdict"].as_str(), Some("holds" | "fails"))));

    // A rerun finds every stage done and only rewrites the report: no checkpoint is written
    // again (their bytes and modification times are unchanged), the ledger is the same.
    let checkpoints = [
        exp.join("backbone/ssl/checkpoint.safetensors"),
        exp.join("seed-3/run/step2/checkpoint.safetensors"),
        exp.join("seed-3/control/T2/pretrain/checkpoint.safetensors"),
    ];
    let stamp = |p: &std::path::Path| {
        (
            std::fs::metadata(p).unwrap().modified().unwrap(),
            std::fs::read(p).unwrap(),
        )
    };
    let before: Vec<_> = checkpoints.iter().map(|p| stamp(p)).collect();
    Runner::open(&protocol, RunnerOptions::default())
        .unwrap()
        .run_all()
        .unwrap();
    let again = Ledger::load(&exp.join("ledger.json")).unwrap();
    assert_eq!(again, ledger);
    let after: Vec<_> = checkpoints.iter().map(|p| stamp(p)).collect();
    assert!(before == after, "a finished stage was trained again");

    // A fresh checkout keeps the results but not the checkpoints. A finished seed needs none:
    // nothing runs again.
    let remove_checkpoints = || {
        let is_checkpoint = |p: &Path| p.ends_with("checkpoint.safetensors");
        let walk = sevit_data::paths::walk_files(&exp, std::slice::from_ref(&exp), &is_checkpoint)
            .unwrap();
        for c in walk.files {
            std::fs::remove_file(c).unwrap();
        }
    };
    remove_checkpoints();
    // The attention grids show test images and are not kept either: the report says so.
    std::fs::remove_dir_all(exp.join("attention")).unwrap();
    let rerun = || {
        Runner::open(&protocol, RunnerOptions::default())
            .unwrap()
            .run_all()
    };
    rerun().unwrap();
    assert_eq!(Ledger::load(&exp.join("ledger.json")).unwrap(), ledger);
    let md = std::fs::read_to_string(tmp.path().join("docs/results.md")).unwrap();
    assert!(md.contains("not kept with the results"), "{md}");

    // A seed cut off after some stages lost their checkpoints: it reruns from its split, on a
    // backbone trained again that matches the recorded fingerprint, to the same predictions.
    let predictions = exp.join("seed-3/eval/distl-T2/predictions.csv");
    let first = std::fs::read(&predictions).unwrap();
    let cut_off = |ledger: &Ledger| {
        let mut l = ledger.clone();
        l.stages
            .retain(|s| s.id != "seed-3/eval" && s.id != "seed-3/ssl-finetune-T2");
        std::fs::write(exp.join("ledger.json"), serde_json::to_string(&l).unwrap()).unwrap();
    };
    cut_off(&ledger);
    rerun().unwrap();
    let redone = Ledger::load(&exp.join("ledger.json")).unwrap();
    let ids = |l: &Ledger| {
        l.stages
            .iter()
            .map(|s| s.id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&redone), ids(&ledger));
    assert_eq!(
        std::fs::read(&predictions).unwrap(),
        first,
        "the rerun seed differs"
    );
    let sha = exp.join("backbone/networks.sha256");
    assert_eq!(std::fs::read_to_string(&sha).unwrap().trim().len(), 64);

    // A backbone trained again to other networks than the finished stages used is refused.
    remove_checkpoints();
    std::fs::write(&sha, format!("{}\n", "0".repeat(64))).unwrap();
    cut_off(&redone);
    let e = match rerun() {
        Ok(_) => panic!("a backbone other than the recorded one was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("not the one the finished stages started from"),
        "{e}"
    );

    // The directory keeps one protocol.
    write_protocol(tmp.path(), &descriptor, "changed");
    let e = Runner::open(&protocol, RunnerOptions::default())
        .err()
        .expect("another protocol text is refused")
        .to_string();
    assert!(e.contains("another protocol.toml"), "{e}");
}
