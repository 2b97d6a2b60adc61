//! `sevit launch --nproc N -- <sevit command...>`: runs a training command as N data-parallel
//! processes on this node (as torchrun does), for one node or one node of several.

use std::ffi::OsString;

use clap::Args as ClapArgs;
use sevit_dist::launch::{launch, LaunchSpec};

/// Flags of `sevit launch`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Processes on this node (one per GPU, or several CPU processes).
    #[arg(long, default_value_t = 1)]
    pub nproc: usize,
    /// Nodes in the job (run `sevit launch` once on each, with its --node-rank).
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// Index of this node, 0..nnodes; node 0 runs rank 0.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Address of node 0 as every node reaches it (127.0.0.1 for one node).
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// TCP port of the rendezvous store on node 0.
    #[arg(long, default_value_t = 29500)]
    pub master_port: u16,
    /// Seconds a rank waits for the others (rendezvous, every collective) before failing
    /// (SEVIT_DIST_TIMEOUT; default 60).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Communication backend: gloo or nccl (SEVIT_DIST_BACKEND; default: nccl on CUDA, gloo
    /// on CPU).
    #[arg(long)]
    pub backend: Option<String>,
    /// libtorch threads per process (default: this machine's cores / --nproc).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The sevit command each process runs, e.g. `-- pretrain --run runs/x --config c.toml`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let spec = LaunchSpec {
        program: std::env::current_exe()?,
        args: args.command,
        nproc: args.nproc,
        nnodes: args.nnodes,
        node_rank: args.node_rank,
        master_addr: args.master_addr,
        master_port: args.master_port,
        timeout: args.timeout,
        backend: args.backend,
        threads: args.threads,
    };
    let code = launch(&spec)?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
