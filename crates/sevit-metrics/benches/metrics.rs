//! Timing of the metrics on large simulated score vectors (`cargo bench -p sevit-metrics`).
//! Plain `std::time` harness: each line is the best of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sevit_metrics::{
    bootstrap_ci, calibration, delong_ci, delong_paired, evaluate, roc_auc, EvalOptions,
};

fn data(n: usize, seed: u64) -> (Vec<bool>, Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.3)).collect();
    let score = |rng: &mut ChaCha8Rng, l: bool, s: f64| {
        let z: f64 = (0..4).map(|_| rng.gen::<f64>()).sum::<f64>() - 2.0;
        // Rounded to 3 decimals: many ties, as with real probabilities printed to a CSV.
        ((1.0 / (1.0 + (-(2.0 * z + if l { s } else { -s })).exp())) * 1000.0).round() / 1000.0
    };
    let a = labels.iter().map(|&l| score(&mut rng, l, 1.0)).collect();
    let b = labels.iter().map(|&l| score(&mut rng, l, 0.7)).collect();
    (labels, a, b)
}

fn time(name: &str, n: usize, reps: usize, mut f: impl FnMut()) {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    println!("{name:<28} n={n:<8} {:>10.3} ms", best.as_secs_f64() * 1e3);
}

fn main() {
    for n in [1_000, 10_000, 100_000] {
        let (labels, a, b) = data(n, 1);
        time("roc_auc", n, 5, || {
            black_box(roc_auc(&labels, &a).unwrap());
        });
        time("delong_ci", n, 5, || {
            black_box(delong_ci(&labels, &a, 0.95).unwrap());
        });
        time("delong_paired", n, 5, || {
            black_box(delong_paired(&labels, &a, &b).unwrap());
        });
        time("calibration (10 bins)", n, 5, || {
            black_box(calibration(&labels, &a, 10).unwrap());
        });
        time("bootstrap_ci (2000 reps)", n, 1, || {
            black_box(bootstrap_ci(&labels, &a, 2000, 0.95, 0).unwrap());
        });
        time("evaluate (DeLong only)", n, 3, || {
            black_box(evaluate(&labels, &a, &EvalOptions::default()).unwrap());
        });
    }
    let (labels, a, _) = data(500, 2);
    let opts = EvalOptions {
        model: "example".into(),
        run: "bench".into(),
        ..EvalOptions::default()
    };
    println!(
        "\nexample report (n = 500):\n{}",
        evaluate(&labels, &a, &opts).unwrap()
    );
}
