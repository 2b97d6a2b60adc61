//! `sevit info`: what this build runs on (libtorch, devices, threads).

use clap::Args as ClapArgs;

/// Flags of `sevit info` (none).
#[derive(ClapArgs, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    println!("sevit {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch threads: {}", tch::get_num_threads());
    for var in [
        "GOMP_SPINCOUNT",
        "OMP_WAIT_POLICY",
        "OMP_NUM_THREADS",
        "GLIBC_TUNABLES",
    ] {
        let v = std::env::var(var).unwrap_or_else(|_| "(unset)".into());
        println!("{var}: {v}");
    }
    let kernels = sevit_model::kernels::in_use();
    println!(
        "cpu kernels (f32): {} [{}] (SEVIT_KERNELS: {})",
        if kernels.is_empty() {
            "none".to_string()
        } else {
            kernels.join(", ")
        },
        sevit_model::kernels::isa(),
        std::env::var("SEVIT_KERNELS").unwrap_or_else(|_| "(unset: all)".into())
    );
    println!("cuda available: {}", tch::Cuda::is_available());
    if tch::Cuda::is_available() {
        println!("cuda devices: {}", tch::Cuda::device_count());
    }
    Ok(())
}
