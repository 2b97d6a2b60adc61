//! The evolution loop on the micro model and synthetic phantoms: waiting for images, a
//! genuine improvement promoted, damaged candidates rejected (noisy weights, a blown-up
//! training), held images, rollback.

use std::path::{Path, PathBuf};

use sevit_data::{Dataset, Split, SplitConfig, Subset, SynthConfig, TestSelection};
use sevit_distill::{PretrainOptions, RunLayout, RunOptions, TrainConfig, Weights};
use sevit_evolution::step::image_states;
use sevit_evolution::{
    evolve_step, init_site, EvolveRequest, ImageStore, InitRequest, Registry, Settings, Site,
    Status, StepOutcome,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn micro(overrides: &[&str]) -> TrainConfig {
    let mut o: Vec<String> = vec!["threads=2".into()];
    o.extend(overrides.iter().map(|s| s.to_string()));
    let cfg = TrainConfig::load(&repo().join("configs/micro.toml"), &o).unwrap();
    cfg.apply_threads();
    cfg
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        ..Default::default()
    }
}

/// Phantom images (no labels used) in `dir/images`.
fn arrivals(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let cfg = SynthConfig {
        size: 32,
        difficulty: 0.0,
        seed,
        ..Default::default()
    };
    sevit_data::synth::generate(dir, n, &cfg).unwrap();
    dir.join("images")
}

/// A site whose initial model is deliberately undertrained (2 epochs on its labeled set).
fn site_with_initial_model(root: &Path) -> Site {
    let desc = sevit_data::synth::generate(
        &root.join("data"),
        260,
        &SynthConfig {
            size: 32,
            difficulty: 0.0,
            seed: 11,
            ..Default::default()
        },
    )
    .unwrap();
    let ds = Dataset::from_descriptor(&desc).unwrap();
    let split = Split::create(
        &ds,
        &SplitConfig {
            seed: 0,
            labeled_fraction: 0.2,
            folds: 1,
            val_fraction: 0.5,
            test: TestSelection::Fraction(0.05),
        },
    )
    .unwrap();
    let run = RunLayout::new(root.join("run"));
    std::fs::create_dir_all(&run.root).unwrap();
    split.write_csv(&run.split_csv()).unwrap();
    let o = sevit_distill::pretrain(
        &run,
        &micro(&["pretrain.epochs=2"]),
        &PretrainOptions {
            run: quiet(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(o.complete);
    let site = Site::new(root.join("site"));
    let v1 = init_site(
        &site,
        &InitRequest {
            checkpoint: run.checkpoint("pretrain"),
            weights: Weights::Student,
            // the steps: every iteration followed by a correction pass over the labeled set
            config: micro(&[
                "optim.epochs=3",
                "distl.correction={policy=\"every_n\",every=1}",
            ]),
            labeled: split.samples(Subset::Labeled),
            validation: split.samples(Subset::Val),
            settings: Settings {
                min_new_images: 60,
                ..Default::default()
            },
        },
    )
    .unwrap();
    assert_eq!(v1.id, "v1");
    site
}

fn step(site: &Site, req: &EvolveRequest) -> StepOutcome {
    evolve_step(
        site,
        &EvolveRequest {
            run: quiet(),
            ..req.clone()
        },
    )
    .unwrap()
}

#[test]
fn the_loop_promotes_improvements_rejects_damage_and_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let site = site_with_initial_model(tmp.path());
    let store = ImageStore::new(&site);

    // nothing arrived yet: the step waits
    match step(&site, &EvolveRequest::default()) {
        StepOutcome::Waiting {
            new_images: 0,
            needed: 60,
        } => {}
        other => panic!("{other:?}"),
    }

    // a genuine improvement: the undertrained model, trained further on new images with
    // corrections, passes the gate
    let first = arrivals(&tmp.path().join("a1"), 150, 21);
    store.add(&[first], &Default::default()).unwrap();
    let v2 = match step(&site, &EvolveRequest::default()) {
        StepOutcome::Decided { version, served } => {
            assert_eq!(served, "v2", "{:?}", version.gate);
            *version
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(v2.status, Status::Promoted);
    assert_eq!(v2.parent.as_deref(), Some("v1"));
    assert_eq!((v2.trained_on.images, v2.trained_on.new_images), (150, 150));
    let g = v2.gate.as_ref().unwrap();
    assert!(
        g.lower_bound > -0.01 && g.auc_candidate > g.auc_current,
        "{g:?}"
    );
    let reg = Registry::load(&site).unwrap();
    assert_eq!(reg.current_id(), Some("v2"));
    assert_eq!(sevit_evolution::audit::read(&site).unwrap(), reg.events);

    // damaged weights (noise on every student tensor) are rejected by the gate
    let ckpt = site.resolve(&v2.checkpoint);
    let mut ck = sevit_model::Checkpoint::load(&ckpt).unwrap();
    tch::manual_seed(5);
    for (name, t) in ck.tensors.iter_mut() {
        if name.starts_with("student.") && t.kind() == tch::Kind::Float {
            *t = &*t + t.randn_like() * 0.5;
        }
    }
    let noisy = tmp.path().join("noisy.safetensors");
    ck.save(&noisy).unwrap();
    let cfg = TrainConfig::load(&site.config_toml(), &[]).unwrap();
    let validation = sevit_evolution::locked::read_locked(&site.validation_csv(), true).unwrap();
    let labels = sevit_evolution::score::labels(&validation);
    let current =
        sevit_evolution::score::read(&site.resolve(&v2.validation.predictions), &validation)
            .unwrap();
    let damaged =
        sevit_evolution::score::score(&noisy, Weights::Student, &cfg, &validation).unwrap();
    let verdict =
        sevit_evolution::gate::decide(&labels, &current, &damaged, &Settings::default().gate)
            .unwrap();
    assert!(!verdict.promote, "{verdict:?}");

    // a candidate whose training blows up (learning rate 50x) is recorded, rejected, not served
    let second = arrivals(&tmp.path().join("a2"), 70, 22);
    store.add(&[second], &Default::default()).unwrap();
    let bad = EvolveRequest {
        overrides: vec!["optim.lr=0.5".into(), "optim.clip_grad=0.0".into()],
        ..Default::default()
    };
    let v3 = match step(&site, &bad) {
        StepOutcome::Decided { version, served } => {
            assert_eq!(served, "v2");
            *version
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(v3.status, Status::Rejected, "{:?}", v3.gate);
    let reg = Registry::load(&site).unwrap();
    assert_eq!(reg.current_id(), Some("v2"));
    // its 70 new images are held: no new image, so the next step waits
    let states = image_states(&site, &reg, &store.inbox().unwrap()).unwrap();
    assert_eq!(
        (states.trained.len(), states.new.len(), states.held.len()),
        (150, 0, 70)
    );
    assert!(matches!(
        step(&site, &EvolveRequest::default()),
        StepOutcome::Waiting { new_images: 0, .. }
    ));

    // rollback serves v1 again; v2 is marked rolled back
    let mut reg = Registry::load(&site).unwrap();
    assert_eq!(reg.rollback("test").unwrap(), "v1");
    reg.save(&site).unwrap();
    sevit_evolution::audit::sync(&site, &reg).unwrap();
    let reg = Registry::load(&site).unwrap();
    assert_eq!(reg.get("v2").unwrap().status, Status::RolledBack);
    assert_eq!(reg.current_id(), Some("v1"));
    assert!(
        reg.rollback("again").is_err(),
        "v1 is the first version served"
    );
    // a rejected version cannot be promoted without overriding the gate
    let mut reg = reg;
    assert!(reg.promote("v3", false, "why not").is_err());
    let actions: Vec<_> = sevit_evolution::audit::read(&site)
        .unwrap()
        .iter()
        .map(|e| e.action)
        .collect();
    use sevit_evolution::registry::Action::*;
    assert_eq!(actions, vec![Initial, GatePromoted, GateRejected, Rollback]);
}
