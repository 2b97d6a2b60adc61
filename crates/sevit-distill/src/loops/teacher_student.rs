//! The teacher/student pair the DISTL step, DINO-only pretraining and the DINO-head warm-up
//! share: the stage trainer with both networks, starting them from a checkpoint, and one
//! forward pass of both over a multi-crop batch.

use std::path::Path;

use anyhow::Context;
use sevit_model::Checkpoint;
use tch::{Kind, Tensor};

use crate::data::Batch;
use crate::trainer::Trainer;

/// The trainer of a teacher/student stage (EMA teacher and DINO head: DISTL steps, SSL
/// pretraining, the DINO-head warm-up) of `epochs` over `n_images` images, in `RUN/<stage>/`,
/// joined to the data-parallel group of `opts` (if any).
pub(super) fn teacher_student_trainer(
    run: &crate::layout::RunLayout,
    cfg: &crate::TrainConfig,
    stage: &str,
    kind: crate::trainer::StageKind,
    epochs: usize,
    n_images: usize,
    opts: &crate::RunOptions,
) -> anyhow::Result<crate::trainer::Trainer> {
    let ipe = super::iters_per_epoch(cfg, n_images, opts);
    let dir = run.stage_dir(stage);
    let tr = crate::trainer::Trainer::new(cfg, stage, kind, &dir, epochs, ipe)?;
    Ok(tr.with_dist(opts.dist.clone()))
}

/// Starts a fresh stage's student from `init`'s `student.*` and its teacher from `init`'s
/// `teacher_prefix` variables; nothing when the stage resumes from its own checkpoint (and
/// nothing on ranks other than 0, which receive rank 0's weights when the stage starts).
pub(super) fn start_teacher_and_student(
    tr: &mut Trainer,
    init: &Path,
    teacher_prefix: &str,
) -> anyhow::Result<()> {
    if tr.checkpoint_path().exists() || !tr.is_main() {
        return Ok(());
    }
    let ck = Checkpoint::load(init)?;
    ck.load_vars("student.", &mut tr.student.vs)
        .with_context(|| format!("initialising the student from {}", init.display()))?;
    let teacher = tr.teacher.as_mut().expect("the stage has a teacher");
    ck.load_vars(teacher_prefix, &mut teacher.vs)
        .with_context(|| {
            format!(
                "initialising the teacher from {} ({teacher_prefix}*)",
                init.display()
            )
        })?;
    tracing::info!(
        stage = %tr.stage,
        "teacher ({teacher_prefix}*) and student (student.*) from {}",
        init.display()
    );
    Ok(())
}

/// One forward pass of teacher and student over a multi-crop batch (DISTL and DINO-only
/// pretraining alike).
pub(super) struct Forward {
    pub(super) dino: Tensor,
    pub(super) student_logit_v2: Tensor,
    pub(super) teacher_logit_v1: Tensor,
}

/// Teacher on the global views (no gradient, no drop-path), student on every view; the DINO
/// loss (centre updated after it) and the class logits DISTL compares.
pub(super) fn forward(tr: &mut Trainer, b: &Batch, epoch: usize) -> anyhow::Result<Forward> {
    let _autocast = tr.autocast();
    let n_global = tr.n_global;
    let bsz = b.views[0].size()[0];
    let t_out = tch::no_grad(|| {
        tr.teacher.as_ref().expect("teacher").net.forward_multi(
            &b.views[..n_global],
            n_global,
            false,
        )
    });
    let s_out = tr.student.net.forward_multi(&b.views, n_global, true);
    let dino = tr.dino.as_mut().expect("dino loss").forward_dist(
        &s_out.dino,
        &t_out.dino,
        epoch,
        tr.dist.as_ref(),
    )?;
    Ok(Forward {
        dino,
        student_logit_v2: s_out.cls_logits.narrow(0, bsz, bsz).to_kind(Kind::Float),
        teacher_logit_v1: t_out.cls_logits.narrow(0, 0, bsz).to_kind(Kind::Float),
    })
}
