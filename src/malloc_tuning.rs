//! Process-wide allocator settings for programs that own their process (the `jetgen` CLI,
//! the benches). A library must not change them behind its host's back, so nothing in the
//! engine calls this on its own; a C++ host can set the same with `mallopt` or the
//! `MALLOC_*_` environment variables.
//!
//! Why: every op returns fresh tensors, and with glibc's defaults the heap memory of a
//! dropped multi-megabyte tensor is handed back to the kernel (trimmed, or unmapped when the
//! buffer was mmap'ed). The next step's tensors fault the same pages in again, each one
//! zeroed by the kernel. For the Chamfer backward at B = 4096 that was more than half of the
//! time on two threads. Keeping freed memory in the process (as PyTorch's caching allocators
//! do on the GPU) removes it.

/// On glibc: serve allocations up to 32 MiB from the heap, keep up to 1 GiB of freed memory
/// at the heap top and grow the heap in 64 MiB steps. A no-op elsewhere. Returns whether the
/// settings took.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // glibc's <malloc.h>
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator parameters; glibc accepts these values (the
        // mmap threshold is at its 64-bit maximum, 32 MiB) and returns 0 if it does not.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
                && mallopt(M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// glibc accepts the three settings (each `mallopt` returns 1).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::retain_freed_memory());
    }
}
