//! Per-iteration schedules: DINO's `cosine_scheduler`, the self-training weight α(e) and the
//! teacher-temperature warm-up.

/// DINO's `cosine_scheduler`: one value per iteration over `epochs * iters_per_epoch`
/// iterations. The first `warmup_epochs * iters_per_epoch` values rise linearly from
/// `start_warmup_value` to `base_value` (numpy `linspace`, endpoint included); the rest follow
/// `final + 0.5 (base - final) (1 + cos(pi i / n))` for `i` in `0..n`.
///
/// When `warmup_epochs >= epochs` every value is a warm-up value (DINO would fail its
/// length assertion; here the schedule is truncated to the total).
pub fn cosine_schedule(
    base_value: f64,
    final_value: f64,
    epochs: usize,
    iters_per_epoch: usize,
    warmup_epochs: usize,
    start_warmup_value: f64,
) -> Vec<f64> {
    let total = epochs * iters_per_epoch;
    let mut out = linspace(
        start_warmup_value,
        base_value,
        warmup_epochs * iters_per_epoch,
    );
    out.truncate(total);
    let n = total - out.len();
    for i in 0..n {
        let c = (std::f64::consts::PI * i as f64 / n as f64).cos();
        out.push(final_value + 0.5 * (base_value - final_value) * (1.0 + c));
    }
    out
}

/// numpy `linspace(a, b, n)` (endpoint included).
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![a],
        _ => {
            let step = (b - a) / (n - 1) as f64;
            (0..n)
                .map(|i| if i == n - 1 { b } else { a + step * i as f64 })
                .collect()
        }
    }
}

/// The self-training weight of DISTL: α(e) = 2 (e + 1) / E for epoch `e` (from 0) of `E`.
pub fn alpha_weight(epoch: usize, epochs: usize) -> f64 {
    2.0 * (epoch as f64 + 1.0) / epochs as f64
}

/// DINO's per-epoch teacher temperature: `linspace(warmup, final, warmup_epochs)` followed by
/// `final` for the remaining epochs (`epochs` values in all).
pub fn teacher_temp_schedule(
    warmup_teacher_temp: f64,
    teacher_temp: f64,
    warmup_epochs: usize,
    epochs: usize,
) -> Vec<f64> {
    let w = warmup_epochs.min(epochs);
    let mut v = linspace(warmup_teacher_temp, teacher_temp, w);
    v.resize(epochs, teacher_temp);
    v
}

/// The three per-iteration schedules of a training stage, all sized on the number of
/// *unlabeled* iterations (`epochs * iters_per_epoch`). Correction passes do not advance them.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// Learning rate per iteration.
    pub lr: Vec<f64>,
    /// Weight decay (regularised group only) per iteration.
    pub wd: Vec<f64>,
    /// Teacher EMA momentum per iteration.
    pub momentum: Vec<f64>,
}

impl Schedules {
    /// A stage's schedules from its `[optim]` section, over `epochs` of `iters_per_epoch`
    /// unlabeled iterations; the peak lr follows the linear scaling rule on the global batch of
    /// `world` processes.
    pub fn for_stage(
        o: &crate::config::OptimSection,
        epochs: usize,
        iters_per_epoch: usize,
        world: usize,
    ) -> Self {
        Schedules::new(
            o.peak_lr() * world as f64,
            o.min_lr,
            o.warmup_epochs,
            o.weight_decay,
            o.weight_decay_end,
            o.momentum_teacher,
            epochs,
            iters_per_epoch,
        )
    }

    /// Builds the schedules: lr with linear warm-up from 0 then cosine to `min_lr`, weight
    /// decay cosine from `wd` to `wd_end`, momentum cosine from `momentum_teacher` to 1.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lr: f64,
        min_lr: f64,
        warmup_epochs: usize,
        wd: f64,
        wd_end: f64,
        momentum_teacher: f64,
        epochs: usize,
        iters_per_epoch: usize,
    ) -> Self {
        Self {
            lr: cosine_schedule(lr, min_lr, epochs, iters_per_epoch, warmup_epochs, 0.0),
            wd: cosine_schedule(wd, wd_end, epochs, iters_per_epoch, 0, 0.0),
            momentum: cosine_schedule(momentum_teacher, 1.0, epochs, iters_per_epoch, 0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cosine_with_warmup_matches_dino_formula() {
        // base 1, final 0, 3 epochs of 2 its, 1 warm-up epoch from 0: warm-up = linspace(0,1,2)
        let s = cosine_schedule(1.0, 0.0, 3, 2, 1, 0.0);
        assert_eq!(s.len(), 6);
        assert!(close(s[0], 0.0) && close(s[1], 1.0));
        // remaining 4: 0.5 (1 + cos(pi i / 4))
        let pi = std::f64::consts::PI;
        for i in 0..4 {
            assert!(
                close(s[2 + i], 0.5 * (1.0 + (pi * i as f64 / 4.0).cos())),
                "{i}: {}",
                s[2 + i]
            );
        }
        assert!(close(s[2], 1.0));
    }

    #[test]
    fn constant_when_base_equals_final() {
        let s = cosine_schedule(0.01, 0.01, 5, 7, 0, 0.0);
        assert_eq!(s.len(), 35);
        assert!(s.iter().all(|&v| close(v, 0.01)));
    }

    #[test]
    fn momentum_rises_to_one_monotonically() {
        let s = cosine_schedule(0.9995, 1.0, 2, 10, 0, 0.0);
        assert!(close(s[0], 0.9995));
        assert!(s.windows(2).all(|w| w[1] >= w[0]));
        assert!(s[19] < 1.0 && s[19] > 0.99999);
    }

    #[test]
    fn warmup_longer_than_training_is_truncated() {
        let s = cosine_schedule(1.0, 0.0, 1, 3, 2, 0.0);
        assert_eq!(s.len(), 3);
        // the first 3 of linspace(0, 1, 6)
        assert!(close(s[1], 0.2) && close(s[2], 0.4));
    }

    #[test]
    fn alpha_values() {
        assert!(close(alpha_weight(0, 5), 0.4));
        assert!(close(alpha_weight(4, 5), 2.0));
        assert!(close(alpha_weight(1, 4), 1.0));
    }

    #[test]
    fn teacher_temp_warmup() {
        assert_eq!(teacher_temp_schedule(0.04, 0.04, 0, 3), vec![0.04; 3]);
        let t = teacher_temp_schedule(0.04, 0.07, 4, 6);
        assert_eq!(t.len(), 6);
        assert!(close(t[0], 0.04) && close(t[3], 0.07) && close(t[5], 0.07));
        assert!(close(t[1], 0.05));
    }

    #[test]
    fn stage_schedules() {
        let s = Schedules::new(1e-4, 1e-6, 1, 0.01, 0.01, 0.9995, 2, 3);
        assert_eq!(s.lr.len(), 6);
        assert!(close(s.lr[0], 0.0) && close(s.lr[2], 1e-4) && close(s.lr[3], 1e-4));
        assert!(s.lr[5] > 1e-6 && s.lr[5] < 1e-4);
        assert!(s.wd.iter().all(|&w| close(w, 0.01)));
        assert!(close(s.momentum[0], 0.9995));
    }
}
