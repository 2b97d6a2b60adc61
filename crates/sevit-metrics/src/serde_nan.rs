//! Serde helpers for `f64` fields that may be undefined: JSON has no NaN or infinity.
//!
//! * [`nan_as_null`]: an undefined ratio (NaN, e.g. PPV with no predicted positive) is written as
//!   `null` and read back as NaN.
//! * [`inf_as_null`]: the `+inf` threshold of the first ROC point is written as `null` and read
//!   back as `+inf`.
//!
//! Both write finite values as plain numbers, so the JSON is readable by any tool.

/// NaN (or any non-finite value) ⇄ `null`; `null` reads back as NaN.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes finite values as numbers and anything else as `null`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Reads a number, or `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// `+inf` ⇄ `null` (for thresholds, which are never NaN).
pub mod inf_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes finite values as numbers and anything else as `null`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        super::nan_as_null::serialize(v, s)
    }

    /// Reads a number, or `null` as `+inf`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}
