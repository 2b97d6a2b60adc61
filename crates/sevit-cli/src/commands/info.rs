//! `sevit info`: what this build runs on (libtorch, devices, threads).

use clap::Args as ClapArgs;

/// Flags of `sevit info` (none).
#[derive(ClapArgs, Debug)]
pub struct Args {}

/// The libtorch this process loaded: its version (from the PyTorch wheel's `version.py`
/// or a libtorch archive's `build-version` beside its `lib/`) and its folder.
fn libtorch() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let Some(lib) = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(std::path::Path::new)
        .and_then(|p| p.parent())
    else {
        return "not found among the loaded libraries".into();
    };
    let root = lib.parent().unwrap_or(lib);
    let from_wheel = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
        });
    let from_archive = || {
        std::fs::read_to_string(root.join("build-version"))
            .ok()
            .map(|v| v.trim().to_string())
    };
    let version = from_wheel
        .or_else(from_archive)
        .unwrap_or_else(|| "version unknown".into());
    format!("{version} ({})", lib.display())
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    println!("sevit {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch: {}", libtorch());
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
