use super::{git_commit_of, shown};
use std::process::Command;

fn git(dir: &std::path::Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs")
        .status
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn names_the_commit_that_added_a_file_and_the_one_that_last_changed_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let notes = d.join("protocol.md");
    assert_eq!(git_commit_of(&notes, true), "not committed");
    git(d, &["init", "-q"]);
    std::fs::write(&notes, "registered\n").unwrap();
    git(d, &["add", "protocol.md"]);
    git(d, &["commit", "-q", "-m", "register"]);
    std::fs::write(&notes, "amended\n").unwrap();
    git(d, &["commit", "-q", "-am", "amend"]);
    let head = |rev: &str| {
        let out = Command::new("git")
            .current_dir(d)
            .args(["log", "-1", "--format=%h %cs", rev])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(git_commit_of(&notes, true), head("HEAD~1"));
    assert_eq!(git_commit_of(&notes, false), head("HEAD"));
    assert_ne!(head("HEAD~1"), head("HEAD"));
    assert_eq!(
        git_commit_of(&d.join("untracked.md"), false),
        "not committed"
    );
}

#[test]
fn report_paths_are_relative_to_the_working_directory_when_below_it() {
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(shown(&cwd.join("docs/protocol.md")), "docs/protocol.md");
    let outside = std::path::Path::new("/nonexistent-root/protocol.md");
    assert_eq!(shown(outside), "/nonexistent-root/protocol.md");
}
