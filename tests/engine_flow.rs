//! The engine end to end on synthetic 32 px images with the micro config: initial model,
//! DISTL steps T = 1..2 through `evolve`, correction passes, and resume-after-kill.

use std::collections::BTreeMap;
use std::path::Path;

use sevit_data::Split;
use sevit_distill::log::{epoch_means, read_log, StepKind};
use sevit_distill::trainer::Net;
use sevit_distill::{EvolveOptions, RunLayout, RunOptions, TrainConfig};
use sevit_model::Checkpoint;
use sevit_suite::{checkpoint_tensors, SyntheticSplit};

/// A run directory with a split of `n` synthetic 32 px images (30% labeled, 2 folds, 25% test).
fn synthetic_run(root: &Path, n: usize) -> RunLayout {
    let split = SyntheticSplit {
        n,
        synth_seed: 7,
        split_seed: 1,
        labeled: 0.3,
        folds: 2,
        test: 0.25,
    };
    sevit_suite::synthetic_run(root, "run", &split)
}

fn micro_config(overrides: &[&str]) -> TrainConfig {
    sevit_suite::micro_config(2, overrides)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn pretrain_evolve_resume() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let run = synthetic_run(tmp.path(), 96);
    let cfg = micro_config(&[]);

    // --- the whole curriculum: initial model, then T = 1, 2 ---
    let rows = sevit_distill::evolve(&run, &cfg, &EvolveOptions::default()).expect("evolve");
    assert_eq!(rows.iter().map(|r| r.t).collect::<Vec<_>>(), vec![0, 1, 2]);
    for r in &rows {
        assert!(r.auc.is_finite() && (0.0..=1.0).contains(&r.auc), "{r:?}");
        assert!(r.auc_lower <= r.auc && r.auc <= r.auc_upper, "{r:?}");
    }
    assert!(run.summary_json().exists() && run.summary_csv().exists());
    let csv = std::fs::read_to_string(run.summary_csv()).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // losses finite; the DINO loss of step 1 (teacher = student at the start) decreases
    let pre = read_log(&run.log("pretrain")).unwrap();
    assert_eq!(
        pre.len(),
        cfg.pretrain.epochs * pre.iter().filter(|r| r.epoch == 0).count()
    );
    assert!(pre.iter().all(|r| r.loss.is_finite() && r.loss > 0.0));
    for t in 1..=2 {
        let log = read_log(&run.log(&format!("step{t}"))).unwrap();
        assert!(log
            .iter()
            .all(|r| r.loss.is_finite() && r.dino.unwrap().is_finite()));
        assert!(log
            .iter()
            .all(|r| r.agreement.is_some_and(|a| (0.0..=1.0).contains(&a))));
        assert!(log
            .iter()
            .any(|r| r.kind == StepKind::Correction && r.correction.unwrap().is_finite()));
        assert_eq!(
            epoch_means(&log, StepKind::Unlabeled).len(),
            cfg.optim.epochs
        );
        if t == 1 {
            let dino: Vec<f64> = (0..cfg.optim.epochs)
                .map(|e| {
                    let v: Vec<f64> = log
                        .iter()
                        .filter(|r| r.epoch == e && r.kind == StepKind::Unlabeled)
                        .map(|r| r.dino.unwrap())
                        .collect();
                    v.iter().sum::<f64>() / v.len() as f64
                })
                .collect();
            assert!(
                dino[dino.len() - 1] < dino[0],
                "step1: DINO loss did not decrease: {dino:?}"
            );
        }
    }

    // checkpoints load into a model of the config
    let model_cfg = cfg.model.model_config().unwrap();
    for stage in ["pretrain", "step1", "step2"] {
        let ck = Checkpoint::load(&run.checkpoint(stage)).unwrap();
        let mut net = Net::build(&model_cfg, tch::Device::Cpu, 0.0, 0);
        ck.load_vars("student.", &mut net.vs).unwrap();
        assert_eq!(ck.metadata["complete"], "true");
        if stage != "pretrain" {
            ck.load_vars("teacher.", &mut net.vs).unwrap();
            assert!(ck.tensors.contains_key("dino.center"));
        }
    }

    // --- resume after a kill: step 1 again in a second run dir, stopped after 2 of 3 epochs ---
    let run2 = RunLayout::new(tmp.path().join("run2"));
    std::fs::create_dir_all(&run2.root).unwrap();
    std::fs::copy(run.split_csv(), run2.split_csv()).unwrap();
    copy_dir(&run.stage_dir("pretrain"), &run2.stage_dir("pretrain"));
    let stop = RunOptions {
        stop_after_epochs: Some(2),
        ..Default::default()
    };
    let o = sevit_distill::distill(&run2, &cfg, 1, &stop).unwrap();
    assert!(!o.complete && o.epochs_done == 2);
    // without --resume the existing checkpoint is not overwritten
    assert!(sevit_distill::distill(&run2, &cfg, 1, &RunOptions::default()).is_err());
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    let o = sevit_distill::distill(&run2, &cfg, 1, &resume).unwrap();
    assert!(o.complete && o.epochs_done == 3);
    for prefix in ["student.", "teacher.", "optim.", "dino."] {
        let a = checkpoint_tensors(&run.checkpoint("step1"), prefix);
        let b = checkpoint_tensors(&run2.checkpoint("step1"), prefix);
        assert_eq!(a.len(), b.len());
        for (k, ta) in &a {
            assert!(
                ta.equal(&b[k]),
                "{k} differs between the uninterrupted and the resumed run"
            );
        }
    }
    let la = read_log(&run.log("step1")).unwrap();
    let lb = read_log(&run2.log("step1")).unwrap();
    assert_eq!(
        la, lb,
        "logs of the uninterrupted and the resumed run differ"
    );
}

#[test]
fn correction_passes_leave_schedules_and_teacher_alone() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let run = synthetic_run(tmp.path(), 40);
    let cfg = micro_config(&[
        "optim.epochs=2",
        "pretrain.epochs=1",
        "distl.correction={ policy = \"every_n\", every = 2 }",
    ]);
    sevit_distill::pretrain(&run, &cfg, &Default::default()).unwrap();
    let o = sevit_distill::distill(&run, &cfg, 1, &RunOptions::default()).unwrap();
    let split = Split::read_csv(&run.split_csv()).unwrap();
    let n_unl = split.unlabeled_upto(1).len();
    let n_lab = split.samples(sevit_data::Subset::Labeled).len();
    let ipe =
        sevit_distill::data::iters_per_epoch(n_unl, cfg.optim.batch_size, cfg.optim.drop_last);
    let per_pass =
        sevit_distill::data::iters_per_epoch(n_lab, cfg.optim.batch_size, cfg.optim.drop_last);
    // the schedules advanced on unlabeled iterations only, and the teacher got one EMA update each
    assert_eq!(o.iterations, 2 * ipe);
    assert_eq!(o.ema_updates, 2 * ipe);
    let fired = (0..2 * ipe).filter(|it| it % 2 == 0).count();
    assert_eq!(o.correction_steps, fired * per_pass);
    let log = read_log(&run.log("step1")).unwrap();
    let unl: BTreeMap<usize, f64> = log
        .iter()
        .filter(|r| r.kind == StepKind::Unlabeled)
        .map(|r| (r.iteration, r.lr))
        .collect();
    let corr: Vec<_> = log
        .iter()
        .filter(|r| r.kind == StepKind::Correction)
        .collect();
    assert_eq!(corr.len(), fired * per_pass);
    for c in corr {
        assert_eq!(c.iteration % 2, 0);
        assert_eq!(
            c.lr, unl[&c.iteration],
            "a correction step must use the current lr"
        );
        assert!(c.momentum.is_none(), "no EMA during correction");
    }
}

#[test]
fn self_supervised_pool_baseline_and_init() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let run = synthetic_run(tmp.path(), 40);
    let cfg = micro_config(&["pretrain.epochs=1", "pretrain.ssl_epochs=1"]);
    // DINO-only pretraining on the split's training images (no labels used)
    let pool = sevit_distill::data::pool(&[], &run).unwrap();
    let o =
        sevit_distill::pretrain_self_supervised(&run, &cfg, &pool, &RunOptions::default()).unwrap();
    assert!(o.complete && o.ema_updates == o.iterations);
    let log = read_log(&run.log("ssl")).unwrap();
    assert!(log
        .iter()
        .all(|r| r.kind == StepKind::SelfSupervised && r.dino.unwrap().is_finite()));
    // the initial model from the self-supervised teacher: its backbone is copied
    let p = sevit_distill::PretrainOptions {
        init: Some(run.checkpoint("ssl")),
        init_weights: Some(sevit_distill::Weights::Teacher),
        ..Default::default()
    };
    sevit_distill::pretrain(&run, &cfg, &p).unwrap();
    // a supervised baseline with labels on folds 0..1 too
    let b = sevit_distill::PretrainOptions {
        label_folds: 1,
        ..Default::default()
    };
    let o = sevit_distill::pretrain(&run, &cfg, &b).unwrap();
    assert_eq!(o.stage, "supervised1");
    let split = Split::read_csv(&run.split_csv()).unwrap();
    let n = split.samples(sevit_data::Subset::Labeled).len() + split.unlabeled_upto(1).len();
    assert_eq!(
        o.iterations,
        sevit_distill::data::iters_per_epoch(n, cfg.optim.batch_size, cfg.optim.drop_last)
    );
    // a curriculum step refuses to start from a missing stage
    let err = sevit_distill::distill(&run, &cfg, 2, &RunOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("step1"), "{err:#}");
}

#[test]
fn bf16_autocast_trains_the_whole_curriculum_step() {
    let _torch = sevit_suite::torch_globals();
    // precision = "bf16": forward passes under bf16 autocast (here on CPU; on CUDA the same
    // code path); parameters, optimiser state and checkpoints stay f32 and losses finite.
    let tmp = tempfile::tempdir().unwrap();
    let run = synthetic_run(tmp.path(), 40);
    let cfg = micro_config(&["precision=\"bf16\"", "optim.epochs=1", "pretrain.epochs=2"]);
    sevit_distill::pretrain(&run, &cfg, &Default::default()).unwrap();
    sevit_distill::distill(&run, &cfg, 1, &RunOptions::default()).unwrap();
    for stage in ["pretrain", "step1"] {
        let log = read_log(&run.log(stage)).unwrap();
        assert!(!log.is_empty());
        assert!(
            log.iter().all(|r| r.loss.is_finite()),
            "{stage}: non-finite loss"
        );
    }
    let student = checkpoint_tensors(
        &run.stage_dir("step1").join("checkpoint.safetensors"),
        "student.",
    );
    assert!(!student.is_empty());
    assert!(student.values().all(|t| t.kind() == tch::Kind::Float));
    assert_eq!(
        sevit_distill::precision::current(tch::Device::Cpu),
        None,
        "autocast left on"
    );
    let f16 = TrainConfig::default_with_overrides(&["precision=\"f16\"".into()]);
    let err = match f16 {
        Ok(c) => c.validate().unwrap_err(),
        Err(e) => e,
    };
    assert!(format!("{err:#}").contains("loss scaler"), "{err:#}");
}
