//! What the CLI tests share: the binary under test, run as a user runs it, and the
//! synthetic data it makes.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `configs/micro.toml`.
pub fn micro_config() -> PathBuf {
    repo().join("configs/micro.toml")
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `sevit ARGS` in `dir`, with info logs and no crash point from the environment.
pub fn sevit_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sevit"));
    c.args(args)
        .current_dir(dir)
        .env_remove("SEVIT_FAULT")
        .env("SEVIT_LOG", "info");
    c
}

/// Runs `sevit ARGS` in `dir`.
pub fn sevit_in(dir: &Path, args: &[&str]) -> Output {
    sevit_cmd(dir, args).output().unwrap()
}

/// What a successful command printed.
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command that must succeed.
pub fn ok_in(dir: &Path, args: &[&str]) -> Printed {
    let out = sevit_in(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sevit {args:?} failed:\n{stderr}");
    Printed {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Runs a command that must fail with a clean error exit (1, not a crash); returns its stderr.
pub fn fails_in(dir: &Path, args: &[&str]) -> String {
    let out = sevit_in(dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "sevit {args:?} should have failed:\n{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean error exit, not a crash: {err}"
    );
    err
}

/// `sevit synth` of `n` 32 px images into `dir/data`; returns that folder.
pub fn synth(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let out = dir.join("data");
    ok_in(
        dir,
        &[
            "synth",
            "--out",
            p(&out),
            "--n",
            &n.to_string(),
            "--size",
            "32",
            "--difficulty",
            "0",
            "--seed",
            &seed.to_string(),
        ],
    );
    out
}

/// `synth` then `sevit split` of it into `dir/run` with one fold and `split_args`; returns
/// (data folder, run folder).
pub fn synth_run(dir: &Path, n: usize, seed: u64, split_args: &[&str]) -> (PathBuf, PathBuf) {
    let data = synth(dir, n, seed);
    let run = dir.join("run");
    let descriptor = data.join("dataset.toml");
    let mut args = vec![
        "split",
        "--dataset",
        p(&descriptor),
        "--out",
        p(&run),
        "--folds",
        "1",
    ];
    args.extend(split_args);
    ok_in(dir, &args);
    (data, run)
}
