//! Data-parallel training across real processes: c10d (Gloo) on loopback, micro config,
//! synthetic 32 px images.
//!
//! The ranks are this test binary itself, re-executed: [`rank_worker`] (ignored in a normal
//! run, a no-op unless `SEVIT_TEST_RANK_JOB` is set) joins the job described by the torchrun
//! variables ([`LaunchSpec::child_env`]) and runs DISTL step 1 of the run directory the parent
//! prepared. The tests:
//! * two ranks × batch 4 train the same weights (within 1e-5) as one process × batch 8;
//! * a rank killed mid-run makes the other fail at once with an error naming it;
//! * a rank that hangs (SIGSTOP) makes the other fail after the process-group timeout.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sevit_data::{Split, Subset};
use sevit_dist::launch::LaunchSpec;
use sevit_distill::data::iters_per_epoch;
use sevit_distill::log::read_log;
use sevit_distill::{RunLayout, RunOptions, StageOutcome, TrainConfig};
use sevit_suite::{checkpoint_tensors, SyntheticSplit};

/// Set in a re-executed rank: the run directory whose DISTL step 1 it trains.
const JOB_VAR: &str = "SEVIT_TEST_RANK_JOB";
/// Set in a re-executed rank: config overrides, one per line.
const SET_VAR: &str = "SEVIT_TEST_RANK_SET";

/// The rank processes of these tests share two CPU cores: one job at a time, so that no rank
/// starves long enough to trip a peer's timeout.
static ONE_JOB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_job_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_JOB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn micro_config(overrides: &[String]) -> TrainConfig {
    sevit_suite::micro_config(1, overrides)
}

/// One rank of a job started by [`Job::start`] (which runs it with `--ignored`); not a test of
/// its own, and a no-op without `SEVIT_TEST_RANK_JOB`.
#[test]
#[ignore = "a rank process, started by the tests of this file"]
fn rank_worker() {
    let Ok(run_dir) = std::env::var(JOB_VAR) else {
        return;
    };
    let overrides: Vec<String> = std::env::var(SET_VAR)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut cfg = micro_config(&overrides);
    let dist = match sevit_distill::distributed::join(&mut cfg) {
        Ok(Some(d)) => d,
        Ok(None) => fail("not launched as a rank (WORLD_SIZE missing or 1)"),
        Err(e) => fail(&format!("joining the job: {e:#}")),
    };
    let rank = dist.rank();
    eprintln!("rank {rank}: joined");
    let run = RunLayout::new(&run_dir);
    let opts = RunOptions {
        dist: Some(dist),
        ..Default::default()
    };
    match sevit_distill::distill(&run, &cfg, 1, &opts) {
        Ok(o) => std::fs::write(outcome_path(&run.root, rank), counters(&o)).expect("outcome file"),
        Err(e) => fail(&format!("rank {rank}: {e:#}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(3)
}

/// Where rank `rank` of the job on `run` records its outcome (beside the run directory: only
/// rank 0 writes inside it).
fn outcome_path(run: &Path, rank: usize) -> PathBuf {
    let mut p = run.as_os_str().to_owned();
    p.push(format!(".rank{rank}"));
    PathBuf::from(p)
}

fn counters(o: &StageOutcome) -> String {
    format!(
        "epochs_done={} complete={} iterations={} ema_updates={} correction_steps={}",
        o.epochs_done, o.complete, o.iterations, o.ema_updates, o.correction_steps
    )
}

/// A run directory with a split of `n` synthetic 32 px images (`labeled` labeled fraction, 2
/// folds, 25% test) and an initial model trained for one epoch.
fn prepared_run(root: &Path, n: usize, labeled: f64) -> RunLayout {
    let split = SyntheticSplit {
        n,
        synth_seed: 11,
        split_seed: 3,
        labeled,
        folds: 2,
        test: 0.25,
    };
    let run = sevit_suite::synthetic_run(root, "base", &split);
    let cfg = micro_config(&["pretrain.epochs=1".into()]);
    sevit_distill::pretrain(&run, &cfg, &Default::default()).expect("initial model");
    run
}

/// A copy of `base` (split and initial model) at `to`.
fn copy_run(base: &RunLayout, to: &Path) -> RunLayout {
    let run = RunLayout::new(to);
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::copy(base.split_csv(), run.split_csv()).unwrap();
    let (from, dest) = (base.stage_dir("pretrain"), run.stage_dir("pretrain"));
    std::fs::create_dir_all(&dest).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
    }
    run
}

/// The rank processes of one job; killed (and reaped) when dropped, so that a failing test
/// leaves nothing running.
struct Job {
    children: Vec<Child>,
    stderr: Vec<PathBuf>,
}

impl Drop for Job {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill(); // SIGKILL also ends a stopped process
            let _ = c.wait();
        }
    }
}

impl Job {
    /// Starts `world` ranks training DISTL step 1 of `run` with `overrides`, and waits until
    /// every rank has joined the process group. A port taken between choosing and binding it
    /// (rank 0 cannot listen) is retried on another port.
    fn start(run: &RunLayout, world: usize, overrides: &[String], timeout_s: f64) -> Job {
        for attempt in 0..4 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let spec = LaunchSpec {
                program: std::env::current_exe().unwrap(),
                args: vec![],
                nproc: world,
                nnodes: 1,
                node_rank: 0,
                master_addr: "127.0.0.1".into(),
                master_port: port,
                timeout: Some(timeout_s),
                backend: Some("gloo".into()),
                threads: Some(1),
            };
            let mut job = Job {
                children: vec![],
                stderr: vec![],
            };
            for local in 0..world {
                let err = run
                    .root
                    .with_file_name(format!("rank{local}.attempt{attempt}.stderr"));
                let mut cmd = Command::new(&spec.program);
                cmd.args([
                    "rank_worker",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(JOB_VAR, &run.root)
                .env(SET_VAR, overrides.join("\n"))
                .envs(spec.child_env(local))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&err).unwrap());
                job.children.push(cmd.spawn().expect("starting a rank"));
                job.stderr.push(err);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let joined = (0..world)
                    .filter(|&r| job.stderr(r).contains(&format!("rank {r}: joined")))
                    .count();
                if joined == world {
                    return job;
                }
                if job.has_exited(0) {
                    if job.stderr(0).contains("cannot listen") {
                        break; // port taken: next attempt (the guard kills the other ranks)
                    }
                    panic!("rank 0 failed to start:\n{}", job.stderr(0));
                }
                assert!(
                    Instant::now() < deadline,
                    "the ranks did not join within 60 s:\n{}",
                    job.all_stderr()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port for the rendezvous after 4 attempts");
    }

    fn stderr(&self, rank: usize) -> String {
        std::fs::read_to_string(&self.stderr[rank]).unwrap_or_default()
    }

    fn all_stderr(&self) -> String {
        (0..self.children.len())
            .map(|r| format!("--- rank {r} ---\n{}", self.stderr(r)))
            .collect()
    }

    fn has_exited(&mut self, rank: usize) -> bool {
        self.children[rank].try_wait().unwrap().is_some()
    }

    /// Waits at most `limit` for rank `rank` to exit; its exit status and the time it took.
    fn wait(&mut self, rank: usize, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.children[rank].try_wait().unwrap() {
                return (st, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "rank {rank} still running after {limit:?}:\n{}",
                self.all_stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Two ranks with batch 4 each take the same steps as one process with batch 8: weights,
/// teacher, DINO centre and optimiser state within 1e-6 (the zero-gradient key part of the
/// qkv biases within lr), the same counters and logged losses.
#[test]
fn two_ranks_match_one_process_with_the_global_batch() {
    let _one = one_job_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let base = prepared_run(tmp.path(), 88, 0.3);
    let split = Split::read_csv(&base.split_csv()).unwrap();
    let (n_unl, n_lab) = (
        split.unlabeled_upto(1).len(),
        split.samples(Subset::Labeled).len(),
    );
    // Both sets end in a partial global batch that the two ranks split unevenly (gradients are
    // then weighted by image count); a remainder of one image would be dropped by the ranks.
    for (what, n) in [("unlabeled", n_unl), ("labeled", n_lab)] {
        assert!(
            n % 8 >= 2 && n % 2 == 1,
            "{what}: {n} images; pick a split whose last batch has an odd count >= 2"
        );
    }
    let common = [
        "model.drop_path=0",
        "optim.epochs=2",
        "optim.lr=1e-3",
        "optim.drop_last=false",
        "distl.correction={ policy = \"every_n\", every = 2 }",
    ];
    let with = |batch: usize| -> Vec<String> {
        let mut v: Vec<String> = common.iter().map(|s| s.to_string()).collect();
        v.push(format!("optim.batch_size={batch}"));
        v
    };

    // one process, batch 8, in this process
    let single = copy_run(&base, &tmp.path().join("single"));
    let o = sevit_distill::distill(&single, &micro_config(&with(8)), 1, &RunOptions::default())
        .expect("single-process DISTL step");
    let ipe = iters_per_epoch(n_unl, 8, false);
    assert!(o.complete && o.iterations == 2 * ipe, "{o:?}");
    assert!(o.correction_steps > 0, "no correction pass ran: {o:?}");

    // two ranks, batch 4 each
    let two = copy_run(&base, &tmp.path().join("two"));
    let mut job = Job::start(&two, 2, &with(4), 30.0);
    for r in 0..2 {
        let (st, _) = job.wait(r, Duration::from_secs(120));
        assert!(st.success(), "rank {r}: {st}\n{}", job.all_stderr());
    }
    for r in 0..2 {
        let got = std::fs::read_to_string(outcome_path(&two.root, r)).unwrap();
        assert_eq!(got, counters(&o), "rank {r}'s counters");
    }

    let mut worst: Vec<(&str, f64, String)> = vec![];
    for prefix in ["student.", "teacher.", "dino.", "optim."] {
        let mut w = (prefix, 0f64, String::new());
        let a = checkpoint_tensors(&single.checkpoint("step1"), prefix);
        let b = checkpoint_tensors(&two.checkpoint("step1"), prefix);
        assert!(!a.is_empty(), "no {prefix}* tensor in the checkpoint");
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{prefix}*"
        );
        for (k, ta) in &a {
            let max_diff = |x: &tch::Tensor, y: &tch::Tensor| {
                (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double))
                    .abs()
                    .max()
                    .double_value(&[])
            };
            let tb = &b[k];
            // The key part (middle third) of an attention qkv bias has an exactly zero gradient
            // (softmax is shift-invariant), so Adam turns fp32 reduction-order noise into steps
            // of up to ~lr: those entries move by noise alone and are only bounded by lr (1e-3).
            // Every other entry agrees to rounding.
            let d = if k.ends_with("attn.qkv.bias") && ta.dim() == 1 {
                let third = ta.size()[0] / 3;
                let key = max_diff(&ta.narrow(0, third, third), &tb.narrow(0, third, third));
                assert!(
                    key <= 1e-3,
                    "{k} (key part): max |single - two ranks| = {key:e}"
                );
                let q = max_diff(&ta.narrow(0, 0, third), &tb.narrow(0, 0, third));
                let v = max_diff(
                    &ta.narrow(0, 2 * third, third),
                    &tb.narrow(0, 2 * third, third),
                );
                q.max(v)
            } else {
                max_diff(ta, tb)
            };
            // fp32 reduction-order noise: a few ulps of the tensor's largest entry (Adam's
            // first moment of a bias near 0.5 differs by ~25 ulps, 3e-6 relative)
            let scale = ta.abs().max().to_kind(tch::Kind::Double).double_value(&[]);
            assert!(
                d <= 1e-6 + 1e-5 * scale,
                "{k}: max |single - two ranks| = {d:e} (largest entry {scale:e})"
            );
            if d >= w.1 {
                w = (prefix, d, k.clone());
            }
        }
        worst.push(w);
    }
    eprintln!("largest difference |single - two ranks| per group: {worst:?}");

    // rank 0 logged the losses averaged over both ranks: those of the single process
    let la = read_log(&single.log("step1")).unwrap();
    let lb = read_log(&two.log("step1")).unwrap();
    assert_eq!(la.len(), lb.len());
    for (a, b) in la.iter().zip(&lb) {
        assert_eq!(
            (a.kind, a.epoch, a.iteration, a.batch),
            (b.kind, b.epoch, b.iteration, b.batch)
        );
        assert_eq!(a.lr, b.lr);
        assert!((a.loss - b.loss).abs() < 1e-4, "{a:?}\n{b:?}");
    }
}

/// Starts a long two-rank run and waits until rank 0 has logged a training step.
fn long_job(tmp: &Path, timeout_s: f64) -> (RunLayout, Job) {
    let base = prepared_run(tmp, 48, 0.3);
    let run = copy_run(&base, &tmp.join("long"));
    let overrides: Vec<String> = ["optim.epochs=100000", "optim.batch_size=4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut job = Job::start(&run, 2, &overrides, timeout_s);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(run.log("step1")).is_ok_and(|s| s.lines().count() >= 2) {
        assert!(
            !job.has_exited(0) && !job.has_exited(1),
            "a rank stopped early:\n{}",
            job.all_stderr()
        );
        assert!(Instant::now() < deadline, "no progress in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    (run, job)
}

/// A rank killed mid-run: the other fails at its next collective, long before the timeout,
/// with an error that names its rank and the dead peer.
#[test]
fn a_killed_rank_stops_the_other_with_a_clear_error() {
    let _one = one_job_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let timeout = 20.0;
    let (_run, mut job) = long_job(tmp.path(), timeout);
    job.children[1].kill().unwrap();
    let (st, took) = job.wait(0, Duration::from_secs_f64(timeout + 30.0));
    let err = job.stderr(0);
    assert!(
        !st.success(),
        "rank 0 exited with {st} after its peer died:\n{err}"
    );
    assert!(
        took < Duration::from_secs_f64(timeout / 2.0),
        "rank 0 took {took:?} to notice the dead peer (timeout {timeout} s):\n{err}"
    );
    assert!(
        err.contains("on rank 0/2") && err.contains("a peer died"),
        "{err}"
    );
    // and Gloo's own account of the broken connection to the dead peer
    assert!(
        ["reset by peer", "closed by peer", "Broken pipe"]
            .iter()
            .any(|m| err.contains(m)),
        "{err}"
    );
    eprintln!("rank 0 stopped {took:?} after rank 1 was killed:\n{err}");
}

/// A rank that hangs (stopped by SIGSTOP): the other fails after about the timeout.
#[cfg(unix)]
#[test]
fn a_hung_rank_stops_the_other_after_the_timeout() {
    let _one = one_job_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let timeout = 4.0;
    let (_run, mut job) = long_job(tmp.path(), timeout);
    let pid = job.children[1].id().to_string();
    let stopped = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stopped.success());
    let (st, took) = job.wait(0, Duration::from_secs_f64(timeout + 30.0));
    let err = job.stderr(0);
    assert!(
        !st.success(),
        "rank 0 exited with {st} while its peer hung:\n{err}"
    );
    // the collective in flight may have begun a moment before the peer stopped
    assert!(
        took >= Duration::from_secs_f64(timeout * 0.5),
        "rank 0 failed after {took:?}, before the {timeout} s timeout:\n{err}"
    );
    assert!(
        err.contains("on rank 0/2") && err.to_lowercase().contains("timed out"),
        "{err}"
    );
    eprintln!("rank 0 stopped {took:?} after rank 1 hung:\n{err}");
    // the guard kills the stopped rank
}
