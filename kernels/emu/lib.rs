//! Where the build script of this crate put the CUDA-on-CPU executor (see README.md): the
//! stand-in driver library and the executor's self-test program. Depending on this crate (jetgen
//! does with `--features cuda-emu`) makes `cargo test` / `cargo run` put [`lib_dir`] on
//! LD_LIBRARY_PATH.

use std::path::PathBuf;

/// The build's directory (`lib/`, `cuda-emu-selftest`), under this crate's OUT_DIR.
pub const DIR: &str = env!("JETGEN_CUDA_EMU_DIR");

/// The directory holding `libcuda.so.1` (also reachable as `libcuda.so`, `libcublas.so.13`
/// and `libcublas.so`): put it first on LD_LIBRARY_PATH to run jetgen's CUDA path on the CPU.
pub fn lib_dir() -> PathBuf {
    PathBuf::from(DIR).join("lib")
}

/// The executor's self-test program (exit status 0 when every case behaves).
pub fn selftest() -> PathBuf {
    PathBuf::from(DIR).join("cuda-emu-selftest")
}
