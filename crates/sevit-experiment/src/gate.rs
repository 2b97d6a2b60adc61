//! The backbone gate: before a self-supervised backbone starts the curriculum, its DINO loss
//! must be well below chance (ln K for a K-wide head) and a k-NN probe on its CLS features
//! must beat the same probe on random weights.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sevit_data::Sample;
use sevit_distill::log::{epoch_means_of, read_log, StepKind};
use sevit_infer::{embed_images, ImageList, InferenceModel};
use tch::{Kind, Tensor};

use crate::protocol::BackboneGate;

/// What the gate measured and decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// Mean DINO loss of the last pretraining epoch.
    pub dino_loss: f64,
    /// ln K of the K-wide DINO head: the loss of a uniform prediction.
    pub ln_k: f64,
    /// `dino_loss / ln_k`.
    pub loss_ratio: f64,
    /// k-NN probe AUC of the backbone on the validation images.
    pub probe_auc: f64,
    /// The same probe on random weights.
    pub random_probe_auc: f64,
    /// Neighbours of the probe.
    pub k: usize,
    /// Images in the probe's memory bank and queries.
    pub bank: usize,
    /// Queries.
    pub queries: usize,
    /// The thresholds it was held to.
    pub gate: BackboneGate,
    /// Both conditions met.
    pub passed: bool,
}

impl GateResult {
    /// Probe AUC gain over random weights.
    pub fn gain(&self) -> f64 {
        self.probe_auc - self.random_probe_auc
    }
}

/// Where the gate's result is kept in the backbone's stage directory.
pub fn result_path(backbone_dir: &Path) -> std::path::PathBuf {
    backbone_dir.join("gate.json")
}

/// The gate's result in `backbone_dir`, or `None` when the gate has not run there yet.
///
/// # Errors
/// A result file that cannot be read or parsed: the report must not call a backbone
/// "not gated" because its record was damaged.
pub fn read_result(backbone_dir: &Path) -> anyhow::Result<Option<GateResult>> {
    let path = result_path(backbone_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a backbone gate result ({e}); delete it and rerun the protocol to measure the gate again",
            path.display()
        )
    })
}

/// Mean DINO loss of the last epoch of a self-supervised stage's `log.jsonl`.
///
/// # Errors
/// Unreadable log, or no self-supervised record with a DINO loss.
pub fn final_dino_loss(log: &Path) -> anyhow::Result<f64> {
    epoch_means_of(&read_log(log)?, StepKind::SelfSupervised, |r| r.dino)
        .last()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("{}: no self-supervised record", log.display()))
}

/// Weighted k-NN probe (DINO's evaluation: cosine similarity, weights `exp(sim / 0.07)`): the
/// share of positive neighbours as the score of each query, and its ROC AUC.
///
/// # Errors
/// An image cannot be read, or the queries hold one class only.
pub fn knn_probe_auc(
    model: &InferenceModel,
    bank: &[Sample],
    queries: &[Sample],
    k: usize,
) -> anyhow::Result<f64> {
    anyhow::ensure!(
        !bank.is_empty() && !queries.is_empty(),
        "k-NN probe: no images"
    );
    let features = |s: &[Sample]| -> anyhow::Result<Tensor> {
        let list = ImageList {
            paths: s.iter().map(|s| s.path.clone()).collect(),
            ids: s.iter().map(|s| s.path.display().to_string()).collect(),
            ignored: 0,
        };
        let f = embed_images(model, &list)?.features.to_kind(Kind::Float);
        let norm = f.norm_scalaropt_dim(2.0, [1i64], true).clamp_min(1e-12);
        Ok(f / norm)
    };
    let (fb, fq) = (features(bank)?, features(queries)?);
    let yb = Tensor::from_slice(&bank.iter().map(|s| s.target).collect::<Vec<f32>>());
    let k = k.min(bank.len()) as i64;
    let (sim, idx) = fq.matmul(&fb.tr()).topk(k, 1, true, true);
    let w = (sim / 0.07).exp();
    let y = yb.index_select(0, &idx.flatten(0, -1)).view([-1, k]);
    let score = (&w * y).sum_dim_intlist(&[1i64][..], false, Kind::Float)
        / w.sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let scores = Vec::<f64>::try_from(score.to_kind(Kind::Double))?;
    let labels: Vec<bool> = queries.iter().map(|s| s.target > 0.5).collect();
    Ok(sevit_metrics::roc_auc(&labels, &scores)?)
}

/// Measures the gate of backbone `checkpoint` (network `weights`), pretrained with DINO
/// head width `out_dim`, whose log is `log`; the probe's bank is `bank`, its queries
/// `queries`.
///
/// # Errors
/// The log or an image cannot be read.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    checkpoint: &Path,
    weights: sevit_distill::Weights,
    log: &Path,
    out_dim: i64,
    bank: &[Sample],
    queries: &[Sample],
    gate: &BackboneGate,
    seed: u64,
) -> anyhow::Result<GateResult> {
    let dino_loss = final_dino_loss(log)?;
    let ln_k = (out_dim as f64).ln();
    let model = InferenceModel::load(checkpoint, weights, None, &Default::default())?;
    let probe_auc = knn_probe_auc(&model, bank, queries, gate.probe_k)?;
    let random_probe_auc = knn_probe_auc(&model.random_like(seed), bank, queries, gate.probe_k)?;
    let loss_ratio = dino_loss / ln_k;
    let passed =
        loss_ratio <= gate.max_loss_ratio && probe_auc - random_probe_auc >= gate.min_probe_gain;
    Ok(GateResult {
        dino_loss,
        ln_k,
        loss_ratio,
        probe_auc,
        random_probe_auc,
        k: gate.probe_k,
        bank: bank.len(),
        queries: queries.len(),
        gate: gate.clone(),
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_result_is_none_a_damaged_one_an_error_and_a_written_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_result(dir.path()).unwrap().is_none());

        std::fs::write(result_path(dir.path()), "{\"dino_loss\": 7.7").unwrap();
        let err = read_result(dir.path()).unwrap_err().to_string();
        assert!(err.contains("gate.json") && err.contains("rerun"), "{err}");

        let g = GateResult {
            dino_loss: 7.744,
            ln_k: 4096f64.ln(),
            loss_ratio: 7.744 / 4096f64.ln(),
            probe_auc: 0.795,
            random_probe_auc: 0.781,
            k: 20,
            bank: 2341,
            queries: 266,
            gate: BackboneGate {
                max_loss_ratio: 0.8,
                min_probe_gain: 0.05,
                probe_k: 20,
                required: false,
            },
            passed: false,
        };
        std::fs::write(result_path(dir.path()), serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(read_result(dir.path()).unwrap(), Some(g));
    }
}
