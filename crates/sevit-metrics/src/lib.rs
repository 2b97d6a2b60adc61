//! sevit-metrics: evaluation of a binary classifier's scores, in pure Rust.
//!
//! * [`roc_auc`], [`roc_curve`]: AUC as the Mann–Whitney statistic with midranks (ties count ½),
//!   equal to scikit-learn's `roc_auc_score` and pROC's AUC.
//! * [`delong_ci`], [`delong_paired`]: DeLong variance with the plain normal CI clipped to
//!   `[0, 1]` (as pROC), and the paired DeLong test of two models on the same cases, both with
//!   the `O(n log n)` midrank algorithm of Sun & Xu (2014).
//! * [`bootstrap_ci`]: stratified percentile bootstrap, seeded and deterministic.
//! * [`at_threshold`], [`youden_threshold`], [`threshold_for_sensitivity`]: confusion counts,
//!   sensitivity, specificity, PPV, NPV, accuracy, F1.
//! * [`calibration`]: Brier score, ECE, reliability bins.
//! * [`evaluate`] → [`EvalReport`] (`report.json`, a text table), [`compare`] →
//!   [`ComparisonReport`], [`write_predictions_csv`] / [`read_predictions_csv`]
//!   (`predictions.csv`), [`NuisanceTable`] (CSV): all files are written atomically.
//!
//! Numbers only: pictures of them are `sevit-render`'s, the experiment report
//! `sevit-experiment`'s.
//!
//! Convention: a higher score means "more likely positive", and `score >= threshold` is called
//! positive. Invalid inputs (empty, length mismatch, NaN, one class only, bad parameters) give a
//! [`MetricsError`].
#![warn(missing_docs)]

mod bootstrap;
mod calibration;
mod delong;
mod error;
mod input;
pub mod io;
pub mod normal;
mod nuisance;
pub mod pairing;
pub mod report;
mod roc;
pub mod serde_nan;
mod threshold;

pub use bootstrap::bootstrap_ci;
pub use calibration::{calibration, Calibration, ReliabilityBin};
pub use delong::{
    delong_ci, delong_paired, delong_paired_level, delong_variance, AucCi, CiMethod, PairedTest,
};
pub use error::MetricsError;
pub use normal::{normal_cdf, normal_quantile, two_sided_p};
pub use nuisance::{NuisanceRow, NuisanceTable};
pub use report::{
    compare, evaluate, probability_column, read_predictions_csv, write_predictions_csv,
    BootstrapOptions, ComparisonReport, EvalOptions, EvalReport, Predictions, TargetSensitivity,
    ThresholdsBlock,
};
pub use roc::{roc_auc, roc_curve, trapezoid_area, RocPoint};
pub use threshold::{at_threshold, threshold_for_sensitivity, youden_threshold, ThresholdMetrics};
