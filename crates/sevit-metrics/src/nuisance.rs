//! The nuisance table: AUC (with CI) per model, nuisance kind (noise, blur, contrast, ...) and
//! severity, as CSV and as a line plot with one series per (model, kind).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::delong::AucCi;
use crate::io::write_atomic;

/// One row: a model's AUC on the test set degraded by `kind` at `severity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NuisanceRow {
    /// Model name (e.g. "DISTL T=3", "supervised").
    pub model: String,
    /// Nuisance kind (e.g. "noise").
    pub kind: String,
    /// Severity (0 = clean).
    pub severity: f64,
    /// AUC.
    pub auc: f64,
    /// Lower CI bound.
    pub lower: f64,
    /// Upper CI bound.
    pub upper: f64,
}

/// Rows of AUC per nuisance severity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NuisanceTable {
    /// The rows, in insertion order.
    pub rows: Vec<NuisanceRow>,
}

impl NuisanceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row from an AUC with its CI.
    pub fn push(&mut self, model: &str, kind: &str, severity: f64, ci: &AucCi) {
        self.rows.push(NuisanceRow {
            model: model.to_string(),
            kind: kind.to_string(),
            severity,
            auc: ci.auc,
            lower: ci.lower,
            upper: ci.upper,
        });
    }

    /// Writes the table as CSV (`model,kind,severity,auc,lower,upper`), atomically.
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for row in &self.rows {
            w.serialize(row)
                .with_context(|| format!("serialising a row of {}", path.display()))?;
        }
        if self.rows.is_empty() {
            w.write_record(["model", "kind", "severity", "auc", "lower", "upper"])?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("buffering CSV: {e}"))?;
        write_atomic(path, &bytes)
    }

    /// Reads a table written by [`NuisanceTable::write_csv`].
    pub fn read_csv(path: &Path) -> anyhow::Result<Self> {
        let mut r =
            csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
        let rows = r
            .deserialize()
            .enumerate()
            .map(|(k, row)| row.with_context(|| format!("{}:{}: bad row", path.display(), k + 2)))
            .collect::<anyhow::Result<Vec<NuisanceRow>>>()?;
        Ok(NuisanceTable { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delong::CiMethod;

    fn ci(auc: f64) -> AucCi {
        AucCi {
            auc,
            variance: 0.001,
            lower: auc - 0.05,
            upper: auc + 0.05,
            level: 0.95,
            method: CiMethod::Delong,
        }
    }

    #[test]
    fn csv_round_trip_and_series() {
        let mut t = NuisanceTable::new();
        t.push("DISTL", "noise", 0.2, &ci(0.8));
        t.push("DISTL", "noise", 0.0, &ci(0.9));
        t.push("DISTL", "blur", 1.0, &ci(0.85));
        t.push("supervised", "noise", 0.0, &ci(0.88));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nuisance.csv");
        t.write_csv(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("model,kind,severity,auc,lower,upper\n"),
            "{text}"
        );
        assert_eq!(NuisanceTable::read_csv(&p).unwrap(), t);
    }

    #[test]
    fn empty_table() {
        let t = NuisanceTable::new();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.csv");
        t.write_csv(&p).unwrap();
        assert_eq!(NuisanceTable::read_csv(&p).unwrap(), t);
    }
}
