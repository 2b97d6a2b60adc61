//! The append-only audit log, `audit.jsonl`: one JSON object per registry event, in sequence.
//!
//! The registry is written first; the log is then brought up to date with every event it
//! lacks ([`sync`]), which every command that opens the site for writing runs. A crash
//! between the two is repaired by the next command, and no event is ever written twice. A
//! torn last line (a crash inside the append) is set aside into `audit.jsonl.torn-<seq>`
//! before the log is continued.

use std::io::Write;

use anyhow::Context;

use crate::registry::{Event, Registry};
use crate::site::Site;

/// The events of the log, in order (a torn last line is ignored).
pub fn read(site: &Site) -> anyhow::Result<Vec<Event>> {
    let p = site.audit_jsonl();
    if !p.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str::<Event>(l) {
            Ok(e) => out.push(e),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(e).with_context(|| format!("{}: line {}", p.display(), i + 1)),
        }
    }
    Ok(out)
}

/// Appends every event of `registry` that the log lacks; returns how many.
pub fn sync(site: &Site, registry: &Registry) -> anyhow::Result<usize> {
    let p = site.audit_jsonl();
    let logged = read(site)?;
    let last = logged.last().map_or(0, |e| e.seq);
    if p.exists() {
        let text = std::fs::read(&p)?;
        if !text.is_empty() && !text.ends_with(b"\n") {
            // a torn append: keep the fragment aside, cut the log back to its whole lines
            let cut = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            std::fs::write(
                p.with_extension(format!("jsonl.torn-{}", last + 1)),
                &text[cut..],
            )?;
            let f = std::fs::OpenOptions::new().write(true).open(&p)?;
            f.set_len(cut as u64)?;
            f.sync_all()?;
        }
    }
    let missing: Vec<&Event> = registry.events.iter().filter(|e| e.seq > last).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    for e in &missing {
        let mut line = serde_json::to_string(e)?;
        line.push('\n');
        f.write_all(line.as_bytes())?;
    }
    f.sync_all()
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(missing.len())
}
