//! The torchrun environment of a rank: `MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, and sevit's own settings (`SEVIT_DIST_BACKEND`,
//! `SEVIT_DIST_TIMEOUT`, `SEVIT_DIST_BUCKET_MB`).

use std::time::Duration;

use anyhow::{bail, Context};

/// Default process-group timeout: a collective (or the rendezvous) waiting longer than this for
/// a peer fails with an error instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default gradient bucket size, as PyTorch DDP's `bucket_cap_mb`.
pub const DEFAULT_BUCKET_MB: f64 = 25.0;

/// Where this process sits in a data-parallel job.
#[derive(Debug, Clone, PartialEq)]
pub struct DistEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes in the job.
    pub world_size: usize,
    /// Rank on this node (selects the GPU `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// Processes on this node.
    pub local_world_size: usize,
    /// Address of rank 0, where the TCPStore listens.
    pub master_addr: String,
    /// Port of the TCPStore.
    pub master_port: u16,
    /// Backend forced by `SEVIT_DIST_BACKEND` (`gloo`, `nccl`); `None` = by device.
    pub backend: Option<String>,
    /// Process-group timeout (`SEVIT_DIST_TIMEOUT`, seconds; default 60).
    pub timeout: Duration,
    /// Gradient bucket size in bytes (`SEVIT_DIST_BUCKET_MB`, default 25).
    pub bucket_bytes: usize,
}

impl DistEnv {
    /// Reads the process environment. `Ok(None)` when `WORLD_SIZE` is absent or 1: a single
    /// process, which never touches c10d.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`DistEnv::from_env`] over any variable lookup (testable).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let num = |k: &str| -> anyhow::Result<Option<usize>> {
            match get(k) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<usize>()
                    .map(Some)
                    .with_context(|| format!("environment variable {k}={v:?} is not a number")),
            }
        };
        let world_size = match num("WORLD_SIZE")? {
            None | Some(1) => return Ok(None),
            Some(0) => bail!("WORLD_SIZE=0: a job needs at least one process"),
            Some(w) => w,
        };
        let rank = num("RANK")?.context(
            "WORLD_SIZE is set but RANK is not (launch with `sevit launch` or torchrun)",
        )?;
        if rank >= world_size {
            bail!("RANK={rank} is out of range for WORLD_SIZE={world_size}");
        }
        let local_rank = num("LOCAL_RANK")?.unwrap_or(rank);
        let local_world_size = num("LOCAL_WORLD_SIZE")?.unwrap_or(world_size);
        let master_addr = get("MASTER_ADDR")
            .filter(|s| !s.trim().is_empty())
            .context("WORLD_SIZE is set but MASTER_ADDR is not (the address of rank 0)")?;
        let master_port = match num("MASTER_PORT")? {
            None => bail!("WORLD_SIZE is set but MASTER_PORT is not"),
            Some(p) if p == 0 || p > u16::MAX as usize => {
                bail!("MASTER_PORT={p} is not a valid port")
            }
            Some(p) => p as u16,
        };
        let backend = get("SEVIT_DIST_BACKEND")
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s != "auto");
        if let Some(b) = &backend {
            if b != "gloo" && b != "nccl" {
                bail!("SEVIT_DIST_BACKEND={b:?}: expected gloo, nccl or auto");
            }
        }
        let timeout = match get("SEVIT_DIST_TIMEOUT").filter(|s| !s.trim().is_empty()) {
            None => DEFAULT_TIMEOUT,
            Some(v) => {
                let s: f64 = v.trim().parse().with_context(|| {
                    format!("SEVIT_DIST_TIMEOUT={v:?} is not a number of seconds")
                })?;
                if !(s > 0.0 && s.is_finite()) {
                    bail!("SEVIT_DIST_TIMEOUT must be a positive number of seconds, got {v:?}");
                }
                Duration::from_secs_f64(s)
            }
        };
        let bucket_mb = match get("SEVIT_DIST_BUCKET_MB").filter(|s| !s.trim().is_empty()) {
            None => DEFAULT_BUCKET_MB,
            Some(v) => {
                let m: f64 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("SEVIT_DIST_BUCKET_MB={v:?} is not a number"))?;
                if !(m > 0.0 && m.is_finite()) {
                    bail!("SEVIT_DIST_BUCKET_MB must be positive, got {v:?}");
                }
                m
            }
        };
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            backend,
            timeout,
            bucket_bytes: (bucket_mb * 1024.0 * 1024.0) as usize,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> anyhow::Result<Option<DistEnv>> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn absent_or_single_process_means_no_c10d() {
        assert_eq!(env(&[]).unwrap(), None);
        assert_eq!(env(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
    }

    #[test]
    fn full_environment() {
        let e = env(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
            ("SEVIT_DIST_BACKEND", "Gloo"),
            ("SEVIT_DIST_TIMEOUT", "2.5"),
            ("SEVIT_DIST_BUCKET_MB", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (e.rank, e.world_size, e.local_rank, e.local_world_size),
            (3, 4, 1, 2)
        );
        assert_eq!((e.master_addr.as_str(), e.master_port), ("10.0.0.1", 29500));
        assert_eq!(e.backend.as_deref(), Some("gloo"));
        assert_eq!(e.timeout, Duration::from_millis(2500));
        assert_eq!(e.bucket_bytes, 1 << 20);
    }

    #[test]
    fn errors_name_the_variable() {
        let base = [
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "1234"),
        ];
        let msg = |extra: &[(&str, &str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            format!("{:#}", env(&v).unwrap_err())
        };
        assert!(msg(&[]).contains("RANK"));
        assert!(msg(&[("RANK", "2")]).contains("out of range"));
        assert!(msg(&[("RANK", "x")]).contains("RANK"));
        assert!(msg(&[("RANK", "0"), ("SEVIT_DIST_BACKEND", "mpi")]).contains("SEVIT_DIST_BACKEND"));
        assert!(msg(&[("RANK", "0"), ("SEVIT_DIST_TIMEOUT", "-1")]).contains("SEVIT_DIST_TIMEOUT"));
        assert!(format!(
            "{:#}",
            env(&[("WORLD_SIZE", "2"), ("RANK", "0")]).unwrap_err()
        )
        .contains("MASTER_ADDR"));
    }
}
