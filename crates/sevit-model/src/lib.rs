//! `sevit-model`: the DISTL network on libtorch (`tch`).
//!
//! * [`ViTConfig`], [`DinoHeadConfig`], [`ModelConfig`]: presets `micro`, `tiny/P`, `small/P`,
//!   `base/P` (P = 8 or 16) and the reference heads.
//! * [`DistlNet`]: the ViT backbone ([`VisionTransformer`]), the DINO feature head
//!   ([`DinoHead`]) and the class head ([`ClassHead`]), with variables named as the reference
//!   PyTorch state dict (`backbone.blocks.0.attn.qkv.weight`, `head.last_layer.weight_v`,
//!   `cls_head.mlp.0.weight`); the multi-crop forward ([`DistlNet::forward_multi`]) and the
//!   last block's attention maps.
//! * [`Checkpoint`]: safetensors checkpoints written atomically, with strict, descriptive
//!   loading into a `VarStore`.
//! * [`import`]: reading PyTorch `.pth` files (zip + pickle, no Python) and mapping DINO /
//!   DISTL weights into sevit names.
//!
//! * [`precision`]: fp16 / bf16 autocast regions ([`Autocast`], [`with_autocast`]) on CUDA
//!   and CPU.
//! * [`kernels`]: sevit's own CPU kernels (f32) next to libtorch's: [`short_attention`] for
//!   a ViT's short token sequences, [`bias_gelu`] for the MLP's first half and
//!   [`bias_residual`] for the branches' last products joining the residual stream.
//!
//! Everything runs on CPU or CUDA through `tch::Device`.

pub mod bias_gelu;
pub mod bias_residual;
pub mod checkpoint;
pub mod config;
pub mod heads;
pub mod import;
pub mod kernels;
pub mod layers;
pub mod layouts;
pub mod net;
pub mod ops;
pub mod pickle;
pub mod precision;
pub mod pth;
pub mod short_attention;
pub mod vit;

pub use checkpoint::{Checkpoint, KeyReport};
pub use config::{DinoHeadConfig, ModelConfig, ViTConfig};
pub use heads::{ClassHead, DinoHead};
pub use import::{import_weights, ConfigSource, ImportOptions, ImportSummary};
pub use net::{DistlNet, MultiCropOutput};
pub use precision::{with_autocast, Autocast, Precision};
pub use vit::VisionTransformer;

/// Serialises this crate's tests that draw from libtorch's global random generator: a test
/// that seeds it and compares two draws must not have another test thread draw in between.
#[cfg(test)]
pub(crate) fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
