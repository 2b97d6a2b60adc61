//! Throughput of one DISTL training step (and of a correction step, of evaluation and of a
//! large matrix multiply) on the current machine, as one measurement per process.
//!
//! Run by `scripts/bench.sh` (`just bench`), which starts one process per configuration so
//! that the peak resident memory (`VmHWM`) belongs to that configuration alone, interleaves
//! them with the PyTorch eager implementation `bench/distl_step_torch.py` and aggregates the
//! JSON lines into `target/bench/report.{json,md}`. It can also be run by hand:
//!
//! ```text
//! cargo bench -p sevit-distill --bench distl_step -- --config tiny16 --mode step --iters 5
//! ```
//!
//! Modes:
//! * `step`: one unlabeled DISTL iteration as training runs it,
//!   `sevit_distill::loops::unlabeled_iteration` on a stage `Trainer`: teacher forward on the
//!   two global views (no grad), student forward on all views, DINO loss over the 18 (teacher,
//!   student) pairs with the centre update, soft-pseudo-label BCE, `λ·L_dino + (1−λ)·α·L_st`,
//!   backward, per-tensor clipping at 3.0, AdamW with two parameter groups, teacher EMA, the
//!   host read of the logged scalars.
//! * `correction`: one correction batch, `sevit_distill::loops::correction_iteration` (same
//!   forwards, BCE against true labels, no EMA).
//! * `train`: the `step` fed by the real loader (`sevit_data::multi_crop_loader`: decoding and
//!   augmentation of `../shared/data/kermany_pediatric_224src` images on rayon threads,
//!   prefetch 2) running concurrently, as in training; the `data` phase is the time the step
//!   waits for its batch.
//! * `data`: the loader of `train` alone (decoding and augmentation on `RAYON_NUM_THREADS`
//!   threads), no step: the images per second the data pipeline delivers.
//! * `eval`: class logits of global-size images, batch 32, no gradient.
//! * `matmul`: GFLOP/s of a square f32 matrix multiply (the machine's reference rate).
//!
//! `--device cuda` runs all of it on the GPU: each phase then ends with a device
//! synchronisation (so a phase's time is its kernels, not their launches) and the report adds
//! the GPU memory in use at the end of the run (`nvidia-smi`; libtorch's caching allocator
//! keeps what it reserved, so that is its peak plus the CUDA context).
//!
//! The step is the engine's own (the function `distill` calls for every batch), on a trainer
//! built from a `TrainConfig` with the configuration's model, views and batch, in its second
//! epoch (the last layer trained), lr 5e-5 per 16 images at its peak, teacher momentum from
//! 0.9995. `--precision bf16` runs the forward passes under bf16 autocast, as
//! `precision = "bf16"` in a training config. Its phases are `data` (waiting for the batch)
//! and `step`; a profile of the step's kernels is the place for a finer breakdown.
//!
//! Inputs are random tensors of the right shapes, made once before the timed loop: the cost
//! of decoding and augmenting images is measured separately (the augmentation bench).

use std::collections::BTreeMap;
use std::time::Instant;

use sevit_distill::config::parse_device;
use sevit_distill::data::Batch;
use sevit_distill::loops::{correction_iteration, unlabeled_iteration};
use sevit_distill::precision::{check_training, Autocast, Precision};
use sevit_distill::trainer::{StageKind, Trainer};
use sevit_distill::TrainConfig;
use tch::{Device, Kind, Tensor};

/// One benchmark configuration: backbone, view sizes, head width and batch.
struct Cfg {
    name: &'static str,
    preset: &'static str,
    global: i64,
    local: i64,
    out_dim: i64,
    batch: i64,
}

const CONFIGS: &[Cfg] = &[
    Cfg {
        name: "tiny16",
        preset: "tiny/16",
        global: 128,
        local: 64,
        out_dim: 4096,
        batch: 16,
    },
    Cfg {
        name: "tiny16-65k",
        preset: "tiny/16",
        global: 128,
        local: 64,
        out_dim: 65536,
        batch: 16,
    },
    Cfg {
        name: "small8",
        preset: "small/8",
        global: 256,
        local: 128,
        out_dim: 65536,
        batch: 4,
    },
    // A very small configuration for smoke runs of the bench itself.
    Cfg {
        name: "micro",
        preset: "micro",
        global: 32,
        local: 16,
        out_dim: 128,
        batch: 4,
    },
];

const N_GLOBAL: usize = 2;
const N_LOCAL: usize = 8;
const EPOCH: usize = 1; // past the first epoch: the last layer is trained
const EPOCHS: usize = 5;

struct Args {
    config: String,
    device: Device,
    mode: String,
    precision: Precision,
    iters: usize,
    warmup: usize,
    threads: i32,
    matmul_n: i64,
    eval_batch: i64,
    data: Option<std::path::PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        config: "tiny16".into(),
        device: Device::Cpu,
        mode: "step".into(),
        precision: Precision::F32,
        iters: 5,
        warmup: 1,
        threads: 2,
        matmul_n: 2048,
        eval_batch: 32,
        data: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("flag {k} needs a value"))
        };
        match k.as_str() {
            "--config" => a.config = val()?,
            "--mode" => a.mode = val()?,
            "--device" => a.device = parse_device(&val()?)?,
            "--precision" => {
                a.precision = val()?.parse()?;
                check_training(a.precision)?;
            }
            "--iters" => a.iters = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--threads" => a.threads = val()?.parse()?,
            "--matmul-n" => a.matmul_n = val()?.parse()?,
            "--eval-batch" => a.eval_batch = val()?.parse()?,
            "--data" => a.data = Some(val()?.into()),
            "--bench" => {} // appended by `cargo bench`
            other => anyhow::bail!(
                "unknown flag {other:?}; flags: --config NAME --mode step|correction|train|data|eval|matmul \
                 --device cpu|cuda[:N] --precision fp32|bf16 --iters N --warmup N --threads N --matmul-n N --eval-batch N \
                 --data DESCRIPTOR.toml"
            ),
        }
    }
    anyhow::ensure!(a.iters > 0, "--iters must be positive");
    Ok(a)
}

/// Blocks until the device's queued work is done (nothing on the CPU, where ops are synchronous).
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// GPU memory in use on `device` in MiB, from `nvidia-smi` (`None` without it).
fn gpu_memory_used_mib(device: Device) -> Option<f64> {
    let Device::Cuda(i) = device else { return None };
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            "-i",
        ])
        .arg(i.to_string())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `VmHWM` and `VmRSS` of this process in KiB (0 where /proc is unavailable).
fn proc_status_kb(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of this process in seconds (`/proc/self/stat`, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// The training config of a bench configuration: its backbone, head width, view sizes and
/// batch; DISTL.md's optimisation (lr 5e-5 per 16 images, no warm-up so the step runs at
/// the peak rate, weight decay 0.01, teacher momentum from 0.9995, clipping at 3.0).
fn train_config(c: &Cfg, a: &Args) -> anyhow::Result<TrainConfig> {
    let mut set = vec![
        format!("model.preset={}", c.preset),
        format!("model.out_dim={}", c.out_dim),
        format!("views.global_size={}", c.global),
        format!("views.local_size={}", c.local),
        format!("views.n_local={N_LOCAL}"),
        format!("optim.batch_size={}", c.batch),
        format!("optim.epochs={EPOCHS}"),
        "optim.warmup_epochs=0".into(),
        "optim.lr=5e-5".into(),
        "optim.weight_decay=0.01".into(),
        "optim.weight_decay_end=0.01".into(),
        "optim.momentum_teacher=0.9995".into(),
        "optim.clip_grad=3.0".into(),
        format!(
            "precision={}",
            match a.precision {
                Precision::Bf16 => "bf16",
                _ => "f32",
            }
        ),
        format!("threads={}", a.threads),
        format!(
            "device={}",
            match a.device {
                Device::Cuda(i) => format!("cuda:{i}"),
                _ => "cpu".to_string(),
            }
        ),
    ];
    if c.preset == "micro" {
        set.extend(
            [
                "model.hidden_dim=64",
                "model.bottleneck_dim=16",
                "model.cls_hidden_dim=32",
            ]
            .map(String::from),
        );
    }
    TrainConfig::default_with_overrides(&set)
}

/// Wall-clock phase timers, accumulated per iteration. CPU ops are synchronous; on CUDA each
/// phase ends with a synchronisation.
#[derive(Default)]
struct Phases {
    device: Option<Device>,
    order: Vec<&'static str>,
    cur: BTreeMap<&'static str, f64>,
    all: BTreeMap<&'static str, Vec<f64>>,
}

impl Phases {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        if let Some(d) = self.device {
            sync(d);
        }
        if !self.order.contains(&name) {
            self.order.push(name);
        }
        *self.cur.entry(name).or_insert(0.0) += t.elapsed().as_secs_f64();
        r
    }
    fn end_iter(&mut self, keep: bool) {
        for (k, v) in std::mem::take(&mut self.cur) {
            if keep {
                self.all.entry(k).or_default().push(v);
            }
        }
    }
    fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for k in &self.order {
            m.insert(
                (*k).into(),
                serde_json::json!(self.all.get(k).cloned().unwrap_or_default()),
            );
        }
        serde_json::Value::Object(m)
    }
}

/// The multi-crop loader over the first `n` images of dataset descriptor `data` (default: the
/// Kermany set of the augmentation bench, in ../shared/data), with the configuration's view
/// sizes.
fn real_loader(
    c: &Cfg,
    n: usize,
    data: Option<&std::path::Path>,
) -> anyhow::Result<sevit_data::MultiCropLoader> {
    let ds = match data {
        Some(d) => sevit_data::Dataset::from_descriptor(d)?,
        None => {
            let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data/kermany_pediatric_224src/manifest.csv");
            sevit_data::Dataset::from_manifest(&manifest, "pneumonia", None)?
        }
    };
    anyhow::ensure!(
        ds.samples.len() >= n,
        "dataset {}: {} images, {n} needed",
        ds.name,
        ds.samples.len()
    );
    let samples: Vec<_> = ds.samples.into_iter().take(n).collect();
    let crop = sevit_data::MultiCropConfig {
        global_size: c.global as u32,
        local_size: c.local as u32,
        n_local: N_LOCAL,
        ..Default::default()
    };
    let cfg = sevit_data::LoaderConfig {
        batch_size: c.batch as usize,
        shuffle: true,
        drop_last: true,
        seed: 0,
        skip_bad: false,
        prefetch: 2,
    };
    Ok(sevit_data::multi_crop_loader(samples, &crop, &cfg, 0))
}

/// Random views and labels of the right shapes, made once before the timed loop.
fn random_batch(c: &Cfg, device: Device) -> Batch {
    tch::manual_seed(0);
    let b = c.batch;
    let views = (0..N_GLOBAL + N_LOCAL)
        .map(|v| {
            let s = if v < N_GLOBAL { c.global } else { c.local };
            Tensor::rand([b, 3, s, s], (Kind::Float, device))
        })
        .collect();
    let targets = Tensor::rand([b], (Kind::Float, device))
        .gt(0.5)
        .to_kind(Kind::Float);
    Batch {
        views,
        targets,
        indices: (0..b as usize).collect(),
    }
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    tch::set_num_threads(a.threads);
    tch::set_num_interop_threads(1);
    let t_start = Instant::now();
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let mut cpu = Vec::new();
    let device = a.device;
    let mut phases = Phases {
        device: device.is_cuda().then_some(device),
        ..Default::default()
    };
    let mut extra = serde_json::Map::new();
    let images_per_iter: f64;
    let mut variant = "engine".to_string();

    if a.mode == "matmul" {
        let n = a.matmul_n;
        // the rate of the step's own matrix products: f32, or bf16 under --precision bf16
        let kind = if a.precision == Precision::Bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        };
        let x = Tensor::randn([n, n], (kind, device));
        let y = Tensor::randn([n, n], (kind, device));
        for i in 0..a.warmup + a.iters {
            let t = Instant::now();
            let z = x.matmul(&y);
            let _ = z.double_value(&[0, 0]);
            if i >= a.warmup {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        images_per_iter = 0.0;
        extra.insert(
            "flop_per_iter".into(),
            serde_json::json!(2.0 * (n as f64).powi(3)),
        );
        extra.insert("matmul_n".into(), serde_json::json!(n));
    } else {
        let c = CONFIGS.iter().find(|c| c.name == a.config).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown --config {:?}; known: tiny16, tiny16-65k, small8, micro",
                a.config
            )
        })?;
        let cfg = train_config(c, &a)?;
        let b = c.batch;
        let iters = a.warmup + a.iters;
        let dir = std::env::temp_dir().join(format!("sevit-bench-{}", std::process::id()));
        let mut tr = Trainer::new(&cfg, "bench", StageKind::Distl, &dir, EPOCHS, iters)?;
        extra.insert(
            "rss_after_setup_kb".into(),
            serde_json::json!(proc_status_kb("VmRSS:")),
        );
        extra.insert(
            "params".into(),
            serde_json::json!(tr
                .student()
                .vs
                .variables()
                .values()
                .map(Tensor::numel)
                .sum::<usize>()),
        );
        let random = random_batch(c, device);
        match a.mode.as_str() {
            "step" | "correction" | "train" => {
                let correction = a.mode == "correction";
                images_per_iter = b as f64;
                let mut loader = if a.mode == "train" {
                    Some(real_loader(c, iters * b as usize, a.data.as_deref())?)
                } else {
                    None
                };
                // The schedules' second epoch: the last layer is trained, as in most of a step.
                tr.set_iteration(EPOCH * iters);
                for i in 0..iters {
                    let t0 = Instant::now();
                    let c0 = cpu_seconds();
                    let loaded = phases.time("data", || loader.as_mut().map(|l| l.next()));
                    let batch = match loaded {
                        Some(Some(batch)) => {
                            let batch = batch?;
                            Batch {
                                views: batch.views.iter().map(|v| v.to_device(device)).collect(),
                                targets: batch.targets.to_device(device),
                                indices: batch.indices,
                            }
                        }
                        Some(None) => {
                            anyhow::bail!("the loader ran out of batches at iteration {i}")
                        }
                        None => Batch {
                            views: random.views.iter().map(Tensor::shallow_clone).collect(),
                            targets: random.targets.shallow_clone(),
                            indices: random.indices.clone(),
                        },
                    };
                    let it = tr.iteration();
                    let o = phases.time("step", || {
                        if correction {
                            correction_iteration(&mut tr, &batch, EPOCH, it, 0)
                        } else {
                            unlabeled_iteration(&mut tr, &batch, EPOCH)
                        }
                    })?;
                    anyhow::ensure!(
                        o.loss.is_finite(),
                        "non-finite loss {} at iteration {i}",
                        o.loss
                    );
                    losses.push(o.loss);
                    let dt = t0.elapsed().as_secs_f64();
                    let dc = cpu_seconds() - c0;
                    let keep = i >= a.warmup;
                    phases.end_iter(keep);
                    if keep {
                        times.push(dt);
                        cpu.push(dc);
                    }
                }
            }
            "data" => {
                // The data pipeline alone: decoding and the 10-view augmentation of real files
                // on the loader's rayon threads (RAYON_NUM_THREADS), prefetch 2, no step; its
                // rate per thread is what each CPU core can feed the accelerator.
                images_per_iter = b as f64;
                let mut loader = real_loader(c, iters * b as usize, a.data.as_deref())?;
                for i in 0..iters {
                    let t0 = Instant::now();
                    let batch = loader.next().ok_or_else(|| {
                        anyhow::anyhow!("the loader ran out of batches at iteration {i}")
                    })??;
                    drop(batch);
                    if i >= a.warmup {
                        times.push(t0.elapsed().as_secs_f64());
                    }
                }
                let threads = std::env::var("RAYON_NUM_THREADS")
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                extra.insert("loader_threads".into(), serde_json::json!(threads));
                variant = format!("loader-{threads}t");
            }
            "eval" => {
                let eb = a.eval_batch;
                let x = Tensor::rand([eb, 3, c.global, c.global], (Kind::Float, device));
                images_per_iter = eb as f64;
                for i in 0..a.warmup + a.iters {
                    let t0 = Instant::now();
                    let _autocast = Autocast::enter(device, a.precision);
                    let p = tch::no_grad(|| {
                        tr.teacher()
                            .expect("a DISTL stage has a teacher")
                            .net
                            .classify(&x, false)
                            .to_kind(Kind::Float)
                            .sigmoid()
                    });
                    let _ = p.double_value(&[0]);
                    if i >= a.warmup {
                        times.push(t0.elapsed().as_secs_f64());
                    }
                }
                extra.insert("eval_batch".into(), serde_json::json!(eb));
            }
            other => {
                anyhow::bail!(
                    "unknown --mode {other:?}: step, correction, train, data, eval or matmul"
                )
            }
        }
        extra.insert("batch".into(), serde_json::json!(b));
        extra.insert("global".into(), serde_json::json!(c.global));
        extra.insert("local".into(), serde_json::json!(c.local));
        extra.insert("out_dim".into(), serde_json::json!(c.out_dim));
        extra.insert("preset".into(), serde_json::json!(c.preset));
    }
    let mut out = serde_json::json!({
        "impl": "rust",
        "config": a.config,
        "mode": a.mode,
        "variant": variant,
        "precision": match a.precision { Precision::Bf16 => "bf16", _ => "fp32" },
        "threads": a.threads,
        "warmup": a.warmup,
        "times_s": times,
        "cpu_s": cpu,
        "losses": losses,
        "images_per_iter": images_per_iter,
        "phases_s": phases.json(),
        "vm_hwm_kb": proc_status_kb("VmHWM:"),
        "wall_s": t_start.elapsed().as_secs_f64(),
        "torch_threads": tch::get_num_threads(),
        "device": match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".to_string(),
        },
    });
    if let Some(mib) = gpu_memory_used_mib(device) {
        out["gpu_memory_used_mib"] = serde_json::json!(mib);
    }
    if let serde_json::Value::Object(o) = &mut out {
        o.extend(extra);
    }
    println!("{out}");
    Ok(())
}
