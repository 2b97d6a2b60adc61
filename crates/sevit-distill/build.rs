//! Compiles the C++ bridge to libtorch's distributed engine (`cpp/c10d_bridge.cpp`) against the
//! libtorch headers that `tch` links (`$LIBTORCH`, written into `.cargo/config.toml` by
//! `scripts/setup.sh`), with the same C++ ABI (`$LIBTORCH_CXX11_ABI`).
//!
//! Gloo (CPU) is always built: it lives in `libtorch_cpu.so`. NCCL (CUDA) is built when the
//! libtorch has `libtorch_cuda.so` and both `nccl.h` and the CUDA runtime headers are found
//! (the wheel's `nvidia/nccl/include`, `$NCCL_INCLUDE_DIR`, `$CUDA_HOME/include`,
//! `/usr/local/cuda/include`, `/usr/include`); `SEVIT_NO_NCCL=1` skips it.

use std::path::{Path, PathBuf};

fn main() {
    for v in [
        "LIBTORCH",
        "LIBTORCH_CXX11_ABI",
        "CUDA_HOME",
        "CUDA_PATH",
        "NCCL_INCLUDE_DIR",
        "SEVIT_NO_NCCL",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=cpp");
    let libtorch = match std::env::var_os("LIBTORCH") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "sevit-distill: LIBTORCH is not set; run scripts/setup.sh (it writes .cargo/config.toml) \
             or point LIBTORCH at a libtorch / torch-wheel directory"
        ),
    };
    let include = libtorch.join("include");
    let c10d = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !c10d.exists() {
        panic!(
            "sevit-distill: {} not found: this libtorch has no distributed (c10d) headers",
            c10d.display()
        );
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());

    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .file(manifest.join("cpp/c10d_bridge.cpp"))
        .file(manifest.join("cpp/foreach_bridge.cpp"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("USE_C10D_GLOO", None)
        .include(manifest.join("cpp/gloo_decls"))
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 LIBTORCH"))
        .flag("-isystem")
        .flag(
            include
                .join("torch/csrc/api/include")
                .to_str()
                .expect("utf-8 LIBTORCH"),
        )
        .warnings(false)
        .debug(false);
    if let Some(dirs) = nccl_includes(&libtorch) {
        b.define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("SEVIT_WITH_NCCL", None);
        for d in dirs {
            b.flag("-isystem").flag(d.to_str().expect("utf-8 path"));
        }
        println!("cargo:rustc-cfg=sevit_nccl");
        println!("cargo:warning=sevit-distill: building the NCCL backend");
    }
    println!("cargo:rustc-check-cfg=cfg(sevit_nccl)");
    b.compile("sevit_c10d");
    // Tests and benches of this crate: keep libtorch's CUDA half loaded where it exists (rustc
    // links with --as-needed and nothing calls into libtorch_cuda.so directly; see
    // crates/sevit-cli/build.rs).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}

/// Include directories for NCCL (nccl.h and the CUDA runtime headers), when this libtorch has
/// CUDA and both are found.
fn nccl_includes(libtorch: &Path) -> Option<Vec<PathBuf>> {
    if std::env::var_os("SEVIT_NO_NCCL").is_some_and(|v| v != "0") {
        return None;
    }
    if !libtorch.join("lib/libtorch_cuda.so").exists() {
        return None;
    }
    let wheel_nvidia = libtorch.parent().map(|p| p.join("nvidia"));
    let mut roots: Vec<PathBuf> = Vec::new();
    for v in ["NCCL_INCLUDE_DIR"] {
        if let Some(p) = std::env::var_os(v) {
            roots.push(PathBuf::from(p));
        }
    }
    for v in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = std::env::var_os(v) {
            roots.push(PathBuf::from(p).join("include"));
        }
    }
    if let Some(n) = &wheel_nvidia {
        roots.push(n.join("nccl/include"));
    }
    roots.push("/usr/local/cuda/include".into());
    roots.push("/usr/include".into());
    let nccl = roots.iter().find(|d| d.join("nccl.h").exists())?.clone();
    // The CUDA runtime headers must be complete (the wheels ship cuda_runtime.h without crt/).
    let cuda = roots
        .iter()
        .find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())?
        .clone();
    Some(if nccl == cuda {
        vec![nccl]
    } else {
        vec![nccl, cuda]
    })
}
