//! Mixed precision of the training forward passes (`precision` in [`crate::TrainConfig`]):
//! `f32` (default), or `bf16` autocast on CUDA and CPU, the way PyTorch's
//! `torch.autocast(device_type, dtype=torch.bfloat16)` runs a forward pass: matrix products in
//! bf16; the losses are computed in f32 (they ask for it explicitly, since CPU autocast keeps
//! softmax in bf16); parameters and gradients stay f32, so no loss scaling is needed. `f16` is refused for training: fp16 gradients need a loss scaler, which
//! this engine does not implement.
//!
//! The autocast region itself is [`sevit_model::precision::Autocast`] (re-exported here);
//! this module adds what training needs on top of it.

use anyhow::bail;
pub use sevit_model::precision::{current, Autocast, Precision};

/// Checks that `precision` can train (on any device).
///
/// # Errors
/// `f16` (needs loss scaling, not implemented).
pub fn check_training(precision: Precision) -> anyhow::Result<()> {
    if precision == Precision::F16 {
        bail!(
            "precision = \"f16\" is not supported for training: fp16 gradients need a loss scaler; use \"bf16\" (no scaling needed) or \"f32\""
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_cannot_train() {
        let e = check_training(Precision::F16).unwrap_err().to_string();
        assert!(e.contains("loss scaler"), "{e}");
        check_training(Precision::Bf16).unwrap();
        check_training(Precision::F32).unwrap();
    }
}
