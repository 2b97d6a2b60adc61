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
    let cfg = micro_config(&["pretrain.epochs=1", "pretrain.self_supervised_epochs=1"]);
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

/// A run directory over `data` (synthetic, written once) with a split that has a validation
/// part.
fn run_with_val(root: &Path, name: &str, n: usize) -> RunLayout {
    let data = root.join("data");
    let descriptor = if data.join("dataset.toml").exists() {
        data.join("dataset.toml")
    } else {
        let synth = sevit_data::SynthConfig {
            size: 32,
            seed: 7,
            difficulty: 0.5,
            ..Default::default()
        };
        sevit_data::synth::generate(&data, n, &synth).expect("synthetic data")
    };
    let ds = sevit_data::Dataset::from_descriptor(&descriptor).expect("descriptor");
    let split_cfg = sevit_data::SplitConfig {
        seed: 1,
        labeled_fraction: 0.3,
        folds: 2,
        val_fraction: 0.25,
        test: sevit_data::TestSelection::Fraction(0.2),
    };
    let split = Split::create(&ds, &split_cfg).expect("split");
    let run = RunLayout::new(root.join(name));
    std::fs::create_dir_all(&run.root).unwrap();
    split.write_csv(&run.split_csv()).expect("split.csv");
    run
}

fn read_val_csv(run: &RunLayout) -> Vec<(usize, f64)> {
    std::fs::read_to_string(run.stage_dir("pretrain").join("val.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (e, a) = l.split_once(',').unwrap();
            (e.parse().unwrap(), a.parse().unwrap())
        })
        .collect()
}

#[test]
fn best_val_selection_keeps_the_best_epoch_and_resumes() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let epochs = 6;
    let sets = [
        format!("pretrain.epochs={epochs}"),
        "pretrain.select=best_val".to_string(),
    ];
    let cfg = micro_config(&sets.iter().map(String::as_str).collect::<Vec<_>>());
    let pretrain = |run: &RunLayout, cfg: &TrainConfig, stop: Option<usize>| {
        let p = sevit_distill::PretrainOptions {
            run: RunOptions {
                resume: true,
                stop_after_epochs: stop,
                ..Default::default()
            },
            ..Default::default()
        };
        sevit_distill::pretrain(run, cfg, &p)
    };

    // uninterrupted: one validation AUC per epoch, the best epoch's weights end the stage
    let a = run_with_val(tmp.path(), "a", 120);
    assert!(pretrain(&a, &cfg, None).unwrap().complete);
    let rows = read_val_csv(&a);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=epochs).collect::<Vec<_>>()
    );
    let (best_epoch, best_auc) =
        rows.iter()
            .copied()
            .fold((0, f64::NEG_INFINITY), |b, r| if r.1 > b.1 { r } else { b });
    let best = Checkpoint::load(&a.stage_dir("pretrain").join("best.safetensors")).unwrap();
    assert_eq!(best.metadata["epoch"], best_epoch.to_string());
    assert!((best.metadata["val_auc"].parse::<f64>().unwrap() - best_auc).abs() < 1e-6);
    let final_a = checkpoint_tensors(&a.checkpoint("pretrain"), "student.");
    let best_t: BTreeMap<String, tch::Tensor> = best
        .tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    assert_eq!(final_a.len(), best_t.len());
    for (k, v) in &final_a {
        assert!(v.equal(&best_t[k]), "{k} differs from the best epoch's");
    }

    // `last` ends with other weights whenever the best epoch is not the last one
    let c = run_with_val(tmp.path(), "c", 120);
    let last_cfg = micro_config(&[format!("pretrain.epochs={epochs}").as_str()]);
    pretrain(&c, &last_cfg, None).unwrap();
    assert!(!c.stage_dir("pretrain").join("val.csv").exists());
    let final_c = checkpoint_tensors(&c.checkpoint("pretrain"), "student.");
    // (on these images an early epoch is best, so selection changes the outcome)
    assert!(best_epoch < epochs, "validation AUC per epoch: {rows:?}");
    assert!(final_a.iter().any(|(k, v)| !v.equal(&final_c[k])));

    // killed after 2 epochs and resumed: the same validation curve and the same weights
    let b = run_with_val(tmp.path(), "b", 120);
    assert!(!pretrain(&b, &cfg, Some(2)).unwrap().complete);
    assert_eq!(read_val_csv(&b).len(), 2);
    assert!(pretrain(&b, &cfg, None).unwrap().complete);
    assert_eq!(read_val_csv(&b), rows);
    let final_b = checkpoint_tensors(&b.checkpoint("pretrain"), "student.");
    for (k, v) in &final_a {
        assert!(v.equal(&final_b[k]), "{k} differs after resume");
    }

    // no validation split: a clear error before any training
    let d = synthetic_run(&tmp.path().join("noval"), 40);
    let err = pretrain(&d, &cfg, None).unwrap_err();
    assert!(format!("{err:#}").contains("--val-fraction"), "{err:#}");
    assert!(!d.checkpoint("pretrain").exists());
}

fn read_csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn restarts_keep_the_best_validation_auc_and_resume() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let base = ["pretrain.epochs=3", "pretrain.select=best_val"];
    let one_cfg = micro_config(&base);
    let cfg = micro_config(&[base[0], base[1], "pretrain.restarts=3"]);
    let pretrain = |run: &RunLayout, cfg: &TrainConfig, resume: bool, stop: Option<usize>| {
        let p = sevit_distill::PretrainOptions {
            run: RunOptions {
                resume,
                stop_after_epochs: stop,
                ..Default::default()
            },
            ..Default::default()
        };
        sevit_distill::pretrain(run, cfg, &p)
    };
    let stage = |run: &RunLayout| run.stage_dir("pretrain");

    // three restarts: one row each, the best validation AUC chosen and installed as the stage
    let a = run_with_val(tmp.path(), "a", 120);
    let out = pretrain(&a, &cfg, false, None).unwrap();
    assert!(out.complete && out.checkpoint == a.checkpoint("pretrain"));
    let rows = read_csv_rows(&stage(&a).join(sevit_distill::loops::RESTARTS_CSV_FILE));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let aucs: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    let chosen: Vec<usize> = (0..3).filter(|&r| rows[r][4] == "true").collect();
    assert_eq!(chosen.len(), 1, "{rows:?}");
    let c = chosen[0];
    assert!(aucs.iter().all(|&x| x <= aucs[c]), "{rows:?}");
    let restart = |run: &RunLayout, r: usize| sevit_distill::loops::restart_dir(&stage(run), r);
    for (r, row) in rows.iter().enumerate() {
        let best = Checkpoint::load(&restart(&a, r).join("best.safetensors")).unwrap();
        assert_eq!(best.metadata["epoch"], row[2]);
        assert_eq!(
            row[1],
            sevit_distill::loops::restart_seed(cfg.seed, r).to_string()
        );
    }
    let installed = checkpoint_tensors(&a.checkpoint("pretrain"), "student.");
    let from_chosen =
        checkpoint_tensors(&restart(&a, c).join("checkpoint.safetensors"), "student.");
    for (k, v) in &installed {
        assert!(
            v.equal(&from_chosen[k]),
            "{k}: the stage is not the chosen restart"
        );
    }
    assert_eq!(
        std::fs::read(stage(&a).join("val.csv")).unwrap(),
        std::fs::read(restart(&a, c).join("val.csv")).unwrap()
    );
    // the restarts are different trainings
    let r0 = checkpoint_tensors(&restart(&a, 0).join("checkpoint.safetensors"), "student.");
    let r1 = checkpoint_tensors(&restart(&a, 1).join("checkpoint.safetensors"), "student.");
    assert!(r0.iter().any(|(k, v)| !v.equal(&r1[k])));

    // restart 0 is the single training of the same config
    let single = run_with_val(tmp.path(), "single", 120);
    pretrain(&single, &one_cfg, false, None).unwrap();
    for (k, v) in checkpoint_tensors(&single.checkpoint("pretrain"), "student.") {
        assert!(
            v.equal(&r0[&k]),
            "{k}: restart 0 differs from a single training"
        );
    }

    // killed during restart 0, resumed: the same restarts and the same stage
    let b = run_with_val(tmp.path(), "b", 120);
    assert!(!pretrain(&b, &cfg, false, Some(1)).unwrap().complete);
    assert!(!b.checkpoint("pretrain").exists());
    let err = pretrain(&b, &cfg, false, None).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    assert!(pretrain(&b, &cfg, true, None).unwrap().complete);
    assert_eq!(
        read_csv_rows(&stage(&b).join(sevit_distill::loops::RESTARTS_CSV_FILE)),
        rows
    );
    for (k, v) in checkpoint_tensors(&b.checkpoint("pretrain"), "student.") {
        assert!(v.equal(&installed[&k]), "{k} differs after resume");
    }
}

#[test]
fn dino_head_warm_up_trains_the_feature_head_only_and_resumes() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = micro_config(&[
        "pretrain.epochs=1",
        "optim.epochs=1",
        "distl.head_warmup_epochs=2",
    ]);
    let opts = |resume: bool, stop: Option<usize>| RunOptions {
        resume,
        stop_after_epochs: stop,
        ..Default::default()
    };
    let warm = "head-warmup";

    // uninterrupted: the warm-up, then step 1 from it
    let a = synthetic_run(&tmp.path().join("a"), 48);
    sevit_distill::pretrain(&a, &cfg, &Default::default()).unwrap();
    let o = sevit_distill::distill(&a, &cfg, 1, &opts(false, None)).unwrap();
    assert!(o.complete && o.stage == "step1", "{o:?}");
    let init = checkpoint_tensors(&a.checkpoint("pretrain"), "student.");
    for prefix in ["student.", "teacher."] {
        let mut head_moved = false;
        for (k, v) in checkpoint_tensors(&a.checkpoint(warm), prefix) {
            let name = k.strip_prefix(prefix).unwrap();
            let before = &init[&format!("student.{name}")];
            if name.starts_with("head.") {
                head_moved |= !v.equal(before);
            } else {
                // the teacher's EMA of equal tensors may round by an ulp
                let d = (&v - before).abs().max().double_value(&[]);
                assert!(d < 1e-6, "{k} moved by {d} during the warm-up");
            }
        }
        assert!(head_moved, "the {prefix}* feature head did not learn");
    }
    let log = read_log(&a.log(warm)).unwrap();
    assert!(!log.is_empty() && log.iter().all(|r| r.dino.unwrap().is_finite()));

    // killed after the warm-up's first epoch: step 1 has not started; resumed: the same result
    let b = synthetic_run(&tmp.path().join("b"), 48);
    copy_dir(&a.stage_dir("pretrain"), &b.stage_dir("pretrain"));
    let o = sevit_distill::distill(&b, &cfg, 1, &opts(false, Some(1))).unwrap();
    assert!(!o.complete && o.stage == warm, "{o:?}");
    assert!(!b.checkpoint("step1").exists());
    assert!(
        sevit_distill::distill(&b, &cfg, 1, &opts(true, None))
            .unwrap()
            .complete
    );
    for stage in [warm, "step1"] {
        let want = checkpoint_tensors(&a.checkpoint(stage), "");
        for (k, v) in checkpoint_tensors(&b.checkpoint(stage), "") {
            assert!(v.equal(&want[&k]), "{stage}: {k} differs after resume");
        }
    }
    // without warm-up epochs step 1 starts from the initial model itself
    let c = synthetic_run(&tmp.path().join("c"), 48);
    copy_dir(&a.stage_dir("pretrain"), &c.stage_dir("pretrain"));
    let plain = micro_config(&["pretrain.epochs=1", "optim.epochs=1"]);
    sevit_distill::distill(&c, &plain, 1, &opts(false, None)).unwrap();
    assert!(!c.stage_dir(warm).exists());
    let with = checkpoint_tensors(&a.checkpoint("step1"), "student.");
    let without = checkpoint_tensors(&c.checkpoint("step1"), "student.");
    assert!(with.iter().any(|(k, v)| !v.equal(&without[k])));
}

#[test]
fn without_self_training_the_unlabeled_loss_is_the_dino_term() {
    let _torch = sevit_suite::torch_globals();
    let tmp = tempfile::tempdir().unwrap();
    let run = synthetic_run(tmp.path(), 40);
    let cfg = micro_config(&[
        "pretrain.epochs=1",
        "optim.epochs=2",
        "distl.self_training=false",
    ]);
    sevit_distill::pretrain(&run, &cfg, &Default::default()).unwrap();
    assert!(
        sevit_distill::distill(&run, &cfg, 1, &RunOptions::default())
            .unwrap()
            .complete
    );
    let log = read_log(&run.log("step1")).unwrap();
    let lambda = cfg.distl.lambda;
    let mut corrections = 0;
    for r in &log {
        let dino = r.dino.unwrap();
        match r.kind {
            StepKind::Unlabeled => {
                // the pseudo-label BCE is still logged, but not trained on
                assert!(r.self_training.unwrap().is_finite());
                assert!(
                    (r.loss - lambda * dino).abs() < 1e-5 * (1.0 + dino),
                    "{r:?}"
                );
            }
            StepKind::Correction => {
                corrections += 1;
                let bce = r.correction.unwrap();
                let want = lambda * dino + (1.0 - lambda) * bce;
                assert!((r.loss - want).abs() < 1e-5 * (1.0 + want), "{r:?}");
            }
            _ => panic!("unexpected record {r:?}"),
        }
    }
    assert!(corrections > 0);
}
