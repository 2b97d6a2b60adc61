//! Tests of [`super`] (`dataset.rs`).

use super::*;

fn touch_png(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 40 + y) as u8]))
        .save(p)
        .unwrap();
}

/// The error of reading manifest `m` with positive label `pneumonia`, with its context.
fn manifest_error(m: &Path) -> String {
    format!(
        "{:#}",
        Dataset::from_manifest(m, "pneumonia", None).unwrap_err()
    )
}

/// A manifest of `rows` in a new folder, and the error of reading it.
fn rows_error(rows: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), rows);
    let err = manifest_error(&m);
    (dir, m, err)
}

fn manifest(dir: &Path, rows: &[&str]) -> PathBuf {
    let p = dir.join("manifest.csv");
    let mut s = String::from("file,label,patient_id,extra\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
        let f = r.split(',').next().unwrap();
        if !f.starts_with("missing") {
            touch_png(&dir.join(f));
        }
    }
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn manifest_reads_labels_targets_and_patients() {
    let d = tempfile::tempdir().unwrap();
    let m = manifest(
        d.path(),
        &[
            "images/a.png,normal,p1,x",
            "images/b.png,pneumonia,p2,y",
            "images/c.png,covid,,z",
        ],
    );
    let ds = Dataset::from_manifest(&m, "pneumonia", None).unwrap();
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(ds.samples[1].target, 1.0);
    assert_eq!(ds.samples[0].target, 0.0);
    assert_eq!(ds.samples[2].patient_id, "images/c.png");
    let kept = Dataset::from_manifest(
        &m,
        "pneumonia",
        Some(&["normal".into(), "pneumonia".into()]),
    )
    .unwrap();
    assert_eq!(kept.samples.len(), 2);
}

#[test]
fn missing_file_names_the_line() {
    let (_dir, m, err) = rows_error(&[
        "a.png,normal,p1,",
        "missing.png,pneumonia,p2,",
        "b.png,pneumonia,p3,",
    ]);
    assert!(
        err.contains("line 3") && err.contains("missing.png"),
        "{err}"
    );
    let ds = Dataset::from_manifest_opts(
        &m,
        "pneumonia",
        None,
        LoadOptions {
            skip_bad: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ds.samples.len(), 2);
}

#[test]
fn duplicate_entry_names_both_lines() {
    let (_dir, _, err) = rows_error(&[
        "a.png,normal,p1,",
        "b.png,pneumonia,p2,",
        "a.png,normal,p1,",
    ]);
    assert!(
        err.contains("line 4") && err.contains("duplicate") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn aliased_spellings_of_one_file_are_one_duplicate_entry() {
    let d = tempfile::tempdir().unwrap();
    touch_png(&d.path().join("images/x.png"));
    touch_png(&d.path().join("images/y.png"));
    let m = d.path().join("manifest.csv");
    std::fs::write(
            &m,
            "file,label\n./images/x.png,normal\nimages/y.png,pneumonia\nimages/sub/../x.png,pneumonia\n",
        )
        .unwrap();
    let err = manifest_error(&m);
    assert!(
        err.contains("line 4") && err.contains("duplicate") && err.contains("line 2"),
        "{err}"
    );
    std::fs::write(
        &m,
        "file,label\n./images/x.png,normal\nimages//y.png,pneumonia\n",
    )
    .unwrap();
    let ds = Dataset::from_manifest(&m, "pneumonia", None).unwrap();
    let root = crate::paths::absolute_clean(d.path()).unwrap();
    assert_eq!(ds.samples[0].path, root.join("images/x.png"));
    assert_eq!(ds.samples[0].patient_id, "images/x.png");
    assert_eq!(ds.samples[1].path, root.join("images/y.png"));
}

#[test]
fn entries_outside_the_root_need_permission() {
    let d = tempfile::tempdir().unwrap();
    touch_png(&d.path().join("outside/o.png"));
    touch_png(&d.path().join("set/a.png"));
    let m = d.path().join("set/manifest.csv");
    let abs = d.path().join("outside/o.png");
    for entry in [
        "../outside/o.png".to_string(),
        abs.display().to_string(),
        "../../../../../../etc/passwd".into(),
    ] {
        std::fs::write(&m, format!("file,label\na.png,normal\n{entry},pneumonia\n")).unwrap();
        let err = manifest_error(&m);
        assert!(
            err.contains("line 3") && err.contains("leaves the dataset root"),
            "{entry}: {err}"
        );
    }
    std::fs::write(&m, "file,label\na.png,normal\n../outside/o.png,pneumonia\n").unwrap();
    let opts = LoadOptions {
        allow_outside_root: true,
        ..LoadOptions::default()
    };
    let ds = Dataset::from_manifest_opts(&m, "pneumonia", None, opts).unwrap();
    assert_eq!(
        ds.samples[1].path,
        crate::paths::absolute_clean(&abs).unwrap()
    );
    let desc = d.path().join("set.toml");
    std::fs::write(&desc, "root = \"set\"\npositive = \"pneumonia\"\n").unwrap();
    assert!(Dataset::from_descriptor(&desc).is_err());
    std::fs::write(
        &desc,
        "root = \"set\"\npositive = \"pneumonia\"\nallow_outside_root = true\n",
    )
    .unwrap();
    assert_eq!(Dataset::from_descriptor(&desc).unwrap().samples.len(), 2);
}

#[cfg(unix)]
#[test]
fn folder_links_neither_loop_nor_relabel() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..3 {
        touch_png(&d.path().join(format!("normal/n{i}.png")));
        touch_png(&d.path().join(format!("opacity/o{i}.png")));
    }
    std::os::unix::fs::symlink("..", d.path().join("normal/up")).unwrap();
    std::os::unix::fs::symlink("../..", d.path().join("opacity/up")).unwrap();
    let ds = Dataset::from_folder(d.path(), "opacity").unwrap();
    assert_eq!(ds.samples.len(), 6);
    assert_eq!(ds.label_counts()["normal"], 3);
    assert!(ds.samples.iter().all(|s| s
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&s.label[..1])));
}

#[test]
fn directories_given_as_files_and_files_as_folders_say_so() {
    let d = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        Dataset::from_manifest(d.path(), "x", None).unwrap_err()
    );
    assert!(err.contains("is a directory"), "{err}");
    let f = d.path().join("m.csv");
    std::fs::write(&f, "file,label\n").unwrap();
    let err = format!("{:#}", Dataset::from_folder(&f, "x").unwrap_err());
    assert!(err.contains("is a file"), "{err}");
}

#[test]
fn unknown_labels_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let m = manifest(d.path(), &["a.png,normal,p1,", "b.png,pneumonia,p2,"]);
    let err = format!(
        "{:#}",
        Dataset::from_manifest(&m, "tuberculosis", None).unwrap_err()
    );
    assert!(
        err.contains("unknown positive label") && err.contains("manifest.csv"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        Dataset::from_manifest(&m, "pneumonia", Some(&["pneumonia".into(), "covid".into()]))
            .unwrap_err()
    );
    assert!(err.contains("unknown label \"covid\""), "{err}");
}

#[test]
fn empty_fields_and_bad_header_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.csv");
    std::fs::write(&p, "file,label\na.png,\n").unwrap();
    let err = format!("{:#}", Dataset::from_manifest(&p, "x", None).unwrap_err());
    assert!(
        err.contains("line 2") && err.contains("empty `label`"),
        "{err}"
    );
    std::fs::write(&p, "path,class\na.png,x\n").unwrap();
    let err = format!("{:#}", Dataset::from_manifest(&p, "x", None).unwrap_err());
    assert!(err.contains("line 1") && err.contains("`file`"), "{err}");
}

#[test]
fn verify_images_fails_or_skips_corrupt_files() {
    let d = tempfile::tempdir().unwrap();
    let m = manifest(
        d.path(),
        &[
            "a.png,normal,p1,",
            "b.png,pneumonia,p2,",
            "c.png,pneumonia,p3,",
        ],
    );
    std::fs::write(d.path().join("b.png"), b"garbage").unwrap();
    let mut ds = Dataset::from_manifest(&m, "pneumonia", None).unwrap();
    let err = format!("{:#}", ds.clone().verify_images(false).unwrap_err());
    assert!(err.contains("b.png"), "{err}");
    assert_eq!(ds.verify_images(true).unwrap(), 1);
    assert_eq!(ds.samples.len(), 2);
}

#[test]
fn folder_tree_labels_are_subfolders() {
    let d = tempfile::tempdir().unwrap();
    touch_png(&d.path().join("NORMAL/x1.png"));
    touch_png(&d.path().join("NORMAL/sub/x2.jpeg").with_extension("png"));
    touch_png(&d.path().join("PNEUMONIA/y1.png"));
    std::fs::write(d.path().join("PNEUMONIA/notes.txt"), "x").unwrap();
    let ds = Dataset::from_folder(d.path(), "PNEUMONIA").unwrap();
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(ds.label_counts()["NORMAL"], 2);
    assert_eq!(ds.samples.iter().filter(|s| s.target == 1.0).count(), 1);
}

#[test]
fn descriptor_paths_are_relative_to_the_descriptor() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data/set1");
    manifest(&data, &["a.png,normal,p1,", "b.png,pneumonia,p2,"]);
    std::fs::create_dir_all(d.path().join("descr")).unwrap();
    let desc = d.path().join("descr/set1.toml");
    std::fs::write(
        &desc,
        "name = \"set1\"\nroot = \"../data/set1\"\npositive = \"pneumonia\"\nlicense = \"CC0\"\n",
    )
    .unwrap();
    let ds = Dataset::from_descriptor(&desc).unwrap();
    assert_eq!(ds.name, "set1");
    assert_eq!(ds.samples.len(), 2);
    assert_eq!(ds.license.as_deref(), Some("CC0"));
    std::fs::write(&desc, "root = \"../nowhere\"\npositive = \"pneumonia\"\n").unwrap();
    let err = format!("{:#}", Dataset::from_descriptor(&desc).unwrap_err());
    assert!(
        err.contains("nowhere") && err.contains("relative to the descriptor"),
        "{err}"
    );
}
