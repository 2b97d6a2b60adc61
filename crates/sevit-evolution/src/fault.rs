//! Named crash points for the crash-consistency tests.
//!
//! `SEVIT_FAULT=<name>` makes the process abort (no destructors, no flushing: as abrupt as
//! `kill -9`) when it reaches the crash point of that name. Unset, a crash point costs one
//! environment lookup.

/// Aborts the process when `SEVIT_FAULT` equals `name`.
pub fn crash_point(name: &str) {
    if std::env::var("SEVIT_FAULT").is_ok_and(|v| v == name) {
        eprintln!("sevit: SEVIT_FAULT={name}: aborting here (crash test)");
        std::process::abort();
    }
}
