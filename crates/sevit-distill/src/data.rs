//! The engine's view of `sevit-data`: multi-crop training batches, evaluation batches and the
//! number of iterations per epoch.

use anyhow::Context;
use sevit_data::{LoaderConfig, MultiCropConfig, Sample, Shard};
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use sevit_dist::Dist;

/// One multi-crop training batch on the training device.
pub struct Batch {
    /// Views `[B, 3, H, W]`: global 1, global 2, locals.
    pub views: Vec<Tensor>,
    /// Targets `[B]` (0/1 floats).
    pub targets: Tensor,
    /// Positions of the batch's images in the sample list the batches were drawn from.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.targets.size().first().copied().unwrap_or(0) as usize
    }

    /// Whether the batch has no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unlabeled iterations (batches) per epoch for `n` images.
///
/// `drop_last` drops the incomplete last batch, except that a set smaller than one batch keeps
/// its single short batch (so tiny labeled sets still train).
pub fn iters_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    iters_per_epoch_sharded(n, batch_size, drop_last, 1)
}

/// Iterations per epoch of a data-parallel job of `world` processes with `batch_size` images per
/// process (global batch `batch_size * world`), as [`iters_per_epoch`] on the global batch
/// except that a last batch with fewer images than processes is dropped
/// (`sevit_data::loader::shard_plan`). Equal to [`iters_per_epoch`] for one process.
pub fn iters_per_epoch_sharded(
    n: usize,
    batch_size: usize,
    drop_last: bool,
    world: usize,
) -> usize {
    let world = world.max(1);
    let global = batch_size * world;
    let full = n / global;
    let rem = n % global;
    full + usize::from(!effective_drop_last(n, global, drop_last) && rem >= world)
}

fn effective_drop_last(n: usize, batch_size: usize, drop_last: bool) -> bool {
    drop_last && n >= batch_size
}

/// The same views with no local crop (supervised training only uses global view 2).
pub fn views_without_locals(views: &MultiCropConfig) -> MultiCropConfig {
    MultiCropConfig {
        n_local: 0,
        ..views.clone()
    }
}

/// Shuffled multi-crop batches of `samples` for `epoch` (deterministic in `seed`, `epoch`). In
/// a data-parallel job (`dist`) the global batches are those of one process with
/// `batch_size * world` images and this rank loads its contiguous part of each; `None` is a
/// single process.
pub fn train_batches<'a>(
    samples: &'a [Sample],
    views: &'a MultiCropConfig,
    cfg: &TrainConfig,
    seed: u64,
    epoch: u64,
    device: Device,
    dist: Option<&Dist>,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Batch>> + 'a> {
    views.validate().context("multi-crop views")?;
    let world = dist.map_or(1, |d| d.world_size());
    let bs = cfg.optim.batch_size * world;
    let loader = LoaderConfig {
        batch_size: bs,
        shuffle: true,
        drop_last: effective_drop_last(samples.len(), bs, cfg.optim.drop_last),
        seed,
        skip_bad: cfg.data.skip_bad,
        prefetch: cfg.data.prefetch,
    };
    let it = match dist {
        None => sevit_data::multi_crop_loader(samples.to_vec(), views, &loader, epoch as usize),
        Some(d) => sevit_data::multi_crop_loader_sharded(
            samples.to_vec(),
            views,
            &loader,
            epoch as usize,
            Shard {
                rank: d.rank(),
                world,
            },
        ),
    };
    Ok(it.map(move |b| {
        let b = b?;
        Ok(Batch {
            views: b.views.iter().map(|v| v.to_device(device)).collect(),
            targets: b.targets.to_device(device),
            indices: b.indices,
        })
    }))
}

/// Evaluation batches (inference transform: Gaussian blur of `blur_radius`) of `samples`: `(images, targets)` on `device`.
pub fn eval_batches(
    samples: &[Sample],
    image_size: u32,
    batch_size: usize,
    blur_radius: f64,
    skip_bad: bool,
    device: Device,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(Tensor, Tensor)>>> {
    let it = sevit_data::loader::eval_loader_with(
        samples.to_vec(),
        image_size,
        batch_size,
        skip_bad,
        blur_radius,
        2,
    );
    Ok(it.map(move |b| {
        let b = b?;
        Ok((b.images.to_device(device), b.targets.to_device(device)))
    }))
}

/// The image pool of self-supervised pretraining (labels ignored): the images of dataset
/// descriptors (`.toml`), manifests (`.csv`) or folder trees; with no path, the training
/// images of the run's split (labeled set and every fold).
pub fn pool(paths: &[std::path::PathBuf], run: &crate::RunLayout) -> anyhow::Result<Vec<Sample>> {
    use sevit_data::{Dataset, Split, Subset};
    if paths.is_empty() {
        let split = Split::read_csv(&run.split_csv()).with_context(|| {
            format!(
                "no --pool given and the split of run {} cannot be read",
                run.root.display()
            )
        })?;
        let mut v = split.samples(Subset::Labeled);
        v.extend(split.unlabeled_upto(split.num_folds()));
        return Ok(v);
    }
    let mut out = Vec::new();
    for p in paths {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        let ds = if p.is_dir() {
            let first = std::fs::read_dir(p)
                .with_context(|| format!("listing {}", p.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .min()
                .with_context(|| format!("{}: no label sub-folder", p.display()))?;
            Dataset::from_folder(p, &first)?
        } else if ext.as_deref() == Some("csv") {
            Dataset::from_manifest(p, &first_manifest_label(p)?, None)?
        } else {
            Dataset::from_descriptor(p)?
        };
        tracing::info!(pool = %p.display(), images = ds.samples.len(), "pool");
        out.extend(ds.samples);
    }
    Ok(out)
}

/// Some label of a manifest (the first row's), only to satisfy the loader's positive-label
/// check: pool images are used without labels.
fn first_manifest_label(csv: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(csv)
        .with_context(|| format!("reading manifest {}", csv.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let li = header
        .iter()
        .position(|h| *h == "label")
        .with_context(|| format!("manifest {}: no `label` column", csv.display()))?;
    let row = lines
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("manifest {} is empty", csv.display()))?;
    row.split(',')
        .nth(li)
        .map(|s| s.trim().to_string())
        .with_context(|| format!("manifest {}: short first row", csv.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_counts() {
        assert_eq!(iters_per_epoch(20, 8, true), 2);
        assert_eq!(iters_per_epoch(20, 8, false), 3);
        assert_eq!(iters_per_epoch(5, 8, true), 1);
        assert_eq!(iters_per_epoch(16, 8, true), 2);
        for (n, bs, dl) in [(20, 8, true), (20, 8, false), (5, 8, true), (16, 8, true)] {
            assert_eq!(
                iters_per_epoch_sharded(n, bs, dl, 1),
                iters_per_epoch(n, bs, dl)
            );
        }
        // 2 ranks x 4 = global 8: 20 images -> 2 full (+ a last batch of 4 without drop_last)
        assert_eq!(iters_per_epoch_sharded(20, 4, true, 2), 2);
        assert_eq!(iters_per_epoch_sharded(20, 4, false, 2), 3);
        // 3 ranks x 2 = global 6: 13 images -> 2 full; the last batch of 1 < 3 ranks is dropped
        assert_eq!(iters_per_epoch_sharded(13, 2, false, 3), 2);
        // fewer images than one global batch: one short batch, unless fewer than the ranks
        assert_eq!(iters_per_epoch_sharded(5, 4, true, 2), 1);
        assert_eq!(iters_per_epoch_sharded(1, 4, true, 2), 0);
        // the count matches the shard plan of every rank
        for (n, bs, dl, w) in [
            (13usize, 2usize, false, 3usize),
            (20, 4, true, 2),
            (5, 4, true, 2),
            (23, 3, false, 4),
        ] {
            let g = bs * w;
            let cfg = LoaderConfig {
                batch_size: g,
                drop_last: effective_drop_last(n, g, dl),
                ..Default::default()
            };
            for r in 0..w {
                let plan = sevit_data::shard_plan(n, &cfg, 0, Shard { rank: r, world: w });
                assert_eq!(
                    plan.len(),
                    iters_per_epoch_sharded(n, bs, dl, w),
                    "n={n} bs={bs} w={w}"
                );
            }
        }
    }
}
