//! Atomic file writing (see `sevit-fs`).

pub use sevit_fs::write_atomic;
