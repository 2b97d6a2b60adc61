//! DINO self-distillation loss with a running centre and teacher-temperature schedule.

use tch::{Kind, Tensor};

use crate::schedule::teacher_temp_schedule;

/// The DINO cross-entropy for one batch, without touching any centre.
///
/// * `student_out`: `[n_student_views * B, D]`, view-major (all of view 0, then view 1, ...).
/// * `teacher_out`: `[n_teacher_views * B, D]`, view-major; teacher view `i` is the same image
///   view as student view `i`.
/// * `center`: `[1, D]` (or `[D]`), subtracted from the teacher outputs before sharpening.
///
/// Teacher probabilities `softmax((t - c) / teacher_temp)` (no gradient), student
/// log-probabilities `log_softmax(s / student_temp)`; for every pair with different views,
/// `-sum_d p_t log p_s` averaged over the batch; the result is the mean over all pairs.
pub fn dino_loss(
    student_out: &Tensor,
    teacher_out: &Tensor,
    center: &Tensor,
    n_student_views: usize,
    n_teacher_views: usize,
    teacher_temp: f64,
    student_temp: f64,
) -> Tensor {
    let s = (student_out / student_temp).log_softmax(-1, Kind::Float);
    let s_chunks = s.chunk(n_student_views as i64, 0);
    let t = ((teacher_out - center) / teacher_temp)
        .softmax(-1, Kind::Float)
        .detach();
    let t_chunks = t.chunk(n_teacher_views as i64, 0);
    let mut total: Option<Tensor> = None;
    let mut n_terms = 0usize;
    for (iq, q) in t_chunks.iter().enumerate() {
        for (v, sv) in s_chunks.iter().enumerate() {
            if v == iq {
                continue;
            }
            let term = (-(q * sv))
                .sum_dim_intlist(-1, false, Kind::Float)
                .mean(Kind::Float);
            total = Some(match total {
                None => term,
                Some(acc) => acc + term,
            });
            n_terms += 1;
        }
    }
    let total = total.expect("DINO loss needs at least one (teacher view, student view) pair");
    total / n_terms as f64
}

/// DINO loss state: the running centre `c` and the per-epoch teacher temperatures.
#[derive(Debug)]
pub struct DinoLoss {
    /// Running centre `[1, D]` of the teacher outputs.
    pub center: Tensor,
    /// Centre EMA momentum (0.9).
    pub center_momentum: f64,
    /// Student temperature (0.1).
    pub student_temp: f64,
    /// Teacher temperature of each epoch.
    pub teacher_temps: Vec<f64>,
    /// Number of teacher (global) views.
    pub n_global: usize,
}

/// The settings of a [`DinoLoss`] (DINO's `DINOLoss` arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct DinoLossConfig {
    /// Width of the feature head's output (the number of prototypes).
    pub out_dim: i64,
    /// Number of teacher (global) views.
    pub n_global: usize,
    /// Teacher temperature at the start of the warm-up.
    pub warmup_teacher_temp: f64,
    /// Teacher temperature after the warm-up.
    pub teacher_temp: f64,
    /// Epochs of linear teacher-temperature warm-up.
    pub warmup_teacher_temp_epochs: usize,
    /// Epochs of the stage (the length of the temperature schedule).
    pub epochs: usize,
    /// Student temperature.
    pub student_temp: f64,
    /// Momentum of the centre.
    pub center_momentum: f64,
}

impl DinoLoss {
    /// A loss with a zero centre on `device`.
    pub fn new(cfg: &DinoLossConfig, device: tch::Device) -> Self {
        Self {
            center: Tensor::zeros([1, cfg.out_dim], (Kind::Float, device)),
            center_momentum: cfg.center_momentum,
            student_temp: cfg.student_temp,
            teacher_temps: teacher_temp_schedule(
                cfg.warmup_teacher_temp,
                cfg.teacher_temp,
                cfg.warmup_teacher_temp_epochs,
                cfg.epochs,
            ),
            n_global: cfg.n_global,
        }
    }

    /// Teacher temperature of `epoch` (the last value past the end).
    pub fn teacher_temp(&self, epoch: usize) -> f64 {
        *self
            .teacher_temps
            .get(epoch)
            .or(self.teacher_temps.last())
            .unwrap_or(&0.04)
    }

    /// The loss for `epoch`, then the centre update `c <- m c + (1 - m) mean(teacher)`
    /// (applied after the loss is computed, without gradient), as DINO's `forward`.
    pub fn forward(&mut self, student_out: &Tensor, teacher_out: &Tensor, epoch: usize) -> Tensor {
        let loss = self.loss(student_out, teacher_out, epoch);
        self.update_center(teacher_out);
        loss
    }

    /// [`DinoLoss::forward`] in a data-parallel job: the centre moves towards the mean teacher
    /// output over every rank's rows (as DINO's `update_center`); with `None` exactly
    /// [`DinoLoss::forward`].
    pub fn forward_dist(
        &mut self,
        student_out: &Tensor,
        teacher_out: &Tensor,
        epoch: usize,
        dist: Option<&sevit_dist::Dist>,
    ) -> anyhow::Result<Tensor> {
        let loss = self.loss(student_out, teacher_out, epoch);
        self.update_center_dist(teacher_out, dist)?;
        Ok(loss)
    }

    /// [`dino_loss`] with this loss's centre, view counts and temperatures at `epoch`.
    fn loss(&self, student_out: &Tensor, teacher_out: &Tensor, epoch: usize) -> Tensor {
        let n_student =
            (student_out.size()[0] / (teacher_out.size()[0] / self.n_global as i64)) as usize;
        dino_loss(
            student_out,
            teacher_out,
            &self.center,
            n_student,
            self.n_global,
            self.teacher_temp(epoch),
            self.student_temp,
        )
    }

    /// `c <- m c + (1 - m) mean_rows(teacher_out)` without gradient.
    pub fn update_center(&mut self, teacher_out: &Tensor) {
        self.update_center_dist(teacher_out, None)
            .expect("a single process has no collective that can fail");
    }

    /// [`DinoLoss::update_center`] with the mean over the rows of every rank when `dist` is
    /// given (one all-reduce of the row sums and count; no read to the host).
    fn update_center_dist(
        &mut self,
        teacher_out: &Tensor,
        dist: Option<&sevit_dist::Dist>,
    ) -> anyhow::Result<()> {
        tch::no_grad(|| {
            let t = teacher_out.detach().to_kind(Kind::Float);
            let batch_center = match dist {
                None => t.mean_dim(0, true, Kind::Float),
                Some(dist) => {
                    let rows = Tensor::from_slice(&[t.size()[0] as f32]).to_device(t.device());
                    let mut buf = Tensor::cat(&[t.sum_dim_intlist(0, false, Kind::Float), rows], 0);
                    dist.all_reduce_sum(&mut buf)?;
                    let d = buf.size()[0] - 1;
                    buf.narrow(0, 0, d).view([1, d]) / buf.narrow(0, d, 1)
                }
            };
            self.center =
                &self.center * self.center_momentum + batch_center * (1.0 - self.center_momentum);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(x: &[f64]) -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    fn t(rows: &[[f64; 2]]) -> Tensor {
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v as f32))
            .collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, 2])
    }

    /// 2 teacher views, 3 student views, batch 1, 2-dim outputs: 2*3-2 = 4 pairs.
    #[test]
    fn matches_hand_computation() {
        let s = [[0.3, -0.2], [1.0, 0.5], [-0.4, 0.8]];
        let te = [[0.2, 0.1], [-0.3, 0.6]];
        let c = [0.05, -0.1];
        let (tt, st) = (0.04, 0.1);
        let mut expected = 0.0;
        let mut n = 0;
        for (iq, tv) in te.iter().enumerate() {
            let p = softmax(&[(tv[0] - c[0]) / tt, (tv[1] - c[1]) / tt]);
            for (v, sv) in s.iter().enumerate() {
                if v == iq {
                    continue;
                }
                let q = softmax(&[sv[0] / st, sv[1] / st]);
                expected += -(p[0] * q[0].ln() + p[1] * q[1].ln());
                n += 1;
            }
        }
        assert_eq!(n, 4);
        expected /= n as f64;
        let got = dino_loss(&t(&s), &t(&te), &t(&[c]), 3, 2, tt, st).double_value(&[]);
        assert!(
            (got - expected).abs() < 1e-5,
            "got {got}, expected {expected}"
        );
    }

    /// Batch 2: the batch mean is taken per pair before averaging the pairs.
    #[test]
    fn batch_mean_and_center_update() {
        // student views: view0 rows 0..2, view1 rows 2..4 ; teacher same layout
        let s = [[0.1, 0.2], [0.3, -0.1], [0.0, 0.5], [-0.2, 0.2]];
        let te = [[0.4, 0.0], [0.1, 0.3], [-0.1, 0.2], [0.2, 0.2]];
        let mut expected = 0.0;
        for (iq, v) in [(0usize, 1usize), (1, 0)] {
            let mut pair = 0.0;
            for b in 0..2 {
                let tv = te[iq * 2 + b];
                let sv = s[v * 2 + b];
                let p = softmax(&[tv[0] / 0.04, tv[1] / 0.04]);
                let q = softmax(&[sv[0] / 0.1, sv[1] / 0.1]);
                pair += -(p[0] * q[0].ln() + p[1] * q[1].ln());
            }
            expected += pair / 2.0;
        }
        expected /= 2.0;
        let mut l = DinoLoss::new(
            &DinoLossConfig {
                out_dim: 2,
                n_global: 2,
                warmup_teacher_temp: 0.04,
                teacher_temp: 0.04,
                warmup_teacher_temp_epochs: 0,
                epochs: 1,
                student_temp: 0.1,
                center_momentum: 0.9,
            },
            tch::Device::Cpu,
        );
        let got = l.forward(&t(&s), &t(&te), 0).double_value(&[]);
        assert!(
            (got - expected).abs() < 1e-5,
            "got {got}, expected {expected}"
        );
        // centre: 0.9 * 0 + 0.1 * mean over the 4 teacher rows
        let c0 = l.center.double_value(&[0, 0]);
        let c1 = l.center.double_value(&[0, 1]);
        assert!((c0 - 0.1 * (0.4 + 0.1 - 0.1 + 0.2) / 4.0).abs() < 1e-7);
        assert!((c1 - 0.1 * (0.0 + 0.3 + 0.2 + 0.2) / 4.0).abs() < 1e-7);
        // the loss used the old centre (zero): a second call sees the new one
        let again = l.forward(&t(&s), &t(&te), 0).double_value(&[]);
        assert!((again - got).abs() > 1e-6);
    }

    #[test]
    fn gradient_flows_to_student_only() {
        let s = t(&[[0.3, -0.2], [1.0, 0.5]]).set_requires_grad(true);
        let te = t(&[[0.2, 0.1], [-0.3, 0.6]]).set_requires_grad(true);
        let loss = dino_loss(
            &s,
            &te,
            &Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu)),
            2,
            2,
            0.04,
            0.1,
        );
        let g = Tensor::run_backward(&[&loss], &[&s, &te], false, false);
        assert!(g[0].defined() && g[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(!g[1].defined() || g[1].abs().sum(Kind::Float).double_value(&[]) == 0.0);
    }

    #[test]
    fn teacher_temp_per_epoch() {
        let l = DinoLoss::new(
            &DinoLossConfig {
                out_dim: 4,
                n_global: 2,
                warmup_teacher_temp: 0.04,
                teacher_temp: 0.07,
                warmup_teacher_temp_epochs: 2,
                epochs: 4,
                student_temp: 0.1,
                center_momentum: 0.9,
            },
            tch::Device::Cpu,
        );
        assert!((l.teacher_temp(0) - 0.04).abs() < 1e-12);
        assert!((l.teacher_temp(1) - 0.07).abs() < 1e-12);
        assert!((l.teacher_temp(9) - 0.07).abs() < 1e-12);
    }
}
