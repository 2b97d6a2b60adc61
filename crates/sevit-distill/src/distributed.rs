//! The engine's side of data-parallel training: joining the job a process was launched into
//! for a training config (the process group itself is `sevit-dist`).

use sevit_dist::{Dist, DistEnv};
use tch::Device;

/// Joins the data-parallel job this process was launched into (`Ok(None)` for a single
/// process: no environment, or `WORLD_SIZE=1`). A CUDA `cfg.device` becomes `cuda:LOCAL_RANK`
/// (one GPU per local process, as torchrun jobs do); the backend then defaults to NCCL, on
/// CPU to Gloo.
pub fn join(cfg: &mut crate::TrainConfig) -> anyhow::Result<Option<Dist>> {
    let Some(env) = DistEnv::from_env()? else {
        return Ok(None);
    };
    let mut device = cfg.device()?;
    if device.is_cuda() {
        let n = tch::Cuda::device_count().max(1) as usize;
        if env.local_world_size > n {
            tracing::warn!(
                local_world_size = env.local_world_size,
                gpus = n,
                "more processes than GPUs on this node: GPUs are shared"
            );
        }
        let idx = env.local_rank % n;
        cfg.device = format!("cuda:{idx}");
        device = Device::Cuda(idx);
    }
    Dist::init(&env, device).map(Some)
}
