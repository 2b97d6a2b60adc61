//! `sevit-data`: everything between image files on disk and `tch` tensors.
//!
//! * [`dataset`]: a [`Dataset`] from a TOML descriptor (`data-manifests/*.toml`), a
//!   `manifest.csv` (`file,label,patient_id,...`) or a folder tree whose sub-folder names are
//!   the labels.
//! * [`load`]: PNG (8/16 bit), JPEG and DICOM to a [`GrayImage`] (f32, min-max normalised per
//!   image to `[0,1]`, resized).
//! * [`split`]: the seeded, label-stratified, patient-grouped split into `labeled`,
//!   `fold0..k-1`, `val` and `test`, written to and read back from `split.csv`.
//! * [`augment`]: the DISTL multi-crop views (each transform a separate function following
//!   torchvision / Pillow semantics) and the inference transform.
//! * [`loader`]: parallel (rayon) decoding + augmentation into `tch` batches, prefetched by a
//!   background thread into a bounded channel.
//! * [`synth`]: the deterministic synthetic chest X-ray phantom generator (the embedded
//!   default dataset).
//!
//! Randomness is always derived from explicit seeds ([`rng::derive_seed`]), never from
//! thread timing: the same seed gives the same split, the same views and the same batches.

pub mod augment;
pub mod dataset;
pub mod dicom;
pub mod gray;
pub mod load;
pub mod loader;
pub mod nuisance;
pub mod paths;
pub mod rng;
pub mod split;
pub mod synth;
mod util;

pub use augment::{inference_transform, multi_crop, MultiCropConfig, ViewAugment};
pub use dataset::{Dataset, Descriptor, Sample};
pub use gray::GrayImage;
pub use load::load_gray;
pub use loader::{
    eval_loader, multi_crop_loader, multi_crop_loader_sharded, shard_plan, EvalBatch, EvalLoader,
    Loader, LoaderConfig, MultiCropBatch, MultiCropLoader, Shard,
};
pub use split::{Split, SplitConfig, Subset, TestSelection};
pub use synth::SynthConfig;
