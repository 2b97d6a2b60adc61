//! Links `sevit` so that libtorch's CUDA half is loaded whenever the libtorch has one.
//!
//! libtorch registers its CUDA backend from the static initialisers of `libtorch_cuda.so`,
//! which no Rust code calls directly; rustc links with `--as-needed`, so the library would be
//! dropped and `sevit info` would report no CUDA on a GPU machine. `libtorch.so` depends on
//! both halves (only on the CPU half in a CPU-only libtorch), so linking it without
//! `--as-needed` keeps CUDA available where it exists and changes nothing elsewhere.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
