//! The typed error of every metric in this crate.

use thiserror::Error;

/// Why a metric could not be computed from the inputs it was given.
///
/// Each variant names the offending input (and the index of the first bad value where there is
/// one) so that a caller can wrap it with its own context (file, model) and show it as is.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// No cases at all.
    #[error("no cases: the label and score vectors are empty")]
    Empty,
    /// Labels and scores (or two score vectors) differ in length.
    #[error("length mismatch: {what} has {got} entries but the labels have {expected}")]
    LengthMismatch {
        /// Which vector is of the wrong length ("scores", "scores_b", "ids", ...).
        what: &'static str,
        /// Number of labels.
        expected: usize,
        /// Length of the offending vector.
        got: usize,
    },
    /// Only one class is present, so the ROC curve and AUC are undefined.
    #[error(
        "only one class present ({n_pos} positive, {n_neg} negative cases): \
         ROC AUC needs at least one case of each class"
    )]
    OneClass {
        /// Number of positive cases.
        n_pos: usize,
        /// Number of negative cases.
        n_neg: usize,
    },
    /// Too few cases of a class for a variance estimate (DeLong needs two of each).
    #[error(
        "too few cases for {method}: {n_pos} positive and {n_neg} negative, \
         at least {need} of each are needed"
    )]
    TooFewCases {
        /// The method that needs them ("DeLong variance", ...).
        method: &'static str,
        /// Number of positive cases.
        n_pos: usize,
        /// Number of negative cases.
        n_neg: usize,
        /// The minimum per class.
        need: usize,
    },
    /// A score is NaN or infinite.
    #[error("{what}[{index}] is {value}, not a finite number")]
    NonFinite {
        /// Which vector ("scores", "probs", ...).
        what: &'static str,
        /// Index of the first non-finite value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A probability lies outside `[0, 1]` (calibration needs probabilities, not logits).
    #[error("{what}[{index}] = {value} is not a probability in [0, 1]")]
    NotAProbability {
        /// Which vector.
        what: &'static str,
        /// Index of the first offending value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name (`level`, `n_bins`, `target`, `n_boot`, ...).
        name: &'static str,
        /// The value given, formatted.
        value: String,
        /// What the valid range is.
        reason: &'static str,
    },
}

impl MetricsError {
    pub(crate) fn invalid(name: &'static str, value: impl ToString, reason: &'static str) -> Self {
        MetricsError::InvalidParameter {
            name,
            value: value.to_string(),
            reason,
        }
    }
}
