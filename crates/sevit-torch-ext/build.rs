//! Compiles every C++ part of sevit against the libtorch headers that `tch` links (`$LIBTORCH`,
//! written into `.cargo/config.toml` by `scripts/setup.sh`), with the same C++ ABI
//! (`$LIBTORCH_CXX11_ABI`), warnings on and fatal (`-Wall -Wextra -Werror`; libtorch's own
//! headers are system headers and stay quiet):
//!
//! * `sevit_torch_ext`: the bridges to libtorch's autocast state, the fused AdamW / clipping /
//!   lerp over tensor lists, and the entry points of the CPU kernels;
//! * `sevit_kernels_{base,avx2,avx512}`: the CPU kernels (short-sequence attention,
//!   bias + GELU, bias + residual), once per instruction set (the entry points pick one at run
//!   time, `cpp/isa.h`);
//! * `sevit_c10d`: the bridge to libtorch's distributed engine. Gloo (CPU) is always built: it
//!   lives in `libtorch_cpu.so`. NCCL (CUDA) is built when the libtorch has
//!   `libtorch_cuda.so` and both `nccl.h` and the CUDA runtime headers are found (the wheel's
//!   `nvidia/nccl/include`, `$NCCL_INCLUDE_DIR`, `$CUDA_HOME/include`, `/usr/local/cuda/include`,
//!   `/usr/include`); `SEVIT_NO_NCCL=1` skips it.

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
            "sevit-torch-ext: LIBTORCH is not set; run scripts/setup.sh (it writes \
             .cargo/config.toml) or point LIBTORCH at a libtorch / torch-wheel directory"
        ),
    };
    let cpp = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("cpp");
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");

    let mut bridges = libtorch_build(&libtorch);
    for f in [
        "autocast_bridge.cpp",
        "short_attention.cpp",
        "bias_gelu.cpp",
        "bias_residual.cpp",
        "kernels.cpp",
        "foreach_bridge.cpp",
    ] {
        bridges.file(cpp.join(f));
    }
    if x86 {
        bridges.define("SEVIT_SA_X86", None);
    }
    // libtorch's `at::parallel_for` is an inline OpenMP loop in its headers: without -fopenmp
    // it would run on the calling thread alone. Its calls go to the libgomp that libtorch
    // loads (the wheel ships `lib/libgomp.so.1`; same soname, so one runtime and one pool).
    bridges.flag("-fopenmp");
    bridges.compile("sevit_torch_ext");

    compile_kernels(&cpp, x86);
    compile_c10d(&libtorch, &cpp);

    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    println!("cargo:rustc-link-lib=dylib=gomp");
}

/// A C++17 build against libtorch's headers with its ABI, warnings on.
fn libtorch_build(libtorch: &Path) -> cc::Build {
    let include = libtorch.join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 LIBTORCH"))
        .flag("-isystem")
        .flag(
            include
                .join("torch/csrc/api/include")
                .to_str()
                .expect("utf-8 LIBTORCH"),
        )
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .debug(false);
    b
}

/// The CPU kernels, once per instruction set: (name, vector width in floats, register tile
/// rows, vectors per row, flags). Elsewhere than x86 all three are baseline code, so that
/// every build's entry points exist.
fn compile_kernels(cpp: &Path, x86: bool) {
    let avx512 = [
        "-mavx512f",
        "-mavx512vl",
        "-mavx512dq",
        "-mavx512bw",
        "-mavx2",
        "-mfma",
    ];
    let variants: [(&str, i32, i32, i32, &[&str]); 3] = if x86 {
        [
            ("base", 4, 4, 2, &[]),
            ("avx2", 8, 4, 2, &["-mavx2", "-mfma"]),
            ("avx512", 16, 4, 4, &avx512),
        ]
    } else {
        [
            ("base", 4, 4, 2, &[]),
            ("avx2", 4, 4, 2, &[]),
            ("avx512", 4, 4, 2, &[]),
        ]
    };
    for (isa, vw, mr, nv, flags) in variants {
        let mut k = cc::Build::new();
        k.cpp(true)
            .std("c++17")
            .file(cpp.join("short_attention_kernel.cpp"))
            .file(cpp.join("bias_gelu_kernel.cpp"))
            .file(cpp.join("bias_residual_kernel.cpp"))
            .define("SEVIT_VW", vw.to_string().as_str())
            .define("SEVIT_MR", mr.to_string().as_str())
            .define("SEVIT_NV", nv.to_string().as_str());
        for (macro_name, entry) in [
            ("SEVIT_SA_FORWARD", "sevit_sa_forward"),
            ("SEVIT_SA_BACKWARD", "sevit_sa_backward"),
            ("SEVIT_BG_FORWARD", "sevit_bg_forward"),
            ("SEVIT_BG_BACKWARD", "sevit_bg_backward"),
            ("SEVIT_BR_FORWARD", "sevit_br_forward"),
            ("SEVIT_BR_BACKWARD", "sevit_br_backward"),
        ] {
            k.define(macro_name, format!("{entry}_{isa}").as_str());
        }
        // Kernels are always optimised (tests build the rest at -O1), with multiply-adds
        // fused as the ISA allows (-std=c++17 alone turns that off).
        k.opt_level(3)
            .flag("-ffp-contract=fast")
            .warnings(true)
            .extra_warnings(true)
            .warnings_into_errors(true)
            .debug(false);
        for f in flags {
            k.flag(*f);
        }
        k.compile(&format!("sevit_kernels_{isa}"));
    }
}

fn compile_c10d(libtorch: &Path, cpp: &Path) {
    let include = libtorch.join("include");
    let c10d = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !c10d.exists() {
        panic!(
            "sevit-torch-ext: {} not found: this libtorch has no distributed (c10d) headers",
            c10d.display()
        );
    }
    let mut b = libtorch_build(libtorch);
    b.file(cpp.join("c10d_bridge.cpp"))
        .define("USE_C10D_GLOO", None)
        .include(cpp.join("gloo_decls"));
    if let Some(dirs) = nccl_includes(libtorch) {
        b.define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("SEVIT_WITH_NCCL", None);
        for d in dirs {
            b.flag("-isystem").flag(d.to_str().expect("utf-8 path"));
        }
        // CUDA builds are not compiled in CI: their warnings show, they do not stop the build.
        b.warnings_into_errors(false);
        println!("cargo:warning=sevit-torch-ext: building the NCCL backend");
    }
    b.compile("sevit_c10d");
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
