//! Hostile and unlucky inputs, as a user meets them on the command line: each test here
//! reproduces a defect that once gave a silently wrong result, a hang, a crash or lost work
//! (docs/reliability.md lists them with the guarantee each one now has).

mod common;

use common::{fails_in, micro_config, ok_in, p, sevit_in, synth, synth_run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `file` column of a split.csv, resolved against its `# root:` line.
fn split_paths(split_csv: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(split_csv).unwrap();
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("# root: "))
        .map(PathBuf::from)
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|l| root.join(l.split(',').next().unwrap()))
        .collect()
}

#[cfg(unix)]
#[test]
fn split_with_relative_paths_and_images_outside_the_root_writes_paths_that_exist() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    synth(tmp.path(), 24, 1);
    // dsl/: a dataset whose images are symlinks to files elsewhere.
    let dsl = work.join("dsl");
    std::fs::create_dir_all(dsl.join("images")).unwrap();
    std::fs::copy(
        tmp.path().join("data/manifest.csv"),
        dsl.join("manifest.csv"),
    )
    .unwrap();
    for e in std::fs::read_dir(tmp.path().join("data/images")).unwrap() {
        let e = e.unwrap();
        symlink(e.path(), dsl.join("images").join(e.file_name())).unwrap();
    }
    std::fs::write(
        dsl.join("dataset.toml"),
        "root = \".\"\npositive = \"opacity\"\n",
    )
    .unwrap();
    // folder layout of the same links
    for label in ["normal", "opacity"] {
        std::fs::create_dir_all(work.join("tree").join(label)).unwrap();
    }
    let manifest = std::fs::read_to_string(dsl.join("manifest.csv")).unwrap();
    for line in manifest.lines().skip(1) {
        let mut f = line.split(',');
        let (file, label) = (f.next().unwrap(), f.next().unwrap());
        let name = Path::new(file).file_name().unwrap();
        symlink(
            tmp.path().join("data").join(file),
            work.join("tree").join(label).join(name),
        )
        .unwrap();
    }
    let runs: [(&str, Vec<&str>); 3] = [
        ("r1", vec!["--dataset", "dsl/dataset.toml"]),
        (
            "r2",
            vec!["--manifest", "dsl/manifest.csv", "--positive", "opacity"],
        ),
        ("r3", vec!["--folder", "tree", "--positive", "opacity"]),
    ];
    for (run, source) in runs {
        let mut args = vec![
            "split",
            "--out",
            run,
            "--test-fraction",
            "0.25",
            "--folds",
            "1",
            "--labeled-fraction",
            "0.3",
        ];
        args.extend(source);
        ok_in(&work, &args);
        let paths = split_paths(&work.join(run).join("split.csv"));
        assert_eq!(paths.len(), 24, "{run}");
        for path in paths {
            assert!(
                path.is_file(),
                "{run}: split.csv names {} which does not exist",
                path.display()
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn directory_links_neither_multiply_nor_relabel_images_nor_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path(), 20, 2);
    let tree = tmp.path().join("tree");
    for e in std::fs::read_dir(data.join("images")).unwrap() {
        let e = e.unwrap();
        let n: usize = e.file_name().to_string_lossy()[6..11].parse().unwrap();
        let label = if n.is_multiple_of(2) {
            "normal"
        } else {
            "opacity"
        };
        std::fs::create_dir_all(tree.join(label)).unwrap();
        std::fs::copy(e.path(), tree.join(label).join(e.file_name())).unwrap();
    }
    std::os::unix::fs::symlink("..", tree.join("normal/up")).unwrap();
    std::os::unix::fs::symlink("../..", tree.join("opacity/up")).unwrap();
    let out = ok_in(tmp.path(), &split_args(&["--folder", "tree"])).stdout;
    assert!(out.contains("20 images"), "{out}");
    let paths = split_paths(&tmp.path().join("run/split.csv"));
    assert_eq!(paths.len(), 20);
    assert!(paths.iter().all(|p| !p.to_string_lossy().contains("/up/")));

    // predict --folder over the same two links finishes (it looped before).
    let start = Instant::now();
    let out = sevit_in(
        tmp.path(),
        &[
            "predict",
            "--folder",
            "tree",
            "--checkpoint",
            "none.safetensors",
        ],
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none.safetensors"), "{err}");
}

#[test]
fn aliased_duplicates_and_paths_leaving_the_root_are_refused_at_split() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path(), 12, 3);
    let m = data.join("m.csv");
    std::fs::write(
        &m,
        "file,label\n./images/synth_00000.png,normal\nimages/synth_00001.png,opacity\nimages/synth_00000.png,opacity\n",
    )
    .unwrap();
    let err = fails_in(
        tmp.path(),
        &[
            "split",
            "--manifest",
            p(&m),
            "--positive",
            "opacity",
            "--out",
            "run",
        ],
    );
    assert!(
        err.contains("duplicate entry") && err.contains("line 4"),
        "{err}"
    );

    let outside = tmp.path().join("outside.png");
    std::fs::copy(data.join("images/synth_00002.png"), &outside).unwrap();
    let mut rows = std::fs::read_to_string(data.join("manifest.csv")).unwrap();
    rows.push_str("../outside.png,opacity,X1\n");
    std::fs::write(&m, &rows).unwrap();
    let args = split_args(&["--manifest", p(&m)]);
    let err = fails_in(tmp.path(), &args);
    assert!(
        err.contains("leaves the dataset root") && err.contains("--allow-outside-root"),
        "{err}"
    );
    let mut allowed = args.clone();
    allowed.push("--allow-outside-root");
    ok_in(tmp.path(), &allowed);
    let paths = split_paths(&tmp.path().join("run/split.csv"));
    assert!(paths.contains(&outside), "{paths:?}");

    let err = fails_in(
        tmp.path(),
        &[
            "split",
            "--manifest",
            p(&data),
            "--positive",
            "opacity",
            "--out",
            "run2",
        ],
    );
    assert!(err.contains("is a directory"), "{err}");
}

/// A trained micro model of a synthetic run: (run dir, checkpoint).
fn micro_model(dir: &Path) -> (PathBuf, PathBuf) {
    let (_, run) = synth_run(
        dir,
        40,
        4,
        &["--test-fraction", "0.25", "--labeled-fraction", "0.5"],
    );
    let config = micro_config();
    ok_in(
        dir,
        &[
            "pretrain",
            "--run",
            p(&run),
            "--config",
            p(&config),
            "--set",
            "threads=1",
            "--set",
            "pretrain.epochs=1",
            "--no-progress",
        ],
    );
    let ck = run.join("pretrain/checkpoint.safetensors");
    assert!(ck.is_file());
    (run, ck)
}

#[test]
fn predict_refuses_nan_probabilities_truncated_jpegs_and_odd_sizes_and_warns_on_constant_images() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ck) = micro_model(tmp.path());
    let img = tmp.path().join("data/images/synth_00000.png");
    let ok = ok_in(
        tmp.path(),
        &["predict", "--checkpoint", p(&ck), "--out", "a.csv", p(&img)],
    )
    .stdout;
    assert!(ok.contains("1 images scored"), "{ok}");

    // A truncated JPEG (its second half missing) is an error naming the file.
    let jpg = tmp.path().join("cut.jpg");
    let gray = image::open(&img).unwrap().to_luma8();
    gray.save(tmp.path().join("whole.jpg")).unwrap();
    let bytes = std::fs::read(tmp.path().join("whole.jpg")).unwrap();
    std::fs::write(&jpg, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails_in(
        tmp.path(),
        &["predict", "--checkpoint", p(&ck), "--out", "b.csv", p(&jpg)],
    );
    assert!(
        err.contains("truncated JPEG") && err.contains("cut.jpg"),
        "{err}"
    );

    // An input size the patch size (8) does not divide.
    let err = fails_in(
        tmp.path(),
        &[
            "predict",
            "--checkpoint",
            p(&ck),
            "--image-size",
            "30",
            "--out",
            "c.csv",
            p(&img),
        ],
    );
    assert!(
        err.contains("not a multiple of the model's patch size 8"),
        "{err}"
    );

    // A constant image is scored with a warning.
    let flat = tmp.path().join("flat.png");
    image::GrayImage::from_pixel(32, 32, image::Luma([7]))
        .save(&flat)
        .unwrap();
    let out = sevit_in(
        tmp.path(),
        &[
            "predict",
            "--checkpoint",
            p(&ck),
            "--out",
            "d.csv",
            p(&flat),
        ],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is constant"));

    // NaN weights: an error naming the image, and no CSV written.
    let mut c = sevit_model::Checkpoint::load(&ck).unwrap();
    for (name, t) in c.tensors.iter_mut() {
        if name.starts_with("student.") && t.is_floating_point() {
            *t = t.fill(f64::NAN);
        }
    }
    let nan_ck = tmp.path().join("nan.safetensors");
    c.save(&nan_ck).unwrap();
    let err = fails_in(
        tmp.path(),
        &[
            "predict",
            "--checkpoint",
            p(&nan_ck),
            "--out",
            "e.csv",
            p(&img),
        ],
    );
    assert!(
        err.contains("non-finite probability") && err.contains("synth_00000.png"),
        "{err}"
    );
    assert!(!tmp.path().join("e.csv").exists());

    // Flipped bytes in a checkpoint: refused by its checksum.
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n - 64] ^= 0x01;
    let bad_ck = tmp.path().join("flipped.safetensors");
    std::fs::write(&bad_ck, bytes).unwrap();
    let err = fails_in(
        tmp.path(),
        &[
            "predict",
            "--checkpoint",
            p(&bad_ck),
            "--out",
            "f.csv",
            p(&img),
        ],
    );
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn training_refuses_a_busy_run_and_cleans_stale_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = micro_model(tmp.path());
    let stale = run.join("pretrain/.checkpoint.safetensors.Ab12Cd");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let config = micro_config();
    let long = [
        "pretrain",
        "--run",
        p(&run),
        "--config",
        p(&config),
        "--set",
        "threads=1",
        "--set",
        "pretrain.epochs=1000",
        "--label-folds",
        "1",
        "--no-progress",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_sevit"))
        .args(long)
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = run.join(".lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains(&format!("PID {}", first.id()))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first process never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = fails_in(tmp.path(), &long);
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        err.contains("in use by another sevit process")
            && err.contains(&format!("PID {}", first.id())),
        "{err}"
    );
    assert!(!stale.exists(), "the stale temporary was not removed");
    // The killed process's lock died with it.
    let err = fails_in(
        tmp.path(),
        &[
            "pretrain",
            "--run",
            p(&run),
            "--config",
            p(&config),
            "--set",
            "optim.lr=inf",
        ],
    );
    assert!(err.contains("not a finite number"), "{err}");
}

#[test]
fn import_weights_refuses_a_deeply_nested_pickle_without_crashing() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let pth = tmp.path().join("deep.pth");
    let mut pickle = vec![0x80, 2, b')'];
    pickle.extend(std::iter::repeat_n(0x85u8, 200_000));
    pickle.push(b'.');
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&pth).unwrap());
    zip.start_file("deep/data.pkl", zip::write::FileOptions::default())
        .unwrap();
    zip.write_all(&pickle).unwrap();
    zip.finish().unwrap();
    let err = fails_in(
        tmp.path(),
        &[
            "import-weights",
            "--input",
            p(&pth),
            "--output",
            "x.safetensors",
        ],
    );
    assert!(err.contains("nested deeper than 1000"), "{err}");
}

/// `sevit split` of `source` (`--folder DIR`, `--manifest CSV`) into `run`: positive label
/// `opacity`, a quarter for test, one fold, 30% of the rest labeled.
fn split_args<'a>(source: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["split"];
    args.extend_from_slice(source);
    args.extend([
        "--positive",
        "opacity",
        "--out",
        "run",
        "--test-fraction",
        "0.25",
        "--folds",
        "1",
        "--labeled-fraction",
        "0.3",
    ]);
    args
}
