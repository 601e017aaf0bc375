//! `jetgen info`.

use crate::device::{cuda, Device};
use crate::error::Result;

/// Print version, device choice (with the reason), threads and how kernels were built.
pub fn run() -> Result<()> {
    println!("jetgen {}", crate::VERSION);
    let choice = Device::auto_with_reason();
    println!("device (auto): {} — {}", choice.device, choice.reason);
    println!("cpu threads (rayon): {}", rayon::current_num_threads());
    let simd = crate::simd::selection();
    let hint = if simd.isa.is_avx2_fma() {
        format!(
            "; {}=portable forces the portable path",
            crate::simd::ENV_VAR
        )
    } else {
        String::new()
    };
    println!(
        "cpu simd path: {} for the Chamfer, RQS, Sinkhorn and elementwise kernels (chosen at \
         run time: {}{hint})",
        simd.isa, simd.reason
    );
    println!(
        "cuda kernels: {} modules, {}",
        cuda::KERNEL_MODULES.len(),
        if cuda::PRECOMPILED {
            "precompiled by nvcc (PTX compute_90 + sm_90 cubin)"
        } else {
            "embedded as source (NVRTC at first use)"
        }
    );
    Ok(())
}
