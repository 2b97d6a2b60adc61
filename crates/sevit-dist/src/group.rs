//! [`ProcessGroup`]: a c10d process group (TCPStore rendezvous + Gloo or NCCL) and its
//! collectives on `tch` tensors.

use std::ffi::CString;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::raw::{c_char, c_void};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use tch::{Device, Tensor};

use super::ffi;

/// A c10d communication backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors, TCP.
    Gloo,
    /// NCCL: CUDA tensors.
    Nccl,
}

impl Backend {
    /// The backend for tensors on `device`: NCCL on CUDA, Gloo on CPU.
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    /// Parses `gloo` / `nccl`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            other => bail!("unknown c10d backend {other:?}: expected gloo or nccl"),
        }
    }

    /// `gloo` / `nccl`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// Whether this build can create the backend (NCCL needs CUDA headers at build time).
    pub fn is_built(&self) -> bool {
        match self {
            Backend::Gloo => true,
            // SAFETY: a constant query without arguments.
            Backend::Nccl => unsafe { ffi::sevit_c10d_has_nccl() != 0 },
        }
    }
}

struct Handle(*mut c_void);

// SAFETY: the c10d backend object may be used from any thread; the Mutex around the handle
// serialises the calls, which c10d requires to be issued in the same order on every rank.
unsafe impl Send for Handle {}

/// One process's membership of a c10d process group.
pub struct ProcessGroup {
    handle: Mutex<Handle>,
    rank: usize,
    world_size: usize,
    backend: Backend,
    timeout: Duration,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("backend", &self.backend)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> i32) -> anyhow::Result<()> {
    sevit_torch_ext::call(what, f).map_err(|msg| anyhow::anyhow!("{what} failed: {msg}"))
}

impl ProcessGroup {
    /// Joins the group: rank 0 serves a TCPStore on `master_addr:master_port` (bound to that
    /// address only), every rank connects to it, then the backend connects the ranks. Waits at
    /// most `timeout` for the others to join; every later collective fails after `timeout`
    /// too, instead of hanging on a dead or stuck peer.
    pub fn new(
        backend: Backend,
        master_addr: &str,
        master_port: u16,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::with_listener(
            backend,
            master_addr,
            master_port,
            rank,
            world_size,
            timeout,
            None,
        )
    }

    /// [`ProcessGroup::new`] where rank 0 may serve the TCPStore on `listener`, a socket it
    /// already bound to `master_port` (e.g. one bound to port 0 and kept open, so that no other
    /// process can take the port between choosing and using it); `None` binds
    /// `master_addr:master_port` here. Other ranks ignore it.
    pub fn with_listener(
        backend: Backend,
        master_addr: &str,
        master_port: u16,
        rank: usize,
        world_size: usize,
        timeout: Duration,
        listener: Option<TcpListener>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            rank < world_size,
            "rank {rank} out of range for world size {world_size}"
        );
        if !backend.is_built() {
            bail!(
                "the {} backend is not in this build (nccl.h or the CUDA headers were not found when \
                 sevit-distill was built); set SEVIT_DIST_BACKEND=gloo or rebuild with CUDA_HOME set",
                backend.as_str()
            );
        }
        // Rank 0 binds the store's socket itself, to the master address only (libtorch would
        // listen on every interface).
        let listener = if rank != 0 {
            None
        } else if let Some(l) = listener {
            let port = l
                .local_addr()
                .context("the store's listening socket")?
                .port();
            anyhow::ensure!(
                port == master_port,
                "rank 0 was given a socket listening on port {port}, not MASTER_PORT {master_port}"
            );
            Some(l)
        } else {
            let addrs: Vec<_> = (master_addr, master_port)
                .to_socket_addrs()
                .with_context(|| format!("resolving MASTER_ADDR {master_addr}"))?
                .collect();
            let l = TcpListener::bind(&addrs[..]).with_context(|| {
                format!(
                    "rank 0 cannot listen on {master_addr}:{master_port} (port in use? pick another \
                     MASTER_PORT / --master-port)"
                )
            })?;
            Some(l)
        };
        #[cfg(unix)]
        let listen_fd = match listener {
            Some(l) => std::os::fd::IntoRawFd::into_raw_fd(l),
            None => -1,
        };
        #[cfg(not(unix))]
        let listen_fd = {
            drop(listener);
            -1
        };
        let b = CString::new(backend.as_str()).expect("no NUL");
        let host = CString::new(master_addr).context("MASTER_ADDR contains a NUL byte")?;
        let timeout_ms = timeout.as_millis().clamp(1, i64::MAX as u128) as i64;
        let mut err = [0u8; sevit_torch_ext::ERROR_BUFFER];
        // SAFETY: valid C strings; `err` is a buffer of its length; the listening fd is handed
        // over.
        let h = unsafe {
            ffi::sevit_c10d_new(
                b.as_ptr(),
                host.as_ptr(),
                master_port as i32,
                listen_fd,
                rank as i32,
                world_size as i32,
                timeout_ms,
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        if h.is_null() {
            let msg = sevit_torch_ext::message(&err).unwrap_or_else(|| "no message".into());
            bail!(
                "rank {rank}/{world_size}: joining the {} process group at {master_addr}:{master_port} \
                 failed (timeout {:.0} s): {msg}",
                backend.as_str(),
                timeout.as_secs_f64()
            );
        }
        Ok(Self {
            handle: Mutex::new(Handle(h)),
            rank,
            world_size,
            backend,
            timeout,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The timeout of every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check(&self, t: &Tensor, what: &str) -> anyhow::Result<()> {
        if !t.is_contiguous() {
            bail!("{what}: the tensor must be contiguous");
        }
        match (self.backend, t.device()) {
            (Backend::Nccl, Device::Cpu) => bail!("{what}: NCCL needs CUDA tensors"),
            (Backend::Gloo, d) if d != Device::Cpu => bail!("{what}: Gloo needs CPU tensors"),
            _ => Ok(()),
        }
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what} on rank {}/{} ({}; a peer died, hung past the {:.0} s timeout, or diverged)",
            self.rank,
            self.world_size,
            self.backend.as_str(),
            self.timeout.as_secs_f64()
        )
    }

    /// In-place sum of `t` (contiguous, on the backend's device) over every rank.
    pub fn all_reduce_sum(&self, t: &Tensor) -> anyhow::Result<()> {
        self.check(t, "all-reduce")?;
        let h = self.handle.lock().expect("process group lock");
        let what = self.describe("all-reduce");
        call(&what, |err, len| {
            // SAFETY: `h.0` is a live group; `t.as_ptr()` is the at::Tensor* of a live tensor.
            unsafe { ffi::sevit_c10d_allreduce_sum(h.0, t.as_ptr() as *mut c_void, err, len) }
        })
    }

    /// Overwrites `t` on every rank with rank `root`'s values.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> anyhow::Result<()> {
        self.check(t, "broadcast")?;
        let h = self.handle.lock().expect("process group lock");
        let what = self.describe("broadcast");
        call(&what, |err, len| {
            // SAFETY: as in all_reduce_sum.
            unsafe {
                ffi::sevit_c10d_broadcast(h.0, t.as_ptr() as *mut c_void, root as i32, err, len)
            }
        })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let h = self
            .handle
            .get_mut()
            .map(|h| h.0)
            .unwrap_or(std::ptr::null_mut());
        if !h.is_null() {
            // SAFETY: created by sevit_c10d_new, freed once.
            unsafe { ffi::sevit_c10d_free(h) };
        }
    }
}
