//! The README's "Your own data, step by step" block, run as written on the embedded synthetic
//! data: only the dataset, the config (micro instead of cpu) and the image folder of the last
//! line are substituted, so a recipe line that stops working fails here.

mod common;

use common::repo;
use std::path::Path;
use std::process::Command;

/// The first ```bash block after the heading `heading` of the README.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no heading {heading:?}"));
    let rest = &readme[at..];
    let start = rest.find("```bash\n").expect("a bash block") + "```bash\n".len();
    let end = rest[start..].find("```").expect("the end of the block");
    rest[start..start + end].to_string()
}

/// Runs the recipe block in `dir` with `substitutions` applied (each must occur in it) and
/// checks the files it writes.
fn run_recipe(dir: &Path, substitutions: &[(&str, &str)]) {
    let sevit = Path::new(env!("CARGO_BIN_EXE_sevit"));
    let mut block = readme_block("## Your own data, step by step");
    for (from, to) in substitutions {
        assert!(
            block.contains(from),
            "the README recipe no longer names {from}:\n{block}"
        );
        block = block.replace(from, to);
    }
    // `just build` is what built the binary under test.
    let script = format!("set -euo pipefail\njust() {{ :; }}\n{block}");
    let path = format!(
        "{}:{}",
        sevit.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("SEVIT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README recipe failed:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "runs/k/summary.csv",
        "runs/k/eval/pretrain/report.json",
        "runs/k/eval/step3/report.json",
        "runs/k/eval/T0-vs-T3.json",
        "runs/k/predictions.csv",
    ] {
        assert!(dir.join(f).is_file(), "the recipe wrote no {f}");
    }
}

#[test]
fn the_readme_recipe_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sevit"))
        .args([
            "synth", "--out", "data", "--n", "120", "--size", "32", "--seed", "7",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let micro = repo().join("configs/micro.toml");
    run_recipe(
        tmp.path(),
        &[
            (
                "data-manifests/kermany_pediatric_224src.toml",
                "data/dataset.toml",
            ),
            ("configs/cpu.toml", micro.to_str().unwrap()),
            (
                "../shared/data/kermany_pediatric_224src/images",
                "data/images",
            ),
        ],
    );
}

/// The same block on the real Kermany images of `../shared/data` (2,024 images, its own
/// descriptor and official test split), with only the config made micro (32 px): minutes,
/// not the hours of cpu.toml. CI has `../shared`; elsewhere set SEVIT_NO_SHARED_DATA=1.
#[test]
fn the_readme_recipe_runs_on_the_shared_kermany_data() {
    let images = repo().join("../shared/data/kermany_pediatric_224src/images");
    if !images.is_dir() {
        if std::env::var_os("SEVIT_NO_SHARED_DATA").is_some() {
            eprintln!(
                "SEVIT_NO_SHARED_DATA set and {} absent: not run",
                images.display()
            );
            return;
        }
        panic!(
            "{} is absent: this test needs ../shared/data (set SEVIT_NO_SHARED_DATA=1 to skip it)",
            images.display()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    // The recipe names data-manifests/... relative to the repository root: link it.
    std::os::unix::fs::symlink(
        repo().join("data-manifests"),
        tmp.path().join("data-manifests"),
    )
    .unwrap();
    let micro = repo().join("configs/micro.toml");
    run_recipe(
        tmp.path(),
        &[
            ("configs/cpu.toml", micro.to_str().unwrap()),
            (
                "../shared/data/kermany_pediatric_224src/images",
                images.to_str().unwrap(),
            ),
        ],
    );
}
