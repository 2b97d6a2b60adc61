//! Helpers shared by the cross-crate integration tests in `tests/`.

use std::path::PathBuf;

/// Root of the repository checkout.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data` beside the checkout, when this machine has it.
pub fn shared_data() -> Option<PathBuf> {
    let p = repo_root().join("..").join("shared").join("data");
    p.is_dir().then_some(p)
}
