//! Tests and benches of this crate keep libtorch's CUDA half loaded where it exists: libtorch
//! registers its CUDA backend from the static initialisers of `libtorch_cuda.so`, which no
//! Rust code calls directly, and rustc links with `--as-needed`, which would drop it.
//! `libtorch.so` depends on both halves (only the CPU half in a CPU-only libtorch), so linking
//! it without `--as-needed` keeps CUDA available where it exists and changes nothing
//! elsewhere. (The C++ parts are built by `sevit-torch-ext`.)

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
