//! Tests of [`super`] (`config.rs`).

use super::*;

#[test]
fn input_norm_reaches_the_backbone() {
    let c = TrainConfig::default_with_overrides(&["model.input_norm=[0.5, 0.25]".into()]).unwrap();
    assert_eq!(
        c.model.model_config().unwrap().vit.input_norm,
        Some((0.5, 0.25))
    );
    assert_eq!(
        TrainConfig::default()
            .model
            .model_config()
            .unwrap()
            .vit
            .input_norm,
        None
    );
    let bad = TrainConfig::default_with_overrides(&["model.input_norm=[0.5, 0.0]".into()]);
    let err = match bad {
        Ok(c) => c.model.model_config().unwrap_err(),
        Err(e) => e,
    };
    assert!(format!("{err:#}").contains("input_norm"), "{err:#}");
}

#[test]
fn defaults_are_the_paper() {
    let c = TrainConfig::default();
    let m = c.model.model_config().unwrap();
    assert_eq!(m.vit, ViTConfig::small(8));
    assert_eq!(m.head.out_dim, 65536);
    assert_eq!(c.optim.batch_size, 8);
    assert!((c.optim.peak_lr() - 2.5e-5).abs() < 1e-15);
    assert_eq!(c.optim.epochs, 5);
    assert_eq!(c.distl.correction, CorrectionConfig::EveryN { every: 500 });
    assert_eq!(c.dino_epochs(), 5);
    assert_eq!(c.model.drop_path, 0.1);
    c.validate().unwrap();
}

#[test]
fn unknown_keys_rejected_with_origin() {
    let err = TrainConfig::from_toml_str("[optim]\nbatchsize = 4\n", "x.toml").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("x.toml") && msg.contains("batchsize"), "{msg}");
    assert!(TrainConfig::from_toml_str("bogus = 1\n", "y.toml").is_err());
}

#[test]
fn overrides() {
    let c = TrainConfig::from_toml_with_overrides(
        "[optim]\nepochs = 3\n",
        "t",
        &[
            "optim.epochs=2".into(),
            "model.preset=micro".into(),
            "distl.correction={ policy = \"every_epoch\" }".into(),
            "device=cpu".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.optim.epochs, 2);
    assert_eq!(c.model.preset, "micro");
    assert_eq!(c.distl.correction, CorrectionConfig::EveryEpoch);
    assert!(TrainConfig::default_with_overrides(&["optim.nope=1".into()]).is_err());
    assert!(TrainConfig::default_with_overrides(&["noequals".into()]).is_err());
}

#[test]
fn roundtrip_toml() {
    let c = TrainConfig::default();
    let back = TrainConfig::from_toml_str(&c.to_toml().unwrap(), "rt").unwrap();
    assert_eq!(back, c);
}

#[test]
fn invalid_values() {
    assert!(TrainConfig::default_with_overrides(&["distl.lambda=1.5".into()]).is_err());
    assert!(TrainConfig::default_with_overrides(&["device=tpu".into()]).is_err());
    assert!(TrainConfig::default_with_overrides(&["model.preset=\"huge\"".into()]).is_err());
    assert!(TrainConfig::default_with_overrides(&["pretrain.restarts=0".into()]).is_err());
    let err = TrainConfig::default_with_overrides(&["pretrain.restarts=3".into()]).unwrap_err();
    assert!(format!("{err:#}").contains("best_val"), "{err:#}");
    let ok = [
        "pretrain.restarts=3".into(),
        "pretrain.select=\"best_val\"".into(),
    ];
    assert_eq!(
        TrainConfig::default_with_overrides(&ok)
            .unwrap()
            .pretrain
            .restarts,
        3
    );
    let no_st = || "distl.self_training=false".to_string();
    assert!(
        !TrainConfig::default_with_overrides(&[no_st()])
            .unwrap()
            .distl
            .self_training
    );
    let err =
        TrainConfig::default_with_overrides(&[no_st(), "distl.dino_epochs=2".into()]).unwrap_err();
    assert!(format!("{err:#}").contains("no loss"), "{err:#}");
}

#[test]
fn non_finite_numbers_are_refused() {
    for o in [
        "optim.lr=inf",
        "optim.lr=nan",
        "optim.min_lr=inf",
        "optim.clip_grad=nan",
        "optim.weight_decay=-inf",
    ] {
        let err = TrainConfig::default_with_overrides(&[o.into()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a finite number"),
            "{o}: {err:#}"
        );
    }
}

#[test]
fn image_sizes_must_be_patch_multiples() {
    // The paper preset: ViT-S/8.
    for (o, name) in [
        ("views.global_size=250", "views.global_size = 250"),
        ("views.local_size=100", "views.local_size = 100"),
        ("eval.image_size=226", "eval.image_size = 226"),
    ] {
        let err = TrainConfig::default_with_overrides(&[o.into()]).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains(name) && err.contains("multiple of the model's patch size 8"),
            "{err}"
        );
    }
    assert!(TrainConfig::default_with_overrides(&["views.global_size=248".into()]).is_ok());
}
#[test]
fn a_vit_table_names_the_model_custom() {
    let vit = "[model.vit]\nimg_size = 32\npatch_size = 8\nembed_dim = 48\ndepth = 3\nnum_heads = 3\nmlp_ratio = 4.0\nqkv_bias = true\nln_eps = 1e-6\n";
    let cfg = TrainConfig::from_toml_with_overrides(vit, "t", &[]).unwrap();
    assert_eq!(cfg.model.preset, "custom");
    assert_eq!(cfg.model.model_config().unwrap().vit.depth, 3);
    // What run directories record reads back the same.
    let again = TrainConfig::from_toml_str(&cfg.to_toml().unwrap(), "back").unwrap();
    assert_eq!(again, cfg);
    let both = format!("[model]\npreset = \"tiny/16\"\n{vit}");
    let err = TrainConfig::from_toml_with_overrides(&both, "t", &[]).unwrap_err();
    assert!(format!("{err:#}").contains("keep one of them"), "{err:#}");
}

mod preset_files {
    use super::*;

    fn preset(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs")
            .join(name)
    }

    #[test]
    fn paper_file_is_the_default() {
        let paper = TrainConfig::load(&preset("paper.toml"), &[]).unwrap();
        assert_eq!(paper, TrainConfig::default());
    }

    #[test]
    fn cpu_and_micro_files_parse() {
        let cpu = TrainConfig::load(&preset("cpu.toml"), &[]).unwrap();
        assert_eq!(cpu.model.model_config().unwrap().head.out_dim, 4096);
        assert_eq!(cpu.views.global_size, 128);
        let micro = TrainConfig::load(&preset("micro.toml"), &[]).unwrap();
        assert_eq!(micro.model.model_config().unwrap().vit.img_size, 32);
    }
}

#[test]
fn renamed_keys_are_errors_that_name_the_new_key() {
    for (old, new) in [
        ("distl.ssl_epochs=2", "distl.dino_epochs"),
        ("pretrain.ssl_epochs=2", "pretrain.self_supervised_epochs"),
    ] {
        let e = TrainConfig::default_with_overrides(&[old.into()]).unwrap_err();
        assert!(format!("{e:#}").contains(new), "{e:#}");
    }
    let toml = "[distl]\nssl_epochs = 2\n";
    let e = TrainConfig::from_toml_str(toml, "t").unwrap_err();
    assert!(format!("{e:#}").contains("distl.dino_epochs"), "{e:#}");
    // Checkpoints written before the rename keep loading (their config is JSON).
    let mut json = serde_json::to_value(TrainConfig::default()).unwrap();
    let distl = json["distl"].as_object_mut().unwrap();
    distl.insert("ssl_epochs".into(), 3.into());
    distl.remove("dino_epochs");
    let old: TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.distl.dino_epochs, Some(3));
}
