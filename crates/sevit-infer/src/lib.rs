//! `sevit-infer`: using trained checkpoints: evaluation, robustness, comparison, attention
//! maps, prediction on new images, embeddings and export (the library side of `sevit eval`,
//! `compare`, `visualize`, `predict`, `embed` and `export`). It reads what the engine
//! (`sevit-distill`) writes and never trains.
//!
//! * [`model`]: [`InferenceModel`] — a checkpoint's student or teacher loaded once, with the
//!   preprocessing of its training config (image size, inference blur); scoring of loaded
//!   images and last-layer CLS attention; [`resolve_checkpoint`] (`--checkpoint` or
//!   `--run --stage`).
//! * [`source`]: labelled [`CaseSource`]s (run split subset, descriptor, manifest, folder) and
//!   unlabelled [`ImageList`]s, with case ids (relative paths).
//! * [`evaluate`]: [`evaluate_checkpoint`] → `report.json`, `predictions.csv`, `roc.png`,
//!   `reliability.png` (scores from [`sevit_distill::scoring::predict`]).
//! * [`robustness`]: [`evaluate_robustness`] → AUC per nuisance kind and severity
//!   (`nuisance.csv/json/png`).
//! * [`compare`]: [`compare_predictions`], the paired DeLong test of two prediction files
//!   matched by case id.
//! * [`attention`]: [`mass_mask`] (DINO's attention-mass threshold) and the per-image grid.
//! * [`visualize`]: image selection and one attention grid per image.
//! * [`export`]: [`export_torchscript`], the network as a TorchScript module for PyTorch.
//! * [`predict`]: [`predict_images`] → `file,probability,predicted,threshold`.

pub mod attention;
pub mod compare;
pub mod embed;
pub mod evaluate;
pub mod export;
pub mod html_report;
mod images;
pub mod model;
pub mod predict;
pub mod robustness;
pub mod source;
pub mod visualize;

#[cfg(test)]
mod tests;

pub use attention::{mass_kept, mass_mask, write_attention_grid, AttentionGrid, GridOptions};
pub use compare::{compare_predictions, load_predictions, pair};
pub use embed::{embed_images, EmbedFormat, Embeddings};
pub use evaluate::{default_out_dir, evaluate_checkpoint, EvalFiles, EvalOutcome, EvalRequest};
pub use export::{export_torchscript, ExportInfo};
pub use model::{
    positive_label_of, resolve_checkpoint, run_stages, AttentionMaps, InferenceModel,
    InferenceSettings, SettingOverrides,
};
pub use predict::{
    predict_images, youden_threshold_from_report, PredictOptions, PredictOutcome, PredictionRow,
};
pub use robustness::{
    evaluate_robustness, RobustnessFiles, RobustnessOptions, RobustnessReport, RobustnessRow,
};
pub use source::{case_id, list_images, CaseSource, Cases, ImageList};
pub use visualize::{
    grid_file_name, grid_title, visualize, ImageSelection, SelectedImage, Visualized,
};
