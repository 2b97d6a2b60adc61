//! Helpers shared by this crate's integration tests.

use std::path::PathBuf;

/// The Python of the torch venv (`$SEVIT_TORCH_PYTHON`, set by `scripts/setup.sh`'s cargo
/// config) when it is an executable file.
pub fn python() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("SEVIT_TORCH_PYTHON")?);
    let ok = std::fs::metadata(&p).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    ok.unwrap_or(false).then_some(p)
}
