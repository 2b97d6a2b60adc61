//! Paths at the boundary: every image path that enters sevit is made absolute and lexically
//! clean once, here, so that `./images/x.png`, `images/x.png` and `images/a/../x.png` are one
//! entry; manifest entries that leave their dataset root are refused unless the caller allows
//! them; and folder walks follow directory symlinks without looping or crossing labels.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// `p` made absolute (against the current directory) with `.` and `..` removed lexically.
/// Symlinks are not resolved: a symlinked image keeps the name it was listed under.
///
/// # Errors
/// The current directory cannot be read (for a relative `p`).
pub fn absolute_clean(p: &Path) -> Result<PathBuf> {
    let abs =
        std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // `/..` is `/`; popping a root or prefix is a no-op.
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// The image a manifest entry `file` names, relative to `root` (itself absolute and clean, see
/// [`absolute_clean`]). Absolute entries and entries whose `..` leave `root` are refused unless
/// `allow_outside_root`.
///
/// # Errors
/// An entry outside the root without permission; an empty entry.
pub fn resolve_entry(root: &Path, file: &str, allow_outside_root: bool) -> Result<PathBuf> {
    if file.is_empty() {
        bail!("empty file name");
    }
    let given = Path::new(file);
    let path = absolute_clean(&root.join(given))?;
    if !allow_outside_root && (given.is_absolute() || !path.starts_with(root)) {
        bail!(
            "{file:?} leaves the dataset root {} ({}); list images relative to the manifest's \
             folder, or allow it explicitly: `allow_outside_root = true` in a dataset descriptor, \
             or --allow-outside-root of `sevit split` and `sevit predict`",
            root.display(),
            if given.is_absolute() {
                "an absolute path"
            } else {
                "a `..` path"
            }
        );
    }
    Ok(path)
}

/// `path` relative to `root` with `/` separators, or the whole path when it is not under
/// `root`. Both are expected absolute and clean.
pub fn relative_to(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(r) => r
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

/// The files found by a folder walk, and the directory links it did not follow.
#[derive(Debug, Default)]
pub struct Walk {
    /// Accepted files, sorted, each absolute and clean (named through any followed link).
    pub files: Vec<PathBuf>,
    /// Directory symlinks left alone, with the reason (a cycle, a target inside the walked
    /// tree, a target already walked, or a broken link).
    pub skipped_links: Vec<(PathBuf, String)>,
    /// Regular files (not hidden) that `accept` did not take.
    pub other_files: usize,
}

/// Walks the folder trees of `dirs` (hidden entries skipped) and keeps the files `accept`
/// takes. Directory symlinks are followed only to targets outside `boundary` (the dataset
/// root) that are neither an ancestor of it nor already walked, so a link such as
/// `normal/up -> ..` can neither loop nor copy another label's images; each link left alone
/// is logged as a warning and returned.
///
/// # Errors
/// A folder that cannot be listed.
pub fn walk_files(
    boundary: &Path,
    dirs: &[PathBuf],
    accept: &dyn Fn(&Path) -> bool,
) -> Result<Walk> {
    let boundary_real = boundary
        .canonicalize()
        .with_context(|| format!("cannot resolve folder {}", boundary.display()))?;
    let boundary_given = absolute_clean(boundary)?;
    let mut walker = Walker {
        boundary: boundary_real,
        visited: HashSet::new(),
        out: Walk::default(),
        accept,
    };
    for d in dirs {
        let d = absolute_clean(d)?;
        let real = d
            .canonicalize()
            .with_context(|| format!("cannot resolve folder {}", d.display()))?;
        // The walked folder itself may be a link (the user named it); links below it are checked.
        if d.is_symlink() && d != boundary_given {
            if let Some(why) = walker.refuse_link(&real) {
                walker.skip(d, why);
                continue;
            }
        }
        walker.visited.insert(real);
        walker.walk(&d)?;
    }
    let mut out = walker.out;
    out.files.sort();
    Ok(out)
}

struct Walker<'a> {
    boundary: PathBuf,
    visited: HashSet<PathBuf>,
    out: Walk,
    accept: &'a dyn Fn(&Path) -> bool,
}

impl Walker<'_> {
    fn refuse_link(&self, target: &Path) -> Option<&'static str> {
        if self.boundary.starts_with(target) {
            Some("it points to the walked folder or one of its parents (a cycle)")
        } else if target.starts_with(&self.boundary) {
            Some("it points inside the walked folder, whose images are listed where they are")
        } else if self.visited.contains(target) {
            Some("its target was walked already")
        } else {
            None
        }
    }

    fn skip(&mut self, link: PathBuf, why: &str) {
        tracing::warn!("not following directory link {}: {why}", link.display());
        self.out.skipped_links.push((link, why.to_string()));
    }

    fn walk(&mut self, dir: &Path) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            let ty = e
                .file_type()
                .with_context(|| format!("cannot read {}", p.display()))?;
            if ty.is_symlink() {
                let Ok(meta) = std::fs::metadata(&p) else {
                    if (self.accept)(&p) {
                        self.skip(p, "broken link");
                    }
                    continue;
                };
                if meta.is_dir() {
                    let real = p
                        .canonicalize()
                        .with_context(|| format!("cannot resolve link {}", p.display()))?;
                    if let Some(why) = self.refuse_link(&real) {
                        self.skip(p, why);
                        continue;
                    }
                    self.visited.insert(real);
                    self.walk(&p)?;
                } else if (self.accept)(&p) {
                    self.out.files.push(p);
                } else {
                    self.out.other_files += 1;
                }
            } else if ty.is_dir() {
                if let Ok(real) = p.canonicalize() {
                    self.visited.insert(real);
                }
                self.walk(&p)?;
            } else if (self.accept)(&p) {
                self.out.files.push(p);
            } else {
                self.out.other_files += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_clean_removes_dots_lexically() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute_clean(Path::new("./a/b/../c")).unwrap(),
            cwd.join("a/c")
        );
        assert_eq!(
            absolute_clean(Path::new("/x/./y/../../../z")).unwrap(),
            PathBuf::from("/z")
        );
    }

    #[test]
    fn entries_leaving_the_root_need_permission() {
        let root = Path::new("/data/set");
        assert_eq!(
            resolve_entry(root, "./images/../images/a.png", false).unwrap(),
            PathBuf::from("/data/set/images/a.png")
        );
        for bad in [
            "../../../../etc/passwd",
            "/etc/passwd",
            "images/../../other/a.png",
        ] {
            let e = format!("{:#}", resolve_entry(root, bad, false).unwrap_err());
            assert!(e.contains("leaves the dataset root"), "{bad}: {e}");
            assert!(resolve_entry(root, bad, true).is_ok());
        }
        assert_eq!(
            relative_to(root, Path::new("/data/set/images/a.png")),
            "images/a.png"
        );
        assert_eq!(relative_to(root, Path::new("/etc/x.png")), "/etc/x.png");
    }

    #[cfg(unix)]
    #[test]
    fn walks_follow_outside_links_once_and_never_loop() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        for p in [root.join("a/sub"), root.join("b"), outside.clone()] {
            std::fs::create_dir_all(p).unwrap();
        }
        for f in [
            root.join("a/1.png"),
            root.join("a/sub/2.png"),
            root.join("b/3.png"),
            outside.join("4.png"),
        ] {
            std::fs::write(f, b"x").unwrap();
        }
        symlink("..", root.join("a/up")).unwrap();
        symlink("../..", root.join("a/sub/up2")).unwrap();
        symlink("../b", root.join("a/cross")).unwrap();
        symlink(&outside, root.join("a/ext")).unwrap();
        symlink(&outside, root.join("a/ext_again")).unwrap();
        symlink(root.join("nowhere"), root.join("a/broken.png")).unwrap();
        let accept = |p: &Path| p.extension().is_some_and(|e| e == "png");
        let w = walk_files(&root, &[root.join("a")], &accept).unwrap();
        let names: Vec<String> = w
            .files
            .iter()
            .map(|p| relative_to(&absolute_clean(&root).unwrap(), p))
            .collect();
        assert_eq!(names, ["a/1.png", "a/ext/4.png", "a/sub/2.png"]);
        assert_eq!(w.skipped_links.len(), 5, "{:?}", w.skipped_links);
        // A walked folder given through a link of its own is walked.
        let link = d.path().join("link_to_root");
        symlink(&root, &link).unwrap();
        let w = walk_files(&link, std::slice::from_ref(&link), &accept).unwrap();
        assert_eq!(w.files.len(), 4, "{:?}", w.files);
    }
}
