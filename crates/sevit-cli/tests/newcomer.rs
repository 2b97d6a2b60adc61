//! Traps a new user met on the command line (issue 24), each reproduced as it was found.

use std::path::Path;
use std::process::Command;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[cfg(unix)]
#[test]
fn redirected_logs_carry_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_sevit"))
        .args([
            "synth",
            "--out",
            p(&data),
            "--n",
            "12",
            "--size",
            "32",
            "--seed",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tree = tmp.path().join("tree");
    for (i, e) in std::fs::read_dir(data.join("images")).unwrap().enumerate() {
        let label = if i % 2 == 0 { "a" } else { "b" };
        std::fs::create_dir_all(tree.join(label)).unwrap();
        std::fs::copy(e.unwrap().path(), tree.join(label).join(format!("{i}.png"))).unwrap();
    }
    // A directory link that is not followed: a warning in the log.
    std::os::unix::fs::symlink("..", tree.join("a/up")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sevit"))
        .args([
            "split",
            "--folder",
            p(&tree),
            "--positive",
            "b",
            "--out",
            p(&tmp.path().join("run")),
        ])
        .env("SEVIT_LOG", "info")
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
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/micro.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_sevit"))
        .args(["pretrain", "--run", p(&run), "--config", p(&config)])
        .output()
        .unwrap();
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
    let out = Command::new(env!("CARGO_BIN_EXE_sevit"))
        .arg("info")
        .output()
        .unwrap();
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
    let data = tmp.path().join("data");
    let run = tmp.path().join("run");
    let sevit = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sevit"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sevit(&[
        "synth",
        "--out",
        p(&data),
        "--n",
        "40",
        "--size",
        "32",
        "--seed",
        "2",
    ]);
    sevit(&[
        "split",
        "--dataset",
        p(&data.join("dataset.toml")),
        "--out",
        p(&run),
        "--folds",
        "1",
        "--labeled-fraction",
        "0.5",
        "--test-fraction",
        "0.25",
    ]);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/micro.toml");
    let out = sevit(&[
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
    ]);
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
