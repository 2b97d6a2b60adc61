//! `sevit launch`: runs one command as the N local processes of a data-parallel job, as
//! torchrun does (one process per GPU, or N CPU processes).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The program (normally the current `sevit` executable).
    pub program: PathBuf,
    /// Its arguments (the sub-command and its flags).
    pub args: Vec<OsString>,
    /// Processes on this node.
    pub nproc: usize,
    /// Nodes in the job.
    pub nnodes: usize,
    /// Index of this node, `0..nnodes` (node 0 runs rank 0, the TCPStore server).
    pub node_rank: usize,
    /// Address of node 0 as the other nodes reach it.
    pub master_addr: String,
    /// Port of the TCPStore on node 0.
    pub master_port: u16,
    /// `SEVIT_DIST_TIMEOUT` for the children (seconds), when given.
    pub timeout: Option<f64>,
    /// `SEVIT_DIST_BACKEND` for the children, when given.
    pub backend: Option<String>,
    /// libtorch threads per process (`OMP_NUM_THREADS` / `--set threads`); default: the
    /// cores of this machine divided by `nproc`.
    pub threads: Option<usize>,
}

impl LaunchSpec {
    /// Global world size.
    pub fn world_size(&self) -> usize {
        self.nproc * self.nnodes
    }

    /// The environment of local process `local_rank`.
    pub fn child_env(&self, local_rank: usize) -> Vec<(String, String)> {
        let mut v = vec![
            ("MASTER_ADDR".to_string(), self.master_addr.clone()),
            ("MASTER_PORT".to_string(), self.master_port.to_string()),
            ("WORLD_SIZE".to_string(), self.world_size().to_string()),
            (
                "RANK".to_string(),
                (self.node_rank * self.nproc + local_rank).to_string(),
            ),
            ("LOCAL_RANK".to_string(), local_rank.to_string()),
            ("LOCAL_WORLD_SIZE".to_string(), self.nproc.to_string()),
            ("GROUP_RANK".to_string(), self.node_rank.to_string()),
        ];
        if let Some(t) = self.timeout {
            v.push(("SEVIT_DIST_TIMEOUT".into(), t.to_string()));
        }
        if let Some(b) = &self.backend {
            v.push(("SEVIT_DIST_BACKEND".into(), b.clone()));
        }
        let threads = self.threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            (cores / self.nproc).max(1)
        });
        v.push(("SEVIT_THREADS".into(), threads.to_string()));
        v
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.nproc == 0 || self.nnodes == 0 {
            bail!("--nproc and --nnodes must be at least 1");
        }
        if self.node_rank >= self.nnodes {
            bail!(
                "--node-rank {} is out of range for --nnodes {}",
                self.node_rank,
                self.nnodes
            );
        }
        if self.args.is_empty() {
            bail!("nothing to launch: give the sevit command after `--`, e.g. `sevit launch --nproc 2 -- pretrain --run runs/x`");
        }
        Ok(())
    }
}

/// Spawns the local processes, waits for them, and returns the job's exit code: 0 when all
/// succeed; otherwise the first failure's code, after killing the processes still running
/// (a rank that dies would leave the others waiting for it until their timeout).
pub fn launch(spec: &LaunchSpec) -> anyhow::Result<i32> {
    spec.validate()?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for local in 0..spec.nproc {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        for (k, v) in spec.child_env(local) {
            cmd.env(k, v);
        }
        match cmd.spawn() {
            Ok(c) => children.push((local, c)),
            Err(e) => {
                kill_all(&mut children);
                return Err(e).with_context(|| format!("starting {}", spec.program.display()));
            }
        }
    }
    tracing::info!(
        nproc = spec.nproc,
        world_size = spec.world_size(),
        node_rank = spec.node_rank,
        "launched"
    );
    let mut remaining: Vec<(usize, Child)> = children;
    loop {
        let mut still = Vec::new();
        let mut failed: Option<(usize, ExitStatus)> = None;
        for (local, mut c) in remaining {
            match c.try_wait().context("waiting for a rank")? {
                Some(st) if !st.success() => {
                    failed.get_or_insert((local, st));
                }
                Some(_) => {}
                None => still.push((local, c)),
            }
        }
        if let Some((local, st)) = failed {
            let rank = spec.node_rank * spec.nproc + local;
            eprintln!(
                "sevit launch: rank {rank} (local {local}) failed ({st}); stopping the {} other local process(es)",
                still.len()
            );
            kill_all(&mut still);
            return Ok(exit_code(st));
        }
        if still.is_empty() {
            return Ok(0);
        }
        remaining = still;
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_all(children: &mut [(usize, Child)]) {
    for (_, c) in children.iter_mut() {
        let _ = c.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (_, c) in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The exit code to forward: the child's, or 128 + signal when it was killed.
fn exit_code(st: ExitStatus) -> i32 {
    if let Some(c) = st.code() {
        return if c == 0 { 1 } else { c };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(s) = st.signal() {
            return 128 + s;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, args: &[&str], nproc: usize) -> LaunchSpec {
        LaunchSpec {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            nproc,
            nnodes: 2,
            node_rank: 1,
            master_addr: "127.0.0.1".into(),
            master_port: 29555,
            timeout: Some(10.0),
            backend: None,
            threads: Some(1),
        }
    }

    #[test]
    fn environment_of_each_rank() {
        let s = spec("true", &["x"], 2);
        let e: std::collections::HashMap<_, _> = s.child_env(1).into_iter().collect();
        assert_eq!(e["RANK"], "3");
        assert_eq!(e["WORLD_SIZE"], "4");
        assert_eq!(e["LOCAL_RANK"], "1");
        assert_eq!(e["MASTER_PORT"], "29555");
        assert_eq!(e["SEVIT_DIST_TIMEOUT"], "10");
        assert_eq!(e["SEVIT_THREADS"], "1");
    }

    #[test]
    fn success_failure_and_kill() {
        assert_eq!(launch(&spec("sh", &["-c", "exit 0"], 2)).unwrap(), 0);
        // rank 2 (local 0) fails with 3; local 1 would sleep for a minute and is killed
        let start = Instant::now();
        let code = launch(&spec(
            "sh",
            &[
                "-c",
                "if [ $LOCAL_RANK = 0 ]; then exit 3; else sleep 60; fi",
            ],
            2,
        ))
        .unwrap();
        assert_eq!(code, 3);
        assert!(start.elapsed() < Duration::from_secs(20));
        assert!(launch(&spec("sh", &[], 1)).is_err());
    }
}
