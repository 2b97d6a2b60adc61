//! The report's sections besides the main tables: setup (protocol, machine, split, wall
//! times, preset), backbone gate, which ingredient fails, validation AUCs, EMA teacher,
//! other arms against DISTL, the pseudo-label audit and robustness. Each is a Markdown file in the experiment
//! directory, handed to [`crate::write_report`] as preamble or appendix.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sevit_data::Subset;
use sevit_distill::audit::{audit_path, read_audit};
use sevit_distill::layout::stage_name;
use sevit_distill::log::{epoch_means_of, read_log, StepKind};

use crate::layout::{ExperimentLayout, Ledger};
use crate::protocol::Protocol;
use crate::runner::Runner;

mod diagnosis;

/// What the sections read: the protocol, its directory and ledger, and each model's AUC,
/// read from its `predictions.csv` once however many tables show it.
struct Report<'a> {
    protocol: &'a Protocol,
    layout: &'a ExperimentLayout,
    ledger: &'a Ledger,
    aucs: RefCell<BTreeMap<PathBuf, Option<f64>>>,
}

impl Report<'_> {
    /// Test (or validation) AUC of model `name` of `seed`, or `None` before it is scored.
    fn auc(&self, seed: u64, subset: Subset, name: &str) -> Option<f64> {
        let p = self.layout.eval(seed, subset, name).join("predictions.csv");
        *self.aucs.borrow_mut().entry(p).or_insert_with_key(|p| {
            let preds = sevit_metrics::read_predictions_csv(p).ok()?;
            sevit_metrics::roc_auc(&preds.labels, &preds.scores).ok()
        })
    }

    fn ledger(&self) -> &Ledger {
        self.ledger
    }
}

/// The section files written.
pub(crate) struct Sections {
    pub preamble: Vec<PathBuf>,
    pub appendix: Vec<PathBuf>,
    /// Which ingredient fails, as the "Which ingredient fails" section judges it.
    pub diagnosis: Vec<diagnosis::Finding>,
}

pub(crate) fn write_sections(runner: &Runner) -> anyhow::Result<Sections> {
    let r = &Report {
        protocol: &runner.protocol,
        layout: &runner.layout,
        ledger: runner.ledger(),
        aucs: RefCell::default(),
    };
    let root = &r.layout.root;
    let write = |name: &str, text: String| -> anyhow::Result<PathBuf> {
        let p = root.join(name);
        sevit_fs::write_atomic(&p, text.as_bytes())?;
        Ok(p)
    };
    let mut preamble = vec![write("setup.md", setup(r)?)?];
    if r.protocol.backbone.is_some() {
        preamble.push(write("backbone.md", backbone(r)?)?);
    }
    preamble.push(write("ingredients.md", ingredients(r)?)?);
    let (text, diagnosis) = diagnosis::diagnosis(r)?;
    preamble.push(write("diagnosis.md", text)?);
    let mut appendix = vec![
        write("audit.md", audit(r))?,
        write("validation.md", validation(r))?,
    ];
    if r.protocol.report.robustness {
        appendix.push(write("robustness.md", robustness(r))?);
    }
    if r.protocol.report.attention && r.ledger.done("attention") && !r.layout.attention().is_dir() {
        appendix.push(write("attention.md", attention_not_kept(r))?);
    }
    Ok(Sections {
        preamble,
        appendix,
        diagnosis,
    })
}

/// Where the attention grids went when the run's folder came without them: they show test
/// images, so they stay on the machine that drew them.
fn attention_not_kept(r: &Report) -> String {
    let seed = r.protocol.seeds[0];
    format!(
        "## Attention maps\n\nThe grids of seed {seed}'s test images at T = 0..{k} were drawn on the machine that ran seed {seed} and are not kept with the results, because they show the test images; this checkout has no `{}`. `sevit visualize --run {} --stage step{k}` draws them again from a checkpoint of that seed.\n",
        shown(&r.layout.attention()),
        shown(&r.layout.run(seed).root),
        k = r.protocol.data.folds,
    )
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn mean(v: &[Option<f64>]) -> Option<f64> {
    let got: Vec<f64> = v.iter().flatten().copied().collect();
    (!got.is_empty()).then(|| got.iter().sum::<f64>() / got.len() as f64)
}

/// `path` as the report names it: relative to the working directory (the repository, for
/// `just experiment`) when it lies below it, so a committed report names no machine's folders.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|rel| !rel.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// The commit (short hash and date) that last changed `path`, or with `added` the one that
/// added it (a pre-registration is the commit that added the protocol's notes).
fn git_commit_of(path: &Path, added: bool) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut git = std::process::Command::new("git");
    git.current_dir(dir).args(["log", "--format=%h %cs"]);
    if added {
        git.arg("--diff-filter=A");
    } else {
        git.arg("-1");
    }
    git.arg("--")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            // With `added`, the oldest addition is the registration (a file re-added later
            // after a deletion is not).
            out.lines().last().map(|l| l.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not committed".into())
}

fn setup(r: &Report) -> anyhow::Result<String> {
    let p = &r.protocol;
    let root = &r.layout.root;
    let mut s = String::from("## Setup\n\n");
    let protocol_file = root.join("protocol.toml");
    let _ = writeln!(
        s,
        "* Protocol `{}` (kept in `{}`); seeds: {}. Command: `just experiment <protocol>`.",
        p.name,
        shown(&protocol_file),
        p.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "* Training preset `{}` (last commit {}), overrides: {}.",
        shown(&p.config),
        git_commit_of(&p.config, false),
        if p.set.is_empty() {
            "none".to_string()
        } else {
            format!("`{}`", p.set.join(" "))
        }
    );
    let _ = writeln!(
        s,
        "* Data: `{}`; {}% labeled, {} unlabeled folds, {}% validation (tuning only), test = the descriptor's test files.",
        shown(&p.data.dataset),
        p.data.labeled_fraction * 100.0,
        p.data.folds,
        p.data.val_fraction * 100.0
    );
    let _ = writeln!(
        s,
        "* Success criteria, declared in the protocol: AUC(T={k}) − AUC(T=0) ≥ {} with paired DeLong p < {}.",
        p.criteria.min_mean_gain,
        p.criteria.alpha,
        k = p.data.folds
    );
    for note in &p.notes {
        let _ = writeln!(
            s,
            "* Notes `{}`: added in commit {}, last changed in commit {}.",
            shown(note),
            git_commit_of(note, true),
            git_commit_of(note, false)
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let _ = writeln!(s, "* Machine: {cpus} CPU cores ({model}).");
    let first = p.seeds[0];
    if let Ok(split) = std::fs::read_to_string(r.layout.seed_dir(first).join("split.txt")) {
        let _ = write!(
            s,
            "\nSplit of seed {first} (images per subset):\n\n```\n{split}```\n"
        );
    }
    let total: f64 = r.ledger().stages.iter().map(|st| st.seconds).sum();
    let _ = write!(
        s,
        "\nWall time of each stage (seconds; a resumed stage counts its last run only), {:.1} h in all:\n\n| stage | what | seconds |\n|---|---|---|\n",
        total / 3600.0
    );
    for st in &r.ledger().stages {
        let _ = writeln!(s, "| {} | {} | {:.0} |", st.id, st.detail, st.seconds);
    }
    let preset = std::fs::read_to_string(root.join("preset.toml"))?;
    let _ = write!(s, "\nTraining preset:\n\n```toml\n{preset}```\n");
    Ok(s)
}

/// The backbone gate's result, once measured.
fn read_gate(r: &Report) -> anyhow::Result<Option<crate::gate::GateResult>> {
    crate::gate::read_result(&r.layout.backbone().root)
}

/// The pseudo-label audit rows of the last epoch of DISTL step `t` of `seed` (none before it ran).
fn last_epoch_audit(r: &Report, seed: u64, t: usize) -> Vec<sevit_distill::audit::AuditRow> {
    let dir = r.layout.run(seed).stage_dir(&stage_name::step(t));
    let rows = read_audit(&audit_path(&dir)).unwrap_or_default();
    let last = rows.iter().map(|x| x.epoch).max();
    rows.into_iter().filter(|x| Some(x.epoch) == last).collect()
}

/// The training log of DISTL step `t` of `seed`, if it ran.
fn step_log(r: &Report, seed: u64, t: usize) -> Option<Vec<sevit_distill::log::LogRecord>> {
    read_log(&r.layout.run(seed).log(&stage_name::step(t))).ok()
}

/// Mean of `f` over the unlabeled iterations of the log's last epoch.
fn last_epoch_mean(
    recs: &[sevit_distill::log::LogRecord],
    f: fn(&sevit_distill::log::LogRecord) -> Option<f64>,
) -> Option<f64> {
    epoch_means_of(recs, StepKind::Unlabeled, f).last().copied()
}

fn backbone(r: &Report) -> anyhow::Result<String> {
    let mut s = String::from("## Backbone gate\n\n");
    match read_gate(r)? {
        None => s.push_str("The backbone has not been gated yet.\n"),
        Some(g) => {
            let _ = writeln!(
                s,
                "DINO self-supervised pretraining on the corpus (`{}`), before any curriculum:\n",
                shown(&r.layout.backbone().root.join("corpus.csv"))
            );
            let _ = writeln!(
                s,
                "| check | measured | required | met |\n|---|---|---|---|"
            );
            let _ = writeln!(
                s,
                "| final DINO loss / ln K | {:.3} / {:.3} = {:.2} | ≤ {} | {} |",
                g.dino_loss,
                g.ln_k,
                g.loss_ratio,
                g.gate.max_loss_ratio,
                yes(g.loss_ratio <= g.gate.max_loss_ratio)
            );
            let _ = writeln!(
                s,
                "| k-NN probe AUC (k = {}, {} bank / {} validation images) − random weights | {:.3} − {:.3} = {:+.3} | ≥ {} | {} |",
                g.k,
                g.bank,
                g.queries,
                g.probe_auc,
                g.random_probe_auc,
                g.gain(),
                g.gate.min_probe_gain,
                yes(g.gain() >= g.gate.min_probe_gain)
            );
            let _ = writeln!(
                s,
                "\nGate: **{}**.",
                if g.passed { "passed" } else { "failed" }
            );
        }
    }
    Ok(s)
}

/// The evidence on each ingredient of a DISTL step in one table: the starting point, the
/// pseudo-labels the teacher fed the student, and what each step did to the model.
fn ingredients(r: &Report) -> anyhow::Result<String> {
    let p = &r.protocol;
    let k = p.data.folds;
    let ln_k = (r.protocol.train_config(&[])?.model.out_dim as f64).ln();
    let mut s = String::from("## Each ingredient, in numbers\n\nMeans over the seeds run so far; the sections below give each seed.\n\n| T | initial / DISTL student, validation AUC | change from T−1 | teacher pseudo-label AUC on the folds (last epoch) | DINO loss, last epoch (ln K = ");
    let _ = write!(s, "{ln_k:.2}) |\n|---|---|---|---|---|\n");
    let val_at = |t: usize| -> Vec<Option<f64>> {
        p.seeds
            .iter()
            .map(|&seed| r.auc(seed, Subset::Val, &format!("distl-T{t}")))
            .collect()
    };
    for t in 0..=k {
        let now = mean(&val_at(t));
        let change = if t == 0 {
            "-".to_string()
        } else {
            let d: Vec<Option<f64>> = val_at(t)
                .iter()
                .zip(val_at(t - 1))
                .map(|(a, b)| Some((*a)? - b?))
                .collect();
            mean(&d).map_or("-".into(), |v| format!("{v:+.3}"))
        };
        let (mut pseudo, mut dino) = (Vec::new(), Vec::new());
        if t > 0 {
            for &seed in &p.seeds {
                pseudo.extend(last_epoch_audit(r, seed, t).iter().map(|x| Some(x.auc)));
                if let Some(recs) = step_log(r, seed, t) {
                    dino.push(last_epoch_mean(&recs, |x| x.dino));
                }
            }
        }
        let _ = writeln!(
            s,
            "| {t} | {} | {change} | {} | {} |",
            fmt(now),
            if t == 0 {
                "-".into()
            } else {
                fmt(mean(&pseudo))
            },
            if t == 0 { "-".into() } else { fmt(mean(&dino)) },
        );
    }
    Ok(s)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn audit(r: &Report) -> String {
    let p = &r.protocol;
    let mut s = String::from(
        "## Pseudo-label audit\n\nThe teacher's soft pseudo-labels (sigmoid of its logit on global view 1) during each DISTL\nstep, against the unlabeled folds' true labels, which training never sees: AUC and accuracy\nat 0.5 in the step's first and last epoch, per fold. Raw: `seed-S/run/stepT/pseudo_labels.csv`.\n\n| seed | T | fold | AUC, first epoch | AUC, last epoch | accuracy, last epoch | called positive |\n|---|---|---|---|---|---|---|\n",
    );
    let mut per_t: std::collections::BTreeMap<usize, Vec<Option<f64>>> = Default::default();
    for &seed in &p.seeds {
        for t in 1..=p.data.folds {
            let path = audit_path(&r.layout.run(seed).stage_dir(&stage_name::step(t)));
            let Ok(rows) = read_audit(&path) else {
                continue;
            };
            let (Some(first), Some(last)) = (
                rows.iter().map(|x| x.epoch).min(),
                rows.iter().map(|x| x.epoch).max(),
            ) else {
                continue;
            };
            for f in 0..t {
                let at = |e: usize| rows.iter().find(|x| x.epoch == e && x.fold == f);
                let (a, b) = (at(first), at(last));
                if let Some(b) = b {
                    per_t.entry(t).or_default().push(Some(b.auc));
                    let _ = writeln!(
                        s,
                        "| {seed} | {t} | {} | {} | {:.3} | {:.3} | {:.2} |",
                        f + 1,
                        fmt(a.map(|a| a.auc)),
                        b.auc,
                        b.accuracy,
                        b.positive_rate
                    );
                }
            }
        }
    }
    for (t, v) in &per_t {
        let _ = writeln!(s, "| mean | {t} | all | | {} | | |", fmt(mean(v)));
    }
    s.push_str(&dynamics(r));
    s
}

/// What each DISTL step did to its losses: the DINO and self-training losses and the
/// teacher-student agreement, first and last epoch.
fn dynamics(r: &Report) -> String {
    let p = &r.protocol;
    let mut s = String::from("\n### The steps' losses\n\nMean over the unlabeled iterations of the first and last epoch of each DISTL step: the DINO\nloss (ln K for a uniform teacher), the self-training loss (BCE against the soft pseudo-labels)\nand the share of images on which teacher (view 1) and student (view 2) agree at 0.5.\nRaw: `seed-S/run/stepT/log.jsonl`.\n\n| seed | T | DINO loss | self-training loss | agreement |\n|---|---|---|---|---|\n");
    for &seed in &p.seeds {
        for t in 1..=p.data.folds {
            let Ok(recs) = read_log(&r.layout.run(seed).log(&stage_name::step(t))) else {
                continue;
            };
            let span = |v: Vec<f64>| match (v.first(), v.last()) {
                (Some(a), Some(b)) => format!("{a:.3} → {b:.3}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {seed} | {t} | {} | {} | {} |",
                span(epoch_means_of(&recs, StepKind::Unlabeled, |x| x.dino)),
                span(epoch_means_of(&recs, StepKind::Unlabeled, |x| x.self_training)),
                span(epoch_means_of(&recs, StepKind::Unlabeled, |x| x.agreement)),
            );
        }
    }
    s
}

fn restarts(r: &Report, seed: u64, stage: &str) -> String {
    let f = r.layout.run(seed).stage_dir(stage).join("restarts.csv");
    let Ok(text) = std::fs::read_to_string(f) else {
        return "-".into();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let a: f64 = c.get(3)?.parse().ok()?;
            Some(if c.get(4) == Some(&"true") {
                format!("**{a:.3}**")
            } else {
                format!("{a:.3}")
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn diff_p(path: &Path) -> String {
    let Ok(c) = sevit_metrics::ComparisonReport::load_json(path) else {
        return "-".into();
    };
    let (d, p) = (c.test.diff, c.test.p_value);
    if p < 1e-4 {
        format!("{d:+.3} (p < 0.0001)")
    } else {
        format!("{d:+.3} (p = {p:.4})")
    }
}

fn validation(r: &Report) -> String {
    let p = &r.protocol;
    let k = p.data.folds;
    let ts = || 1..=k;
    let header = |first: &str| {
        let mut h = format!("| seed | {first} | T=0 |");
        let mut rule = String::from("|---|---|---|");
        for t in ts() {
            let _ = write!(h, " T={t} |");
            rule.push_str("---|");
        }
        format!("{h}\n{rule}\n")
    };
    let mut s = String::from("## Validation AUC of every model\n\nThe same models on the validation split (held out by patient from the training part; what\nthe presets were tuned on, never the test files). Raw: `seed-S/eval-val/`.\n\n");
    s.push_str(&header("arm"));
    let val = |seed, name: &str| fmt(r.auc(seed, Subset::Val, name));
    for &seed in &p.seeds {
        let t0 = val(seed, "distl-T0");
        let mut arms = vec![("DISTL", "distl")];
        if p.baselines.supervised {
            arms.push(("supervised", "supervised"));
        }
        if p.baselines.control {
            arms.push(("labeled-only control", "control"));
        }
        for (label, name) in arms {
            let _ = write!(s, "| {seed} | {label} | {t0} |");
            for t in ts() {
                let _ = write!(s, " {} |", val(seed, &format!("{name}-T{t}")));
            }
            s.push('\n');
        }
    }
    let restarted = p.seeds.iter().any(|&seed| {
        r.layout
            .run(seed)
            .stage_dir(stage_name::PRETRAIN)
            .join("restarts.csv")
            .is_file()
    });
    if restarted {
        s.push_str("\nRestarts (`pretrain.restarts`): the validation AUC of each training of a supervised stage (at\nits best epoch); the stage keeps the one in bold.\n\n| seed | initial model (T=0) |");
        for t in ts() {
            let _ = write!(s, " supervised T={t} |");
        }
        s.push_str("\n|---|---|");
        s.push_str(&"---|".repeat(k));
        s.push('\n');
        for &seed in &p.seeds {
            let _ = write!(
                s,
                "| {seed} | {} |",
                restarts(r, seed, stage_name::PRETRAIN)
            );
            for t in ts() {
                let _ = write!(s, " {} |", restarts(r, seed, &stage_name::supervised(t)));
            }
            s.push('\n');
        }
    }
    s.push_str("\n## DISTL's EMA teacher\n\nThe tables above evaluate the student of each DISTL step (DISTL.md: student weights by\ndefault). The same steps' teacher on the test set, validation AUC in brackets; T=0 is the\ninitial model, where teacher and student are one network.\n\n");
    s.push_str("| seed |");
    for t in 0..=k {
        let _ = write!(s, " T={t} |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(k + 1));
    s.push('\n');
    let both = |seed, name: &str| {
        format!(
            "{} ({})",
            fmt(r.auc(seed, Subset::Test, name)),
            fmt(r.auc(seed, Subset::Val, name))
        )
    };
    let teacher = |t: usize| {
        if t == 0 {
            "distl-T0".to_string()
        } else {
            format!("distl-teacher-T{t}")
        }
    };
    for &seed in &p.seeds {
        let _ = write!(s, "| {seed} |");
        for t in 0..=k {
            let _ = write!(s, " {} |", both(seed, &teacher(t)));
        }
        s.push('\n');
    }
    let _ = write!(s, "| mean (test) |");
    for t in 0..=k {
        let v: Vec<Option<f64>> = p
            .seeds
            .iter()
            .map(|&seed| r.auc(seed, Subset::Test, &teacher(t)))
            .collect();
        let _ = write!(s, " {} |", fmt(mean(&v)));
    }
    s.push('\n');
    let mut others: Vec<(String, String)> = p
        .ablations
        .iter()
        .map(|a| {
            (
                format!("ablation-{}", a.name),
                format!(
                    "{}: `{}`{}",
                    a.name,
                    a.set.join(" "),
                    a.seeds.as_ref().map_or(String::new(), |s| format!(
                        " (seeds {})",
                        s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                    ))
                ),
            )
        })
        .collect();
    if p.baselines.ssl_finetune.is_some() {
        others.push((
            "ssl-finetune".into(),
            "ssl-finetune: the backbone's DINO pretraining continued on the corpus plus the folds seen so far, then supervised fine-tuning on the labeled set".into(),
        ));
    }
    if !others.is_empty() {
        s.push_str("\n## Other arms against DISTL\n\nFrom the same split and, for the ablations, the same initial model (reported, never used to\nchoose the preset): ");
        s.push_str(
            &others
                .iter()
                .map(|(_, d)| d.clone())
                .collect::<Vec<_>>()
                .join("; "),
        );
        s.push_str(".\nTest AUC, validation AUC in brackets, and the difference from DISTL with its paired DeLong p.\n\n| seed | T | DISTL |");
        for (name, _) in &others {
            let _ = write!(s, " {name} | − DISTL (p) |");
        }
        s.push_str("\n|---|---|---|");
        s.push_str(&"---|---|".repeat(others.len()));
        s.push('\n');
        for &seed in &p.seeds {
            for t in ts() {
                let _ = write!(
                    s,
                    "| {seed} | {t} | {} |",
                    both(seed, &format!("distl-T{t}"))
                );
                for (name, _) in &others {
                    let cmp = r.layout.comparison(seed, name, t);
                    let _ = write!(
                        s,
                        " {} | {} |",
                        both(seed, &format!("{name}-T{t}")),
                        diff_p(&cmp)
                    );
                }
                s.push('\n');
            }
        }
        for t in ts() {
            let m = |name: &str| {
                let v: Vec<Option<f64>> = p
                    .seeds
                    .iter()
                    .map(|&seed| r.auc(seed, Subset::Test, &format!("{name}-T{t}")))
                    .collect();
                fmt(mean(&v))
            };
            let _ = write!(s, "| mean | {t} | {} |", m("distl"));
            for (name, _) in &others {
                let _ = write!(s, " {} | |", m(name));
            }
            s.push('\n');
        }
    }
    s
}

fn robustness(r: &Report) -> String {
    let k = r.protocol.data.folds;
    let seed = r.protocol.seeds[0];
    let assets = r.protocol.docs.join("results").join("robustness");
    let read = |tag: &str| {
        sevit_metrics::NuisanceTable::read_csv(&assets.join(format!("nuisance-{tag}.csv")))
    };
    let mut s = format!("## Robustness to image nuisances (seed {seed}, test set)\n\nTest AUC (DeLong 95% CI) when every test image is perturbed; severity 0 is the clean image.\nRaw: `results/robustness/nuisance-T0.csv`, `results/robustness/nuisance-T{k}.csv`.\n\n| nuisance | severity | initial model (T=0) | DISTL T={k} |\n|---|---|---|---|\n");
    let (Ok(a), Ok(b)) = (read("T0"), read(&format!("T{k}"))) else {
        s.push_str("(not measured yet)\n");
        return s;
    };
    let cell =
        |x: &sevit_metrics::NuisanceRow| format!("{:.3} ({:.3}-{:.3})", x.auc, x.lower, x.upper);
    // Every kind repeats the clean image at severity 0: it is shown once.
    let mut clean_done = false;
    for (x, y) in a.rows.iter().zip(&b.rows) {
        if x.severity == 0.0 {
            if clean_done {
                continue;
            }
            clean_done = true;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            if x.severity > 0.0 {
                x.kind.as_str()
            } else {
                "none"
            },
            x.severity,
            cell(x),
            cell(y)
        );
    }
    let _ = writeln!(
        s,
        "\n![nuisances, T=0](results/robustness/nuisance-T0.png) ![nuisances, T={k}](results/robustness/nuisance-T{k}.png)"
    );
    s
}

#[cfg(test)]
mod tests;
