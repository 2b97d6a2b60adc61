//! `sevit-dist`: data-parallel training over libtorch's distributed engine, c10d (Gloo on CPU,
//! NCCL on CUDA), through the C++ bridge of `sevit-torch-ext` (`cpp/c10d_bridge.cpp`). Nothing
//! here knows DISTL: another libtorch tool can use the process group, the gradient averaging
//! and the launcher as they are.
//!
//! A job is N processes launched as torchrun launches PyTorch jobs (`MASTER_ADDR`,
//! `MASTER_PORT`, `RANK`, `WORLD_SIZE`, `LOCAL_RANK`; see [`DistEnv`] and [`launch`]); without
//! them (or with `WORLD_SIZE=1`) nothing here runs and training is the single-process path.
//! Each process holds a model replica; [`Dist`] is the handle the engine uses:
//! * the initial state is broadcast from rank 0 ([`Dist::broadcast_tensors`]);
//! * each rank trains on its shard of every global batch (`sevit_data::loader`'s sharded
//!   loader); gradients are averaged over the *images* of the global batch
//!   ([`Dist::average_gradients`]: each rank's gradient weighted by its image count,
//!   all-reduced in ~25 MB flat buckets) before clipping and the AdamW step, so every replica
//!   takes the same step as one process on the global batch;
//! * the DINO centre uses the mean teacher output over all ranks ([`Dist::all_reduce_sum`]);
//! * only rank 0 ([`Dist::is_main`]) writes checkpoints, logs, summaries and reports.

mod env;
mod ffi;
mod group;
pub mod launch;

use std::sync::Arc;

use anyhow::Context;
use tch::{Device, Kind, Tensor};

pub use env::{DistEnv, DEFAULT_BUCKET_MB, DEFAULT_TIMEOUT};
pub use group::{Backend, ProcessGroup};

/// A cheap, clonable handle on this process's data-parallel group.
#[derive(Clone, Debug)]
pub struct Dist {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pg: ProcessGroup,
    local_rank: usize,
    comm_device: Device,
    bucket_bytes: usize,
}

impl Dist {
    /// Joins the group described by `env` for training on `device`: NCCL on CUDA, Gloo on CPU,
    /// unless `env.backend` (`SEVIT_DIST_BACKEND`) says otherwise.
    pub fn init(env: &DistEnv, device: Device) -> anyhow::Result<Self> {
        Self::init_with_listener(env, device, None)
    }

    /// [`Dist::init`] where rank 0 serves the rendezvous store on `listener`, a socket already
    /// bound to `env.master_port` (see [`ProcessGroup::with_listener`]): binding port 0 and
    /// keeping the socket open rules out another process taking the port in between.
    pub fn init_with_listener(
        env: &DistEnv,
        device: Device,
        listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Self> {
        let backend = match &env.backend {
            Some(b) => Backend::parse(b)?,
            None => Backend::for_device(device),
        };
        let comm_device = match backend {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl => {
                anyhow::ensure!(
                    device.is_cuda(),
                    "the NCCL backend needs a CUDA training device (device is {device:?}); use gloo"
                );
                device
            }
        };
        tracing::info!(
            rank = env.rank,
            world_size = env.world_size,
            local_rank = env.local_rank,
            backend = backend.as_str(),
            master = format!("{}:{}", env.master_addr, env.master_port),
            timeout_s = env.timeout.as_secs_f64(),
            "joining the process group"
        );
        let pg = ProcessGroup::with_listener(
            backend,
            &env.master_addr,
            env.master_port,
            env.rank,
            env.world_size,
            env.timeout,
            listener,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                pg,
                local_rank: env.local_rank,
                comm_device,
                bucket_bytes: env.bucket_bytes.max(1),
            }),
        })
    }

    /// Reads the environment ([`DistEnv::from_env`]) and joins the group; `Ok(None)` for a
    /// single process.
    pub fn from_env(device: Device) -> anyhow::Result<Option<Self>> {
        match DistEnv::from_env()? {
            None => Ok(None),
            Some(env) => Self::init(&env, device).map(Some),
        }
    }

    /// Global rank.
    pub fn rank(&self) -> usize {
        self.inner.pg.rank()
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.inner.pg.world_size()
    }

    /// Rank on this node.
    pub fn local_rank(&self) -> usize {
        self.inner.local_rank
    }

    /// Whether this is rank 0, the only one that writes files.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The process group.
    pub fn group(&self) -> &ProcessGroup {
        &self.inner.pg
    }

    /// In-place sum of `t` over every rank (moved to the backend's device and back if needed;
    /// `t` need not be contiguous).
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> anyhow::Result<()> {
        let buf = self.to_comm(t);
        self.inner.pg.all_reduce_sum(&buf)?;
        self.copy_back(t, buf);
        Ok(())
    }

    /// Waits until every rank reaches this point (an all-reduce of one number).
    pub fn barrier(&self) -> anyhow::Result<()> {
        let t = Tensor::ones([1], (Kind::Float, self.inner.comm_device));
        self.inner.pg.all_reduce_sum(&t).context("barrier")
    }

    /// Overwrites every tensor of `ts` (in place, any device, any kinds) with rank 0's values,
    /// in flat buckets of about the bucket size. Every rank must pass tensors of the same
    /// shapes and kinds in the same order.
    pub fn broadcast_tensors(&self, ts: &[Tensor]) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for bucket in self.buckets(ts.iter().map(Some)) {
                let parts: Vec<Tensor> = bucket
                    .iter()
                    .map(|&i| {
                        ts[i]
                            .detach()
                            .to_device(self.inner.comm_device)
                            .reshape([-1])
                    })
                    .collect();
                let flat = Tensor::cat(&parts, 0);
                self.inner.pg.broadcast(&flat, 0)?;
                let mut off = 0i64;
                for &i in &bucket {
                    let n = ts[i].numel() as i64;
                    let src = flat.narrow(0, off, n).view(ts[i].size().as_slice());
                    ts[i].shallow_clone().f_copy_(&src)?;
                    off += n;
                }
            }
            Ok(())
        })
    }

    /// Averages gradients over the images of the global batch: `grads` (undefined entries
    /// skipped; the same entries must be defined on every rank) are the gradients of a mean
    /// loss over this rank's `n_local` images; afterwards every rank holds
    /// `Σ_r n_r g_r / Σ_r n_r`, computed by all-reduces of flat buckets (each gradient
    /// scaled by `n_local`, the image count riding in the first bucket).
    pub fn average_gradients(&self, grads: &mut [Tensor], n_local: usize) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            let buckets = self.buckets(grads.iter().map(|g| g.defined().then_some(g)));
            let mut total: Option<f64> = None;
            for bucket in buckets {
                let kind = grads[bucket[0]].kind();
                let mut parts: Vec<Tensor> = bucket
                    .iter()
                    .map(|&i| {
                        grads[i]
                            .detach()
                            .to_device(self.inner.comm_device)
                            .reshape([-1])
                            * n_local as f64
                    })
                    .collect();
                let first = total.is_none();
                if first {
                    parts.push(
                        Tensor::from_slice(&[n_local as f64])
                            .to_kind(kind)
                            .to_device(self.inner.comm_device),
                    );
                }
                let flat = Tensor::cat(&parts, 0);
                self.inner.pg.all_reduce_sum(&flat)?;
                if first {
                    let n = flat.size()[0];
                    let t = flat.double_value(&[n - 1]);
                    anyhow::ensure!(t > 0.0, "no image in the global batch (all ranks empty)");
                    total = Some(t);
                }
                let flat = flat / total.expect("set by the first bucket");
                let mut off = 0i64;
                for &i in &bucket {
                    let g = &grads[i];
                    let n = g.numel() as i64;
                    let avg = flat
                        .narrow(0, off, n)
                        .view(g.size().as_slice())
                        .to_device(g.device());
                    grads[i] = avg;
                    off += n;
                }
            }
            Ok(())
        })
    }

    /// Indices of the `Some` tensors grouped in order into buckets of one kind and about
    /// `bucket_bytes` (a tensor larger than a bucket is a bucket of its own).
    fn buckets<'a>(&self, ts: impl Iterator<Item = Option<&'a Tensor>>) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut cur_kind: Option<Kind> = None;
        let mut bytes = 0usize;
        for (i, t) in ts.enumerate() {
            let Some(t) = t else { continue };
            let kind = t.kind();
            let size = t.numel() * kind.elt_size_in_bytes();
            if !cur.is_empty() && (cur_kind != Some(kind) || bytes + size > self.inner.bucket_bytes)
            {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            cur_kind = Some(kind);
            cur.push(i);
            bytes += size;
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn to_comm(&self, t: &Tensor) -> Tensor {
        let d = self.inner.comm_device;
        if t.device() == d && t.is_contiguous() {
            t.shallow_clone()
        } else {
            t.to_device(d).contiguous()
        }
    }

    fn copy_back(&self, t: &mut Tensor, buf: Tensor) {
        if buf.data_ptr() != t.data_ptr() {
            tch::no_grad(|| {
                t.copy_(&buf.to_device(t.device()));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A loopback socket on a free port, kept open until rank 0 serves the store on it: no
    /// other test (or Gloo's own ephemeral listeners) can take the port in between.
    fn store_listener() -> (std::net::TcpListener, u16) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    fn env(
        rank: usize,
        world: usize,
        port: u16,
        bucket_bytes: usize,
        timeout: Duration,
    ) -> DistEnv {
        DistEnv {
            rank,
            world_size: world,
            local_rank: rank,
            local_world_size: world,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            backend: Some("gloo".into()),
            timeout,
            bucket_bytes,
        }
    }

    /// Runs `f(rank)` on `world` threads, each its own rank of one Gloo group on loopback.
    fn with_group<T: Send + 'static>(
        world: usize,
        bucket_bytes: usize,
        f: impl Fn(Dist) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let (listener, port) = store_listener();
        let mut listener = Some(listener);
        let f = Arc::new(f);
        let hs: Vec<_> = (0..world)
            .map(|r| {
                let f = f.clone();
                let l = if r == 0 { listener.take() } else { None };
                std::thread::spawn(move || {
                    let d = Dist::init_with_listener(
                        &env(r, world, port, bucket_bytes, Duration::from_secs(20)),
                        Device::Cpu,
                        l,
                    )
                    .expect("init");
                    f(d)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("rank thread"))
            .collect()
    }

    #[test]
    fn all_reduce_broadcast_and_weighted_gradient_mean() {
        // small buckets so that the gradients span several of them
        let out = with_group(2, 24, |d| {
            let r = d.rank() as f32;
            let mut s = Tensor::from_slice(&[r + 1.0, 10.0 * r]);
            d.all_reduce_sum(&mut s).unwrap();
            let s: Vec<f32> = Vec::try_from(&s).unwrap();

            let ts = vec![
                Tensor::from_slice(&[r; 5]),
                Tensor::from_slice(&[r as i64 + 7]),
                Tensor::from_slice(&[r; 6]).view([2, 3]).tr(),
            ];
            d.broadcast_tensors(&ts).unwrap();
            let b: Vec<Vec<f64>> = ts
                .iter()
                .map(|t| Vec::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap())
                .collect();

            // rank 0 saw 1 image with gradient 3, rank 1 saw 3 images with gradient 7
            let (n, g) = if d.rank() == 0 {
                (1usize, 3.0f32)
            } else {
                (3, 7.0)
            };
            let mut grads = vec![
                Tensor::from_slice(&[g; 4]).view([2, 2]),
                Tensor::new(),
                Tensor::from_slice(&[g * 2.0; 9]),
            ];
            d.average_gradients(&mut grads, n).unwrap();
            let g0: Vec<f32> = Vec::try_from(&grads[0].reshape([-1])).unwrap();
            let g2: Vec<f32> = Vec::try_from(&grads[2]).unwrap();
            assert!(!grads[1].defined());
            assert_eq!(grads[0].size(), vec![2, 2]);
            d.barrier().unwrap();
            (s, b, g0, g2)
        });
        for (s, b, g0, g2) in out {
            assert_eq!(s, vec![3.0, 10.0]);
            assert_eq!(b, vec![vec![0.0; 5], vec![7.0], vec![0.0; 6]]);
            // (1*3 + 3*7) / 4 = 6
            assert!(g0.iter().all(|v| (v - 6.0).abs() < 1e-6), "{g0:?}");
            assert!(g2.iter().all(|v| (v - 12.0).abs() < 1e-6), "{g2:?}");
        }
    }

    #[test]
    fn a_missing_peer_is_an_error_within_the_timeout() {
        let (listener, port) = store_listener();
        let start = std::time::Instant::now();
        let err = Dist::init_with_listener(
            &env(0, 2, port, 1 << 20, Duration::from_secs(2)),
            Device::Cpu,
            Some(listener),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        let took = start.elapsed();
        // it waited for the peer (a fast failure would be another error, e.g. a port clash)
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(30),
            "took {took:?}: {msg}"
        );
        assert!(msg.contains("rank 0/2") && msg.contains("timeout"), "{msg}");
    }

    #[test]
    fn nccl_needs_cuda() {
        let mut e = env(0, 2, 1, 1, Duration::from_secs(1));
        e.backend = Some("nccl".into());
        assert!(Dist::init(&e, Device::Cpu).is_err());
        assert_eq!(Backend::for_device(Device::Cpu), Backend::Gloo);
        assert_eq!(Backend::for_device(Device::Cuda(0)), Backend::Nccl);
    }
}
