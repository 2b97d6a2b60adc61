//! The T = 1..k curriculum of DISTL: step T trains on unlabeled folds 0..T-1.

use std::ops::Range;

/// Where a curriculum step takes its initial teacher and student from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepInit {
    /// T = 1: teacher and student both start from the initial model's student.
    Pretrain,
    /// T > 1: teacher and student start from step `T-1`'s teacher and student.
    Step(usize),
}

/// One step T of the curriculum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurriculumStep {
    /// Time step T (1-based).
    pub t: usize,
    /// Unlabeled folds used, cumulatively: `0..T`.
    pub folds: Range<usize>,
    /// Initialisation source.
    pub init: StepInit,
}

impl CurriculumStep {
    /// Name of the step's output directory inside the run directory: `step{T}`.
    pub fn dir_name(&self) -> String {
        stage_dir::step(self.t)
    }

    /// Name of the directory of the stage this step starts from (`pretrain` or `step{T-1}`).
    pub fn init_dir_name(&self) -> String {
        match self.init {
            StepInit::Pretrain => stage_dir::PRETRAIN.to_string(),
            StepInit::Step(t) => stage_dir::step(t),
        }
    }
}

/// Directory names of the curriculum's stages inside a run directory (the engine's
/// `layout::stage_name` adds the other stages).
pub mod stage_dir {
    /// The initial model (T = 0).
    pub const PRETRAIN: &str = "pretrain";

    /// DISTL step T.
    pub fn step(t: usize) -> String {
        format!("step{t}")
    }

    /// `Some(T)` for the name of DISTL step T.
    pub fn parse_step(name: &str) -> Option<usize> {
        name.strip_prefix("step")?.parse().ok()
    }
}

/// The curriculum over `k` unlabeled folds: steps T = 1..=k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Curriculum {
    /// Number of unlabeled folds (the reference uses 3).
    pub k: usize,
}

impl Curriculum {
    /// A curriculum over `k >= 1` folds.
    pub fn new(k: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            k >= 1,
            "a curriculum needs at least one unlabeled fold (k = 0)"
        );
        Ok(Self { k })
    }

    /// Step `t`, validated against `1..=k`.
    pub fn step(&self, t: usize) -> anyhow::Result<CurriculumStep> {
        anyhow::ensure!(
            (1..=self.k).contains(&t),
            "step T={t} is outside the curriculum T=1..{} (the split has {} unlabeled folds)",
            self.k,
            self.k
        );
        Ok(CurriculumStep {
            t,
            folds: 0..t,
            init: if t == 1 {
                StepInit::Pretrain
            } else {
                StepInit::Step(t - 1)
            },
        })
    }

    /// All steps T = 1..=k in order.
    pub fn steps(&self) -> impl Iterator<Item = CurriculumStep> + '_ {
        (1..=self.k).map(move |t| self.step(t).expect("t in range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_fold_plan() {
        let c = Curriculum::new(3).unwrap();
        let steps: Vec<_> = c.steps().collect();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].folds, 0..1);
        assert_eq!(steps[0].init, StepInit::Pretrain);
        assert_eq!(steps[0].init_dir_name(), "pretrain");
        assert_eq!(steps[2].folds, 0..3);
        assert_eq!(steps[2].init, StepInit::Step(2));
        assert_eq!(steps[2].dir_name(), "step3");
        assert_eq!(steps[2].init_dir_name(), "step2");
    }

    #[test]
    fn out_of_range() {
        let c = Curriculum::new(3).unwrap();
        assert!(c.step(0).is_err());
        assert!(c.step(4).is_err());
        assert!(Curriculum::new(0).is_err());
    }
}
