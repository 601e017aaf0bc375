//! Prints the directory of the CUDA-on-CPU build (its `lib/` goes on LD_LIBRARY_PATH):
//!   EMU=$(cargo run -q --manifest-path kernels/emu/Cargo.toml --target-dir target/cuda-emu)
fn main() {
    println!("{}", jetgen_cuda_emu::DIR);
}
