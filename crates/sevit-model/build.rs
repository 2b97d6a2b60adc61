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
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file(manifest.join("cpp/autocast_bridge.cpp"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 LIBTORCH"))
        .warnings(false)
        .debug(false)
        .compile("sevit_autocast");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
