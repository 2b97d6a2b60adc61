//! Forward and forward+backward throughput (images/s) of the full network (backbone, DINO
//! head with 65536 outputs, class head) for tiny/16 at 128 px and small/8 at 256 px, on CPU
//! (and on CUDA, fp32 and fp16 autocast, when available). Median of several timed runs after
//! warm-up. Results go to `target/bench/model.json` (workspace root).
//!
//! `cargo bench -p sevit-model --bench forward`; `SEVIT_BENCH_RUNS` sets the timed runs
//! (default 5), `SEVIT_BENCH_CPU_ONLY=1` skips CUDA.

use std::path::PathBuf;
use std::time::Instant;

use sevit_model::checkpoint::write_atomic;
use sevit_model::{with_autocast, DistlNet, ModelConfig, Precision, ViTConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

struct Case {
    name: &'static str,
    vit: ViTConfig,
    img: i64,
    batch_cpu: i64,
    batch_cuda: i64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn time_runs(runs: usize, warmup: usize, device: Device, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    sync(device);
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            sync(device);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

fn bench(case: &Case, device: Device, precision: Precision, runs: usize) -> serde_json::Value {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = DistlNet::new(&vs.root(), &ModelConfig::new(case.vit.clone()), 0.1);
    let batch = if device.is_cuda() {
        case.batch_cuda
    } else {
        case.batch_cpu
    };
    let x = Tensor::rand([batch, 3, case.img, case.img], (Kind::Float, device));
    let fwd = time_runs(runs, 1, device, || {
        tch::no_grad(|| {
            with_autocast(device, precision, || {
                let out = net.forward_multi(std::slice::from_ref(&x), 1, false);
                let _ = out.dino.sum(Kind::Float).double_value(&[]);
            })
        })
    });
    let fwd_bwd = time_runs(runs, 1, device, || {
        let loss = with_autocast(device, precision, || {
            let out = net.forward_multi(std::slice::from_ref(&x), 1, true);
            out.dino
                .to_kind(Kind::Float)
                .pow_tensor_scalar(2)
                .mean(Kind::Float)
                + out.cls_logits.to_kind(Kind::Float).mean(Kind::Float)
        });
        loss.backward();
        for t in vs.trainable_variables() {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    });
    let (mf, mb) = (median(fwd.clone()), median(fwd_bwd.clone()));
    let row = serde_json::json!({
        "model": case.name,
        "img": case.img,
        "batch": batch,
        "device": format!("{device:?}"),
        "precision": format!("{precision:?}").to_lowercase(),
        "runs": runs,
        "forward_s_median": mf,
        "forward_images_per_s": batch as f64 / mf,
        "forward_backward_s_median": mb,
        "forward_backward_images_per_s": batch as f64 / mb,
        "forward_s_all": fwd,
        "forward_backward_s_all": fwd_bwd,
    });
    println!(
        "{:<9} {:>4}px batch {:>3} {:<8} {:<5}: forward {:>8.2} img/s, forward+backward {:>8.2} img/s",
        case.name,
        case.img,
        batch,
        format!("{device:?}"),
        format!("{precision:?}").to_lowercase(),
        batch as f64 / mf,
        batch as f64 / mb
    );
    row
}

fn main() {
    let runs: usize = std::env::var("SEVIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let cases = [
        Case {
            name: "tiny/16",
            vit: ViTConfig::tiny(16),
            img: 128,
            batch_cpu: 8,
            batch_cuda: 64,
        },
        Case {
            name: "small/8",
            vit: ViTConfig::small(8),
            img: 256,
            batch_cpu: 2,
            batch_cuda: 16,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        rows.push(bench(case, Device::Cpu, Precision::F32, runs));
    }
    let cpu_only = std::env::var("SEVIT_BENCH_CPU_ONLY")
        .map(|v| v == "1")
        .unwrap_or(false);
    if tch::Cuda::is_available() && !cpu_only {
        for case in &cases {
            for p in [Precision::F32, Precision::F16, Precision::Bf16] {
                rows.push(bench(case, Device::Cuda(0), p, runs));
            }
        }
    }
    let report = serde_json::json!({
        "bench": "sevit-model forward",
        "threads": tch::get_num_threads(),
        "cuda_available": tch::Cuda::is_available(),
        "results": rows,
    });
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/model.json");
    write_atomic(
        &out,
        serde_json::to_string_pretty(&report).unwrap().as_bytes(),
    )
    .expect("writing the bench report");
    println!("wrote {}", out.display());
}
