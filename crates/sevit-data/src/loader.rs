//! Batch loading: decoding and augmentation in parallel (rayon), delivered as `tch` tensors
//! and prepared ahead by a background thread that fills a bounded channel while the model
//! computes.
//!
//! Determinism: the shuffled order depends on `(seed, epoch)` only, and the views of the image
//! at position `i` of the sample list on `(seed, epoch, i)` only; thread timing never matters.
//!
//! Tensors: each view is `[B, 3, H, W]` `f32` in `[0, 1]` (the gray image replicated to 3
//! channels); targets `[B]` `f32`. `indices` are positions in the sample list given to the
//! loader. With `skip_bad`, unreadable images are logged (warning) and left out of their batch
//! (a batch may then be smaller; a batch with no readable image is not delivered), and the count
//! is logged at the end and available from `skipped()`; without it, the first unreadable image
//! ends the iteration with an error naming the file.

use crate::augment::{inference_transform, multi_crop, MultiCropConfig};
use crate::dataset::Sample;
use crate::gray::GrayImage;
use crate::load::load_gray;
use crate::rng::{derive_seed, rng_for};
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// Loader settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle the order each epoch (derived from `(seed, epoch)`).
    pub shuffle: bool,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Seed of the order and the augmentations.
    pub seed: u64,
    /// Skip unreadable images (logged) instead of failing.
    pub skip_bad: bool,
    /// Batches prepared ahead (channel capacity, at least 1).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    /// Batch 8 (DISTL per-GPU batch), shuffled, drop_last, seed 0, strict, prefetch 2.
    fn default() -> Self {
        LoaderConfig {
            batch_size: 8,
            shuffle: true,
            drop_last: true,
            seed: 0,
            skip_bad: false,
            prefetch: 2,
        }
    }
}

/// A batch of multi-crop views.
#[derive(Debug)]
pub struct MultiCropBatch {
    /// `[global1, global2, local1..]`, each `[B, 3, H, W]`.
    pub views: Vec<Tensor>,
    /// `[B]` targets (1.0 positive).
    pub targets: Tensor,
    /// Positions of the batch's images in the loader's sample list.
    pub indices: Vec<usize>,
}

/// A batch for evaluation.
#[derive(Debug)]
pub struct EvalBatch {
    /// `[B, 3, S, S]` images after the inference transform.
    pub images: Tensor,
    /// `[B]` targets.
    pub targets: Tensor,
    /// Positions in the loader's sample list.
    pub indices: Vec<usize>,
}

/// The sample order of one epoch: `0..n`, shuffled by `(seed, epoch)` when `shuffle`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut rng_for(&[seed, epoch as u64, 0x5348_5546]));
    }
    order
}

fn batches(order: Vec<usize>, batch_size: usize, drop_last: bool) -> Vec<Vec<usize>> {
    let bs = batch_size.max(1);
    let mut out: Vec<Vec<usize>> = order.chunks(bs).map(|c| c.to_vec()).collect();
    if drop_last && out.last().map(|b| b.len() < bs).unwrap_or(false) {
        out.pop();
    }
    out
}

/// Stacks equally sized gray images into a contiguous `[B, 3, H, W]` `f32` CPU tensor (each
/// image replicated to 3 channels). The tensor is allocated once and filled in parallel by the
/// rayon workers, with no libtorch op (whose OpenMP threads would compete with rayon).
pub fn stack_gray(images: &[&GrayImage]) -> Tensor {
    let (h, w) = (images[0].height as usize, images[0].width as usize);
    let hw = h * w;
    for im in images {
        assert_eq!(
            (im.height as usize, im.width as usize),
            (h, w),
            "images of one batch must have one size"
        );
    }
    let b = images.len();
    let t = Tensor::empty(
        [b as i64, 3, h as i64, w as i64],
        (Kind::Float, Device::Cpu),
    );
    if b * hw == 0 {
        return t;
    }
    // SAFETY: `t` is a freshly allocated, contiguous CPU f32 tensor of exactly b*3*h*w
    // elements that nothing else references while this slice is alive; the slice is dropped
    // before `t` is returned.
    let buf: &mut [f32] =
        unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, b * 3 * hw) };
    buf.par_chunks_mut(3 * hw)
        .zip(images.par_iter())
        .for_each(|(chunk, im)| {
            for c in 0..3 {
                chunk[c * hw..(c + 1) * hw].copy_from_slice(&im.data);
            }
        });
    t
}

/// Background producer shared by both loaders.
struct Prefetcher<T> {
    rx: Option<Receiver<Result<T>>>,
    handle: Option<JoinHandle<()>>,
    num_batches: usize,
    skipped: Arc<AtomicUsize>,
    failed: bool,
}

impl<T: Send + 'static> Prefetcher<T> {
    fn spawn<F>(batches: Vec<Vec<usize>>, prefetch: usize, make: F) -> Self
    where
        F: Fn(&[usize], &AtomicUsize) -> Result<Option<T>> + Send + 'static,
    {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let skipped = Arc::new(AtomicUsize::new(0));
        let sk = skipped.clone();
        let num_batches = batches.len();
        let handle = std::thread::Builder::new()
            .name("sevit-loader".into())
            .spawn(move || {
                for b in batches {
                    match make(&b, &sk) {
                        Ok(Some(batch)) => {
                            if tx.send(Ok(batch)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let n = sk.load(Ordering::Relaxed);
                if n > 0 {
                    tracing::warn!("skipped {n} unreadable image(s) in this pass");
                }
            })
            .expect("spawning the loader thread");
        Prefetcher {
            rx: Some(rx),
            handle: Some(handle),
            num_batches,
            skipped,
            failed: false,
        }
    }

    fn next(&mut self) -> Option<Result<T>> {
        if self.failed {
            return None;
        }
        let item = self.rx.as_ref()?.recv().ok()?;
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

impl<T> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Loads and transforms the images of one batch in parallel; `Ok(None)` entries are skipped
/// bad images.
fn load_batch<V: Send>(
    samples: &[Sample],
    idx: &[usize],
    skip_bad: bool,
    skipped: &AtomicUsize,
    f: impl Fn(usize, &Sample) -> Result<V> + Sync,
) -> Result<Vec<(usize, V)>> {
    let results: Vec<(usize, Result<V>)> =
        idx.par_iter().map(|&i| (i, f(i, &samples[i]))).collect();
    let mut out = Vec::with_capacity(results.len());
    for (i, r) in results {
        match r {
            Ok(v) => out.push((i, v)),
            Err(e) if skip_bad => {
                tracing::warn!("skipping unreadable image: {e:#}");
                skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Iterator of batches for one epoch, loaded ahead on worker threads (see the module docs):
/// [`MultiCropLoader`] for training, [`EvalLoader`] for evaluation.
pub struct Loader<B> {
    inner: Prefetcher<B>,
}

/// Iterator of [`MultiCropBatch`]es for one epoch.
pub type MultiCropLoader = Loader<MultiCropBatch>;

/// Iterator of [`EvalBatch`]es in sample order (last batch may be smaller).
pub type EvalLoader = Loader<EvalBatch>;

impl<B> Loader<B> {
    /// Number of batches planned for the epoch (an upper bound when `skip_bad` drops a whole
    /// batch).
    pub fn num_batches(&self) -> usize {
        self.inner.num_batches
    }
    /// Same as [`Loader::num_batches`].
    pub fn len(&self) -> usize {
        self.inner.num_batches
    }
    /// True when no batch is planned.
    pub fn is_empty(&self) -> bool {
        self.inner.num_batches == 0
    }
    /// Images skipped so far (with `skip_bad`).
    pub fn skipped(&self) -> usize {
        self.inner.skipped.load(Ordering::Relaxed)
    }
}

impl<B: Send + 'static> Iterator for Loader<B> {
    type Item = Result<B>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// Views of sample `index` for `epoch`: load at the global size, then [`multi_crop`] with the
/// seed `derive_seed([seed, epoch, index])`.
pub fn sample_views(
    sample: &Sample,
    index: usize,
    crop: &MultiCropConfig,
    seed: u64,
    epoch: usize,
) -> Result<Vec<GrayImage>> {
    let img = load_gray(&sample.path, crop.global_size)?;
    Ok(multi_crop(
        &img,
        crop,
        derive_seed(&[seed, epoch as u64, index as u64]),
    ))
}

/// Multi-crop batches of `samples` for one `epoch`, produced ahead in a background thread.
pub fn multi_crop_loader(
    samples: Vec<Sample>,
    crop: &MultiCropConfig,
    cfg: &LoaderConfig,
    epoch: usize,
) -> MultiCropLoader {
    let order = epoch_order(samples.len(), cfg.seed, epoch, cfg.shuffle);
    let plan = batches(order, cfg.batch_size, cfg.drop_last);
    multi_crop_loader_plan(samples, crop, cfg, epoch, plan, None)
}

/// One process of a data-parallel job: rank `rank` of `world`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
}

/// The batches rank `shard.rank` loads in one epoch of a data-parallel job: the epoch's global
/// batches of `cfg.batch_size` images (the same shuffled order and `drop_last` as
/// [`multi_crop_loader`] with that batch size), each cut into `shard.world` contiguous parts
/// whose sizes differ by at most one; this rank's part of each. A global batch with fewer
/// images than ranks is dropped, so every rank has the same number of non-empty batches.
pub fn shard_plan(n: usize, cfg: &LoaderConfig, epoch: usize, shard: Shard) -> Vec<Vec<usize>> {
    let world = shard.world.max(1);
    let order = epoch_order(n, cfg.seed, epoch, cfg.shuffle);
    batches(order, cfg.batch_size, cfg.drop_last)
        .into_iter()
        .filter(|b| b.len() >= world)
        .map(|b| {
            let (lo, hi) = (
                shard.rank * b.len() / world,
                (shard.rank + 1) * b.len() / world,
            );
            b[lo..hi].to_vec()
        })
        .collect()
}

/// [`multi_crop_loader`] for rank `shard.rank` of a data-parallel job (`cfg.batch_size` is the
/// global batch; see [`shard_plan`]). The views of an image are those it gets in
/// [`multi_crop_loader`] (keyed by its position in `samples`). With `skip_bad`, a part whose
/// every image is unreadable is an error (skipping it would leave the ranks out of step).
pub fn multi_crop_loader_sharded(
    samples: Vec<Sample>,
    crop: &MultiCropConfig,
    cfg: &LoaderConfig,
    epoch: usize,
    shard: Shard,
) -> MultiCropLoader {
    let plan = shard_plan(samples.len(), cfg, epoch, shard);
    multi_crop_loader_plan(samples, crop, cfg, epoch, plan, Some(shard))
}

fn multi_crop_loader_plan(
    samples: Vec<Sample>,
    crop: &MultiCropConfig,
    cfg: &LoaderConfig,
    epoch: usize,
    plan: Vec<Vec<usize>>,
    shard: Option<Shard>,
) -> MultiCropLoader {
    let crop = crop.clone();
    let (seed, skip_bad) = (cfg.seed, cfg.skip_bad);
    let samples = Arc::new(samples);
    let inner = Prefetcher::spawn(plan, cfg.prefetch, move |idx, skipped| {
        let loaded = load_batch(&samples, idx, skip_bad, skipped, |i, s| {
            sample_views(s, i, &crop, seed, epoch)
        })?;
        if loaded.is_empty() {
            if let Some(sh) = shard {
                anyhow::bail!(
                    "rank {} of {}: every image of its part of a batch is unreadable ({} images); \
                     a data-parallel job cannot skip a whole batch on one rank",
                    sh.rank,
                    sh.world,
                    idx.len()
                );
            }
            return Ok(None);
        }
        let nv = crop.num_views();
        let views = (0..nv)
            .map(|v| stack_gray(&loaded.iter().map(|(_, vs)| &vs[v]).collect::<Vec<_>>()))
            .collect();
        let t: Vec<f32> = loaded.iter().map(|(i, _)| samples[*i].target).collect();
        Ok(Some(MultiCropBatch {
            views,
            targets: Tensor::from_slice(&t),
            indices: loaded.iter().map(|(i, _)| *i).collect(),
        }))
    });
    Loader { inner }
}

/// Evaluation batches: each image loaded at `size` and passed through the inference transform
/// (Gaussian blur radius 0.5), in sample order.
pub fn eval_loader(
    samples: Vec<Sample>,
    size: u32,
    batch_size: usize,
    skip_bad: bool,
) -> EvalLoader {
    eval_loader_with(
        samples,
        size,
        batch_size,
        skip_bad,
        MultiCropConfig::default().inference_blur_radius,
        2,
    )
}

/// As [`eval_loader`] with an explicit blur radius and prefetch depth.
pub fn eval_loader_with(
    samples: Vec<Sample>,
    size: u32,
    batch_size: usize,
    skip_bad: bool,
    blur_radius: f64,
    prefetch: usize,
) -> EvalLoader {
    let plan = batches((0..samples.len()).collect(), batch_size, false);
    let samples = Arc::new(samples);
    let inner = Prefetcher::spawn(plan, prefetch, move |idx, skipped| {
        let loaded = load_batch(&samples, idx, skip_bad, skipped, |_, s| {
            let img = load_gray(&s.path, size)
                .with_context(|| format!("evaluation image {}", s.path.display()))?;
            Ok(inference_transform(&img, blur_radius))
        })?;
        if loaded.is_empty() {
            return Ok(None);
        }
        let images = stack_gray(&loaded.iter().map(|(_, g)| g).collect::<Vec<_>>());
        let t: Vec<f32> = loaded.iter().map(|(i, _)| samples[*i].target).collect();
        Ok(Some(EvalBatch {
            images,
            targets: Tensor::from_slice(&t),
            indices: loaded.iter().map(|(i, _)| *i).collect(),
        }))
    });
    Loader { inner }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write_pngs(dir: &Path, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("img{i}.png"));
                image::GrayImage::from_fn(24, 20, |x, y| {
                    image::Luma([((x * 7 + y * 3 + i as u32 * 11) % 256) as u8])
                })
                .save(&p)
                .unwrap();
                Sample {
                    path: p,
                    label: if i % 2 == 0 { "a".into() } else { "b".into() },
                    target: (i % 2) as f32,
                    patient_id: format!("p{i}"),
                }
            })
            .collect()
    }

    fn small_crop() -> MultiCropConfig {
        MultiCropConfig {
            global_size: 16,
            local_size: 8,
            n_local: 3,
            ..Default::default()
        }
    }

    #[test]
    fn batches_have_the_right_shapes_and_targets() {
        let d = tempfile::tempdir().unwrap();
        let samples = write_pngs(d.path(), 7);
        let cfg = LoaderConfig {
            batch_size: 3,
            ..Default::default()
        };
        let loader = multi_crop_loader(samples.clone(), &small_crop(), &cfg, 0);
        assert_eq!(loader.num_batches(), 2);
        let batches: Vec<_> = loader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        let b = &batches[0];
        assert_eq!(b.views.len(), 5);
        assert_eq!(b.views[0].size(), vec![3, 3, 16, 16]);
        assert_eq!(b.views[4].size(), vec![3, 3, 8, 8]);
        let t: Vec<f32> = Vec::try_from(&b.targets).unwrap();
        let expect: Vec<f32> = b.indices.iter().map(|&i| samples[i].target).collect();
        assert_eq!(t, expect);
        let max = b.views[1].max().double_value(&[]);
        let min = b.views[1].min().double_value(&[]);
        assert!(min >= 0.0 && max <= 1.0);
        // Channels are replicas.
        let diff = (b.views[0].narrow(1, 0, 1) - b.views[0].narrow(1, 2, 1))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn shards_partition_the_global_batches() {
        let cfg = LoaderConfig {
            batch_size: 5,
            shuffle: true,
            drop_last: false,
            seed: 3,
            ..Default::default()
        };
        // 12 images: global batches of 5, 5, 2; with 3 ranks the last one (2 < 3) is dropped
        let whole = batches(epoch_order(12, 3, 1, true), 5, false);
        let parts: Vec<Vec<Vec<usize>>> = (0..3)
            .map(|r| shard_plan(12, &cfg, 1, Shard { rank: r, world: 3 }))
            .collect();
        for p in &parts {
            assert_eq!(p.len(), 2);
        }
        for (b, global) in whole.iter().take(2).enumerate() {
            let joined: Vec<usize> = (0..3).flat_map(|r| parts[r][b].clone()).collect();
            assert_eq!(
                &joined, global,
                "the parts of batch {b} in rank order are the global batch"
            );
            assert!(parts.iter().all(|p| (1..=2).contains(&p[b].len())));
        }
        // one rank is the plain loader's plan
        assert_eq!(shard_plan(12, &cfg, 1, Shard { rank: 0, world: 1 }), whole);
    }

    #[test]
    fn same_seed_and_epoch_give_identical_batches() {
        let d = tempfile::tempdir().unwrap();
        let samples = write_pngs(d.path(), 6);
        let cfg = LoaderConfig {
            batch_size: 2,
            prefetch: 1,
            ..Default::default()
        };
        let run = |epoch| -> Vec<MultiCropBatch> {
            multi_crop_loader(samples.clone(), &small_crop(), &cfg, epoch)
                .map(|b| b.unwrap())
                .collect()
        };
        let (a, b, c) = (run(0), run(0), run(1));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.indices, y.indices);
            for (vx, vy) in x.views.iter().zip(&y.views) {
                assert!(vx.equal(vy));
            }
        }
        let order =
            |r: &[MultiCropBatch]| r.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>();
        assert_ne!(order(&a), order(&c), "epochs are shuffled differently");
        assert_eq!(order(&a), epoch_order(6, 0, 0, true));
    }

    #[test]
    fn bad_image_fails_or_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let mut samples = write_pngs(d.path(), 4);
        let bad = d.path().join("bad.png");
        std::fs::write(&bad, b"\x89PNG\r\n\x1a\n truncated").unwrap();
        samples[2].path = bad;
        let strict = LoaderConfig {
            batch_size: 4,
            shuffle: false,
            drop_last: false,
            ..Default::default()
        };
        let mut it = multi_crop_loader(samples.clone(), &small_crop(), &strict, 0);
        let err = it.next().unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("bad.png"));
        assert!(it.next().is_none());
        let lenient = LoaderConfig {
            skip_bad: true,
            ..strict
        };
        let mut it = multi_crop_loader(samples.clone(), &small_crop(), &lenient, 0);
        let b = it.next().unwrap().unwrap();
        assert_eq!(b.indices, vec![0, 1, 3]);
        assert_eq!(b.views[0].size()[0], 3);
        assert!(it.next().is_none());
        assert_eq!(it.skipped(), 1);
        let mut ev = eval_loader(samples, 16, 4, true);
        let e = ev.next().unwrap().unwrap();
        assert_eq!(e.indices, vec![0, 1, 3]);
        assert_eq!(e.images.size(), vec![3, 3, 16, 16]);
        assert_eq!(ev.skipped(), 1);
    }

    #[test]
    fn eval_loader_keeps_order_and_applies_the_inference_blur() {
        let d = tempfile::tempdir().unwrap();
        let samples = write_pngs(d.path(), 5);
        let batches: Vec<_> = eval_loader(samples.clone(), 16, 2, false)
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(
            batches
                .iter()
                .flat_map(|b| b.indices.clone())
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        let expect = inference_transform(&load_gray(&samples[0].path, 16).unwrap(), 0.5);
        let got: Vec<f32> = Vec::try_from(batches[0].images.get(0).get(1).flatten(0, -1)).unwrap();
        assert_eq!(got, expect.data);
    }

    #[test]
    fn dropping_a_loader_early_stops_its_thread() {
        let d = tempfile::tempdir().unwrap();
        let samples = write_pngs(d.path(), 8);
        let cfg = LoaderConfig {
            batch_size: 1,
            prefetch: 1,
            ..Default::default()
        };
        let mut it = multi_crop_loader(samples, &small_crop(), &cfg, 0);
        assert!(it.next().is_some());
        drop(it); // must not hang
    }
}
