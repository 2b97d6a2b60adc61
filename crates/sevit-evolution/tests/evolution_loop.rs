//! The evolution loop on the micro model and synthetic phantoms: waiting for images, a step
//! decided and served exactly when promoted, damaged candidates rejected (noisy weights, a
//! blown-up training) and a genuine improvement (the intact model against its damaged copy)
//! promoted, held images, manual promotion, rollback.

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

/// `configs/demo.toml`: the micro ViT at 32 px with a learning rate that learns the phantoms.
fn micro(overrides: &[&str]) -> TrainConfig {
    let mut o: Vec<String> = vec!["threads=2".into()];
    o.extend(overrides.iter().map(|s| s.to_string()));
    let cfg = TrainConfig::load(&repo().join("configs/demo.toml"), &o).unwrap();
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

/// A site whose initial model is deliberately undertrained (3 epochs on its labeled set).
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
            labeled_fraction: 0.12,
            folds: 1,
            val_fraction: 0.6,
            test: TestSelection::Fraction(0.05),
        },
    )
    .unwrap();
    let run = RunLayout::new(root.join("run"));
    std::fs::create_dir_all(&run.root).unwrap();
    split.write_csv(&run.split_csv()).unwrap();
    let o = sevit_distill::pretrain(
        &run,
        &micro(&["pretrain.epochs=3"]),
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

    // the first step: trained, scored, decided; served exactly when promoted
    let first = arrivals(&tmp.path().join("a1"), 300, 21);
    store.add(&[first]).unwrap();
    let v2 = match step(&site, &EvolveRequest::default()) {
        StepOutcome::Decided { version, served } => {
            let promoted = version.status == Status::Promoted;
            assert_eq!(
                served,
                if promoted { "v2" } else { "v1" },
                "{:?}",
                version.gate
            );
            *version
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(v2.parent.as_deref(), Some("v1"));
    assert_eq!((v2.trained_on.images, v2.trained_on.new_images), (300, 300));
    let g = v2.gate.as_ref().unwrap();
    assert_eq!(g.promote, g.lower_bound > -0.01, "{g:?}");
    let reg = Registry::load(&site).unwrap();
    assert_eq!(sevit_evolution::audit::read(&site).unwrap(), reg.events);
    let v2_promoted = v2.status == Status::Promoted;

    // damaged weights (noise on every student tensor of the model in service) are rejected
    // against the model they were damaged from, and that model is promoted against its
    // damaged copy
    let served = reg.current().unwrap().clone();
    let ckpt = site.resolve(&served.checkpoint);
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
    let intact =
        sevit_evolution::score::read(&site.resolve(&served.validation.predictions), &validation)
            .unwrap();
    let damaged =
        sevit_evolution::score::score(&noisy, Weights::Student, &cfg, &validation).unwrap();
    let gate = Settings::default().gate;
    let verdict = sevit_evolution::gate::decide(&labels, &intact, &damaged, &gate).unwrap();
    assert!(!verdict.promote, "{verdict:?}");
    let repaired = sevit_evolution::gate::decide(&labels, &damaged, &intact, &gate).unwrap();
    assert!(repaired.promote, "{repaired:?}");
    assert!(
        repaired.auc_candidate > repaired.auc_current + 0.05,
        "{repaired:?}"
    );

    // a candidate whose training blows up (learning rate 250x, no clipping) is recorded,
    // rejected, not served
    let second = arrivals(&tmp.path().join("a2"), 70, 22);
    store.add(&[second]).unwrap();
    let bad = EvolveRequest {
        overrides: vec!["optim.lr=0.5".into(), "optim.clip_grad=0.0".into()],
        ..Default::default()
    };
    let served_before = Registry::load(&site)
        .unwrap()
        .current_id()
        .unwrap()
        .to_string();
    let v3 = match step(&site, &bad) {
        StepOutcome::Decided { version, served } => {
            assert_eq!(served, served_before);
            *version
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(v3.status, Status::Rejected, "{:?}", v3.gate);
    let reg = Registry::load(&site).unwrap();
    assert_eq!(reg.current_id(), Some(served_before.as_str()));
    // images only rejected versions trained on are held: no new image, the next step waits
    let states = image_states(&site, &reg, &store.inbox().unwrap()).unwrap();
    let expect = if v2_promoted {
        (300, 0, 70)
    } else {
        (0, 0, 370)
    };
    assert_eq!(
        (states.trained.len(), states.new.len(), states.held.len()),
        expect
    );
    assert!(matches!(
        step(&site, &EvolveRequest::default()),
        StepOutcome::Waiting { new_images: 0, .. }
    ));

    // v2 in service (by the gate, or by hand with the override recorded), then rolled back:
    // v1 is served again and v2 is marked rolled back
    let mut reg = Registry::load(&site).unwrap();
    if !v2_promoted {
        assert!(
            reg.promote("v2", false, "try").is_err(),
            "a rejected version needs the override"
        );
        reg.promote("v2", true, "test: serve v2 to roll it back")
            .unwrap();
    }
    assert_eq!(reg.rollback("test").unwrap(), "v1");
    reg.commit(&site).unwrap();
    let mut reg = Registry::load(&site).unwrap();
    assert_eq!(reg.get("v2").unwrap().status, Status::RolledBack);
    assert_eq!(reg.current_id(), Some("v1"));
    assert!(
        reg.rollback("again").is_err(),
        "v1 is the first version served"
    );
    // a rejected version cannot be promoted without overriding the gate
    assert!(reg.promote("v3", false, "why not").is_err());
    let actions: Vec<_> = sevit_evolution::audit::read(&site)
        .unwrap()
        .iter()
        .map(|e| e.action)
        .collect();
    use sevit_evolution::registry::Action::*;
    let expect = if v2_promoted {
        vec![Initial, GatePromoted, GateRejected, Rollback]
    } else {
        vec![Initial, GateRejected, GateRejected, ManualPromote, Rollback]
    };
    assert_eq!(actions, expect);
}
