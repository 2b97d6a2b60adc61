//! `sevit inbox`, `sevit models`, `sevit evolve --store` and `sevit predict --store` as a user
//! runs them, including crashes: a `kill -9` during a step's training and aborts at the
//! registry write leave a consistent registry, and the next `evolve` finishes the step.

mod common;

use common::{p, repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `sevit ARGS` in the current folder (paths given are absolute).
fn sevit(args: &[&str]) -> Command {
    common::sevit_cmd(Path::new("."), args)
}

fn ok(args: &[&str]) -> String {
    common::ok_in(Path::new("."), args).stdout
}

fn with_fault(fault: &str, args: &[&str]) -> Output {
    sevit(args).env("SEVIT_FAULT", fault).output().unwrap()
}

/// Data, split (with a validation part), initial model, site; returns (site, arrivals dir).
fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let config = repo().join("configs/micro.toml");
    let data = root.join("data");
    let run = root.join("run");
    let site = root.join("site");
    let arrivals = root.join("arrivals");
    ok(&[
        "synth",
        "--out",
        p(&data),
        "--n",
        "160",
        "--size",
        "32",
        "--difficulty",
        "0",
        "--seed",
        "3",
    ]);
    ok(&[
        "synth",
        "--out",
        p(&arrivals),
        "--n",
        "60",
        "--size",
        "32",
        "--difficulty",
        "0",
        "--seed",
        "4",
    ]);
    ok(&[
        "split",
        "--dataset",
        p(&data.join("dataset.toml")),
        "--out",
        p(&run),
        "--seed",
        "0",
        "--labeled-fraction",
        "0.25",
        "--val-fraction",
        "0.4",
        "--test-fraction",
        "0.1",
        "--folds",
        "1",
    ]);
    ok(&[
        "pretrain",
        "--run",
        p(&run),
        "--config",
        p(&config),
        "--set",
        "threads=2",
        "--set",
        "pretrain.epochs=2",
        "--no-progress",
    ]);
    let out = ok(&[
        "models",
        "init",
        "--store",
        p(&site),
        "--run",
        p(&run),
        "--min-new",
        "40",
        "--set",
        "optim.epochs=2",
        "--set",
        "pretrain.epochs=16",
    ]);
    assert!(out.contains("v1 in service"), "{out}");
    (site, arrivals.join("images"))
}

fn registry(site: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(site.join("registry.json")).unwrap()).unwrap()
}

fn audit_lines(site: &Path) -> usize {
    std::fs::read_to_string(site.join("audit.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn crashes_leave_a_consistent_registry_and_the_next_evolve_finishes_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (site, images) = setup(tmp.path());
    let s = p(&site);
    let out = ok(&["inbox", "add", "--store", s, p(&images)]);
    assert!(out.contains("60 added"), "{out}");

    // an uninterrupted twin of the site, to compare the resumed result with
    let twin = tmp.path().join("twin");
    let cp = Command::new("cp")
        .args(["-a", s, p(&twin)])
        .status()
        .unwrap();
    assert!(cp.success());

    // kill -9 while the candidate trains (after its first epoch checkpoint)
    let mut child = sevit(&["evolve", "--store", s, "--no-progress"])
        .spawn()
        .unwrap();
    let ckpt = site.join("models/v2/distl/checkpoint.safetensors");
    let t0 = Instant::now();
    while !ckpt.exists() && t0.elapsed() < Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let listed = ok(&["models", "list", "--store", s]);
    assert!(listed.contains("in service: v1"), "{listed}");
    assert_eq!(registry(&site)["versions"].as_array().unwrap().len(), 1);

    // abort just before the registry write: still only v1, and the plan is resumed next time
    let out = with_fault(
        "before-registry",
        &["evolve", "--store", s, "--no-progress"],
    );
    assert!(!out.status.success());
    assert_eq!(registry(&site)["versions"].as_array().unwrap().len(), 1);
    assert_eq!(audit_lines(&site), 1);

    // abort just after the registry write: v2 is recorded, the audit log catches up on the next command
    let out = with_fault("after-registry", &["evolve", "--store", s, "--no-progress"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resuming the unfinished candidate"),
        "{stderr}"
    );
    let reg = registry(&site);
    assert_eq!(reg["versions"].as_array().unwrap().len(), 2);
    assert_eq!(audit_lines(&site), 1);
    let waiting = ok(&["evolve", "--store", s, "--no-progress"]);
    assert!(waiting.contains("waiting: 0 new images"), "{waiting}");
    assert_eq!(audit_lines(&site), 2);

    // the twin, never interrupted, trained the same plan: same parent, images and config
    // (bit-equal weights after a mid-step kill are not asserted here; see docs/evolution.md)
    ok(&["evolve", "--store", p(&twin), "--no-progress"]);
    let twin_reg = registry(&twin);
    let (a, b) = (&reg["versions"][1], &twin_reg["versions"][1]);
    assert_eq!(a["parent"], b["parent"]);
    assert_eq!(a["config_sha256"], b["config_sha256"]);
    assert_eq!(
        a["trained_on"]["list_sha256"],
        b["trained_on"]["list_sha256"]
    );
    assert_eq!(a["validation"]["n"], b["validation"]["n"]);
}

#[test]
fn predict_serves_the_model_in_service_and_rollback_restores_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (site, images) = setup(tmp.path());
    let s = p(&site);
    ok(&["inbox", "add", "--store", s, p(&images)]);
    let decided = ok(&["evolve", "--store", s, "--no-progress"]);
    assert!(decided.contains("v2:"), "{decided}");
    // whatever the gate decided, v2 goes into service by hand (recorded with its reason)
    if !decided.contains("in service: v2") {
        ok(&[
            "models",
            "promote",
            "--store",
            s,
            "v2",
            "--override-gate",
            "--reason",
            "test",
        ]);
    }
    let show: serde_json::Value =
        serde_json::from_str(&ok(&["models", "show", "--store", s])).unwrap();
    assert_eq!(show["id"], "v2");

    let predict = |out: &Path, extra: &[&str]| -> String {
        let mut args = vec![
            "predict",
            "--store",
            s,
            "--folder",
            p(&images),
            "--out",
            p(out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        std::fs::read_to_string(out).unwrap()
    };
    let served = predict(&tmp.path().join("served.csv"), &[]);
    let v1 = predict(&tmp.path().join("v1.csv"), &["--version", "v1"]);
    let v2 = predict(&tmp.path().join("v2.csv"), &["--version", "v2"]);
    assert_eq!(served, v2);
    assert_ne!(v1, v2);

    let out = ok(&[
        "models",
        "rollback",
        "--store",
        s,
        "--reason",
        "clinician report",
    ]);
    assert!(out.contains("in service: v1"), "{out}");
    assert_eq!(predict(&tmp.path().join("after.csv"), &[]), v1);
    let listed = ok(&["models", "list", "--store", s]);
    assert!(listed.contains("rolled_back"), "{listed}");
    let audit = std::fs::read_to_string(site.join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"rollback\"") && audit.contains("clinician report"),
        "{audit}"
    );

    // errors a user meets
    let err = sevit(&["models", "list", "--store", p(&tmp.path().join("nope"))])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("has no model registry"));
    let again = sevit(&[
        "models",
        "init",
        "--store",
        s,
        "--run",
        p(&tmp.path().join("run")),
    ])
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a model registry"));
}
