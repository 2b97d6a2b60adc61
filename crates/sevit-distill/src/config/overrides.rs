//! Editing a config before it is read: `--set key=value` overrides and the check for keys that
//! were renamed.

use anyhow::{bail, Context};

/// Keys that were renamed: `(section, old, new)`.
const RENAMED_KEYS: [(&str, &str, &str); 2] = [
    ("distl", "ssl_epochs", "dino_epochs"),
    ("pretrain", "ssl_epochs", "self_supervised_epochs"),
];

/// An old key is an error that names the new one (a silent alias would hide which of two
/// meanings a config means).
pub(super) fn refuse_renamed_keys(table: &toml::Table) -> anyhow::Result<()> {
    for (section, old, new) in RENAMED_KEYS {
        if table
            .get(section)
            .and_then(|s| s.as_table())
            .is_some_and(|t| t.contains_key(old))
        {
            bail!(
                "`{section}.{old}` was renamed `{section}.{new}` (each name now says one thing: \
                 `distl.dino_epochs` = epochs of a DISTL step with the DINO term, \
                 `pretrain.self_supervised_epochs` = epochs of DINO-only pretraining): rename it"
            );
        }
    }
    Ok(())
}

pub(super) fn apply_override(table: &mut toml::Table, kv: &str) -> anyhow::Result<()> {
    let (key, raw) = kv
        .split_once('=')
        .with_context(|| "expected key=value (for example optim.epochs=2)".to_string())?;
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("empty component in key {key:?}");
    }
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("`{p}` in {key:?} is not a table"),
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
