//! Traps a new user met on the command line (issue 24), each reproduced as it was found.

mod common;

use common::{micro_config, ok_in, p, repo, sevit_cmd, sevit_in, synth, synth_run};
use std::path::Path;

#[cfg(unix)]
#[test]
fn redirected_logs_carry_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path(), 12, 1);
    let tree = tmp.path().join("tree");
    for (i, e) in std::fs::read_dir(data.join("images")).unwrap().enumerate() {
        let label = if i % 2 == 0 { "a" } else { "b" };
        std::fs::create_dir_all(tree.join(label)).unwrap();
        std::fs::copy(e.unwrap().path(), tree.join(label).join(format!("{i}.png"))).unwrap();
    }
    // A directory link that is not followed: a warning in the log.
    std::os::unix::fs::symlink("..", tree.join("a/up")).unwrap();
    let run = tmp.path().join("run");
    let out = sevit_cmd(
        tmp.path(),
        &[
            "split",
            "--folder",
            p(&tree),
            "--positive",
            "b",
            "--out",
            p(&run),
        ],
    )
    .env_remove("NO_COLOR")
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not following directory link"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape codes in a redirected log: {err:?}"
    );
}

#[test]
fn a_failed_training_command_leaves_no_empty_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("typo");
    let config = micro_config();
    let out = sevit_in(
        tmp.path(),
        &["pretrain", "--run", p(&run), "--config", p(&config)],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("split.csv"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !run.exists(),
        "the failed command left {} behind",
        run.display()
    );
}

#[test]
fn info_names_the_libtorch_it_runs_on() {
    let out = sevit_in(&repo(), &["info"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("libtorch: "))
        .unwrap_or_else(|| panic!("no libtorch line in:\n{text}"));
    assert!(line.contains("2.13.0"), "{line}");
}

#[test]
fn a_stopped_evolve_names_only_files_it_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, run) = synth_run(
        tmp.path(),
        40,
        2,
        &["--labeled-fraction", "0.5", "--test-fraction", "0.25"],
    );
    let config = micro_config();
    let out = ok_in(
        tmp.path(),
        &[
            "evolve",
            "--run",
            p(&run),
            "--config",
            p(&config),
            "--set",
            "threads=1",
            "--stop-after-epochs",
            "1",
            "--no-progress",
        ],
    )
    .stdout;
    for line in out.lines() {
        if let Some(f) = line.strip_prefix("summary: ") {
            assert!(
                Path::new(f).is_file(),
                "evolve names {f}, which it did not write:\n{out}"
            );
        }
    }
    assert!(out.contains("--resume"), "{out}");
}

/// `(epoch, val_auc)` of each log line of `what` ("validation" or "selected ...").
fn epochs_logged(log: &str, what: &str) -> Vec<(usize, String)> {
    log.lines()
        .filter(|l| l.contains(what))
        .map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap_or_else(|| panic!("no {k} in {l}"))
                    .to_string()
            };
            (field("epoch=").parse().unwrap(), field("val_auc="))
        })
        .collect()
}

#[test]
fn model_selection_numbers_epochs_one_way_and_its_checkpoints_load() {
    let tmp = tempfile::tempdir().unwrap();
    let sevit = |args: &[&str]| {
        let out = ok_in(tmp.path(), args);
        (out.stdout, out.stderr)
    };
    let (data, run) = synth_run(
        tmp.path(),
        60,
        5,
        &[
            "--labeled-fraction",
            "0.4",
            "--val-fraction",
            "0.3",
            "--test-fraction",
            "0.2",
        ],
    );
    let config = micro_config();
    let (_, log) = sevit(&[
        "pretrain",
        "--run",
        p(&run),
        "--config",
        p(&config),
        "--set",
        "threads=1",
        "--set",
        "pretrain.epochs=4",
        "--set",
        "pretrain.val_every=1",
        "--set",
        "pretrain.select=\"best_val\"",
        "--no-progress",
    ]);
    let validations = epochs_logged(&log, "INFO validation ");
    assert_eq!(
        validations.iter().map(|v| v.0).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "{log}"
    );
    let selected = epochs_logged(&log, "selected the epoch");
    assert_eq!(selected.len(), 1, "{log}");
    assert!(
        validations.contains(&selected[0]),
        "{validations:?} vs {selected:?}"
    );
    let csv = std::fs::read_to_string(run.join("pretrain/val.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("1,"), "{csv}");
    // log.jsonl holds a validation line per validated epoch (epochs from 0, as its training
    // lines), with the AUC val.csv has.
    let log = run.join("pretrain/log.jsonl");
    let val = sevit_distill::log::read_validation(&log).unwrap();
    assert_eq!(
        val.iter().map(|v| v.epoch).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    for (v, line) in val.iter().zip(csv.lines().skip(1)) {
        let auc: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!((v.val_auc - auc).abs() < 1e-6, "{v:?} vs {line}");
        assert!(v.val_loss.is_finite() && v.val_loss > 0.0 && v.images > 0);
    }
    let training = sevit_distill::log::read_log(&log).unwrap();
    assert!(!training.is_empty());
    let last_iteration = training
        .iter()
        .filter(|r| r.epoch == 0)
        .map(|r| r.iteration)
        .max()
        .unwrap();
    assert_eq!(val[0].iteration, last_iteration + 1);

    // The stage checkpoint says which epoch's weights it holds; best.safetensors loads alone.
    let ck = sevit_model::Checkpoint::load(&run.join("pretrain/checkpoint.safetensors")).unwrap();
    assert_eq!(ck.metadata["epoch"], "4");
    assert_eq!(ck.metadata["selected_epoch"], selected[0].0.to_string());
    let img = data.join("images/synth_00000.png");
    let best = run.join("pretrain/best.safetensors");
    let (out, _) = sevit(&[
        "predict",
        "--checkpoint",
        p(&best),
        "--out",
        p(&tmp.path().join("b.csv")),
        p(&img),
    ]);
    assert!(out.contains("1 images scored"), "{out}");
    // One predictions schema for eval and predict, naming the positive class of the run.
    let header = |f: &Path| {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        header(&tmp.path().join("b.csv")),
        "id,label,p_opacity,predicted,threshold"
    );

    // sevit embed: the same network's features, logit and attention.
    let emb = tmp.path().join("e.safetensors");
    sevit(&["embed", "--checkpoint", p(&best), "--out", p(&emb), p(&img)]);
    let e = sevit_model::Checkpoint::load(&emb).unwrap();
    assert_eq!(e.tensors["features"].size(), [1, 32]);
    assert_eq!(e.tensors["attention"].size(), [1, 2, 4, 4]);
    let logit = e.tensors["logits"].double_value(&[0]);
    let csv = std::fs::read_to_string(tmp.path().join("b.csv")).unwrap();
    let prob: f64 = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1.0 / (1.0 + (-logit).exp()) - prob).abs() < 1e-6,
        "{logit} vs {prob}"
    );
    let ids: Vec<String> = e.get_json("ids").unwrap();
    assert_eq!(ids.len(), 1);
    let npy = tmp.path().join("npy");
    sevit(&[
        "embed",
        "--checkpoint",
        p(&best),
        "--format",
        "npy",
        "--out",
        p(&npy),
        "--folder",
        p(&data.join("images")),
    ]);
    for f in ["features.npy", "logits.npy", "attention.npy"] {
        assert!(npy.join(f).is_file(), "{f}");
    }
    let n = std::fs::read_to_string(npy.join("ids.txt"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(n, 60);
    let f = tch::Tensor::read_npy(npy.join("features.npy")).unwrap();
    assert_eq!(f.size(), [60, 32]);

    // sevit export: a TorchScript module PyTorch loads, described by a JSON file beside it.
    let pt = tmp.path().join("export/model.pt");
    let (out, _) = sevit(&["export", "--checkpoint", p(&best), "--out", p(&pt)]);
    assert!(out.contains("TorchScript"), "{out}");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pt.with_extension("json")).unwrap()).unwrap();
    assert_eq!(info["input_shape"], serde_json::json!([-1, 3, 32, 32]));
    assert_eq!(info["positive_label"], "opacity");
    if let Some(py) = std::env::var_os("SEVIT_TORCH_PYTHON") {
        let run = std::process::Command::new(py)
            .args([
                "-c",
                "import sys, torch; m = torch.jit.load(sys.argv[1]); \
                 print(tuple(m(torch.rand(3, 3, 32, 32)).shape))",
                p(&pt),
            ])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "(3, 33)");
    }
}

#[test]
fn a_run_remembers_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let sevit = |args: &[&str]| ok_in(tmp.path(), args).stderr;
    let (_, run) = synth_run(
        tmp.path(),
        40,
        6,
        &["--labeled-fraction", "0.5", "--test-fraction", "0.25"],
    );
    let config = micro_config();
    sevit(&[
        "pretrain",
        "--run",
        p(&run),
        "--config",
        p(&config),
        "--set",
        "pretrain.epochs=1",
        "--no-progress",
    ]);
    // No --config: the run's own (the paper preset's 72 missing keys, before).
    let log = sevit(&[
        "distill",
        "--run",
        p(&run),
        "--step",
        "1",
        "--stop-after-epochs",
        "1",
        "--no-progress",
    ]);
    assert!(log.contains("config: the run's"), "{log}");
    // A different --config is used, and the keys that differ are named.
    let log = sevit(&[
        "pretrain",
        "--run",
        p(&run),
        "--label-folds",
        "1",
        "--config",
        p(&config),
        "--set",
        "pretrain.epochs=2",
        "--stop-after-epochs",
        "1",
        "--no-progress",
    ]);
    assert!(
        log.contains("differs from the run's") && log.contains("pretrain.epochs"),
        "{log}"
    );
}

#[test]
fn config_show_prints_every_key_and_the_reference_lists_them() {
    let show = |args: &[&str]| {
        let mut all = vec!["config", "show"];
        all.extend(args);
        ok_in(&repo(), &all).stdout
    };
    let defaults = show(&[]);
    assert_eq!(show(&["--preset", "paper"]), defaults);
    assert_ne!(show(&["--preset", "cpu"]), defaults);
    assert!(show(&["--set", "optim.lr=0.001"]).contains("lr = 0.001"));
    let doc = std::fs::read_to_string(repo().join("docs/config.md")).unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block in docs/config.md");
    assert_eq!(
        block, defaults,
        "docs/config.md is stale: paste the output of `sevit config show`"
    );
}
