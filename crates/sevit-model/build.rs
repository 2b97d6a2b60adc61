//! Compiles the C++ bridge to libtorch's autocast state (`cpp/autocast_bridge.cpp`, used by
//! [`precision`](src/precision.rs)) against the libtorch headers that `tch` links
//! (`$LIBTORCH`, written into `.cargo/config.toml` by `scripts/setup.sh`), with the same C++
//! ABI (`$LIBTORCH_CXX11_ABI`).
//!
//! It also links this crate's tests and benches so that libtorch's CUDA half is loaded
//! whenever the libtorch has one: libtorch registers its CUDA backend from the static
//! initialisers of `libtorch_cuda.so`, which no Rust code calls directly, and rustc links with
//! `--as-needed`, which would drop it. `libtorch.so` depends on both halves (only the CPU half
//! in a CPU-only libtorch), so linking it without `--as-needed` keeps CUDA available where it
//! exists and changes nothing elsewhere.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=cpp");
    let libtorch = match std::env::var_os("LIBTORCH") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "sevit-model: LIBTORCH is not set; run scripts/setup.sh (it writes .cargo/config.toml) \
             or point LIBTORCH at a libtorch / torch-wheel directory"
        ),
    };
    let include = libtorch.join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let mut bridge = cc::Build::new();
    bridge
        .cpp(true)
        .std("c++17")
        .file(manifest.join("cpp/autocast_bridge.cpp"))
        .file(manifest.join("cpp/short_attention.cpp"))
        .file(manifest.join("cpp/bias_gelu.cpp"))
        .file(manifest.join("cpp/bias_residual.cpp"))
        .file(manifest.join("cpp/kernels.cpp"))
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
        .warnings(false)
        .debug(false);
    if x86 {
        bridge.define("SEVIT_SA_X86", None);
    }
    // libtorch's `at::parallel_for` is an inline OpenMP loop in its headers: without -fopenmp
    // it would run on the calling thread alone. Its calls go to the libgomp that libtorch
    // loads (the wheel ships `lib/libgomp.so.1`; same soname, so one runtime and one pool).
    bridge.flag("-fopenmp");
    bridge.compile("sevit_autocast");
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    println!("cargo:rustc-link-lib=dylib=gomp");
    // The CPU kernels (short-sequence attention, bias + GELU, bias + residual), once per
    // instruction set (the bridges pick one at run time, cpp/isa.h): (name, vector width in
    // floats, register tile rows, vectors per row, flags). Elsewhere than x86 all three are
    // baseline code, so that every build's entry points exist.
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
            .file(manifest.join("cpp/short_attention_kernel.cpp"))
            .file(manifest.join("cpp/bias_gelu_kernel.cpp"))
            .file(manifest.join("cpp/bias_residual_kernel.cpp"))
            .define("SEVIT_VW", vw.to_string().as_str())
            .define("SEVIT_MR", mr.to_string().as_str())
            .define("SEVIT_NV", nv.to_string().as_str())
            .define(
                "SEVIT_SA_FORWARD",
                format!("sevit_sa_forward_{isa}").as_str(),
            )
            .define(
                "SEVIT_SA_BACKWARD",
                format!("sevit_sa_backward_{isa}").as_str(),
            )
            .define(
                "SEVIT_BG_FORWARD",
                format!("sevit_bg_forward_{isa}").as_str(),
            )
            .define(
                "SEVIT_BG_BACKWARD",
                format!("sevit_bg_backward_{isa}").as_str(),
            )
            .define(
                "SEVIT_BR_FORWARD",
                format!("sevit_br_forward_{isa}").as_str(),
            )
            .define(
                "SEVIT_BR_BACKWARD",
                format!("sevit_br_backward_{isa}").as_str(),
            )
            // Kernels are always optimised (tests build the rest at -O1), with multiply-adds
            // fused as the ISA allows (-std=c++17 alone turns that off).
            .opt_level(3)
            .flag("-ffp-contract=fast")
            .warnings(false)
            .debug(false);
        for f in flags {
            k.flag(*f);
        }
        k.compile(&format!("sevit_kernels_{isa}"));
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
