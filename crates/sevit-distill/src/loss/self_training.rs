//! Self-training (pseudo-label) loss, the correction BCE and the DISTL loss combination.

use tch::{Reduction, Tensor};

/// BCE-with-logits between the student's logit on global view 2 and the soft target
/// `sigmoid(teacher logit on global view 1)` (no threshold, no gradient into the teacher).
/// Both inputs are `[B]`; mean over the batch. The α(e) factor is applied by [`combine`].
pub fn self_training_loss(student_logit_view2: &Tensor, teacher_logit_view1: &Tensor) -> Tensor {
    let target = teacher_logit_view1.detach().sigmoid();
    student_logit_view2.binary_cross_entropy_with_logits::<Tensor>(
        &target,
        None,
        None,
        Reduction::Mean,
    )
}

/// BCE-with-logits of the student's logits `[B]` against true labels `[B]` (0/1 floats).
pub fn correction_bce(student_logit: &Tensor, labels: &Tensor) -> Tensor {
    student_logit.binary_cross_entropy_with_logits::<Tensor>(
        &labels.to_kind(student_logit.kind()),
        None,
        None,
        Reduction::Mean,
    )
}

/// DISTL's total loss: `λ·L_dino + (1−λ)·w·L_cls` while `epoch < dino_epochs`, else `w·L_cls`,
/// where `w` is α(e) for self-training and 1 for correction passes.
pub fn combine(
    dino: &Tensor,
    cls: &Tensor,
    weight: f64,
    lambda: f64,
    epoch: usize,
    dino_epochs: usize,
) -> Tensor {
    if epoch < dino_epochs {
        dino * lambda + cls * ((1.0 - lambda) * weight)
    } else {
        cls * weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bce(x: f64, y: f64) -> f64 {
        let p = 1.0 / (1.0 + (-x).exp());
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    }

    #[test]
    fn soft_pseudo_label_bce() {
        let s = [0.7f32, -1.2, 0.1];
        let t = [2.0f32, -0.5, 0.0];
        let expected: f64 = s
            .iter()
            .zip(t.iter())
            .map(|(&x, &z)| bce(x as f64, 1.0 / (1.0 + (-(z as f64)).exp())))
            .sum::<f64>()
            / 3.0;
        let got =
            self_training_loss(&Tensor::from_slice(&s), &Tensor::from_slice(&t)).double_value(&[]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn hard_label_bce() {
        let s = [0.7f32, -1.2];
        let y = [1.0f32, 0.0];
        let expected = (bce(0.7, 1.0) + bce(-1.2, 0.0)) / 2.0;
        let got =
            correction_bce(&Tensor::from_slice(&s), &Tensor::from_slice(&y)).double_value(&[]);
        assert!((got - expected).abs() < 1e-6);
    }

    #[test]
    fn combination_switches_after_dino_epochs() {
        let d = Tensor::from(2.0f64);
        let c = Tensor::from(3.0f64);
        let a = combine(&d, &c, 0.4, 0.5, 0, 5).double_value(&[]);
        assert!((a - (0.5 * 2.0 + 0.5 * 0.4 * 3.0)).abs() < 1e-12);
        let b = combine(&d, &c, 0.4, 0.5, 5, 5).double_value(&[]);
        assert!((b - 0.4 * 3.0).abs() < 1e-12);
    }
}
