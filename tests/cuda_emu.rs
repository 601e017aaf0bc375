//! The CUDA-on-CPU executor itself (kernels/emu), when it is the CUDA driver loaded
//! (`cargo test --features cuda-emu`, or its `lib/` first on LD_LIBRARY_PATH): its self-test
//! program (exact results of every warp primitive and barrier flavour, and one deliberately
//! broken kernel per diagnostic) under both fiber switches, and the stand-in driver as jetgen
//! sees it. Skips (printing why) when another driver or none is loaded; with
//! JETGEN_REQUIRE_EMU=1 that is a failure.

use std::path::PathBuf;
use std::process::Command;

use jetgen::device::cuda::{device_info, driver_available, EMULATOR_NAME_PREFIX};
use jetgen::Device;

/// The stand-in's build directory, or None (after printing why) when it is not loaded.
fn emulator_or_skip(test: &str) -> Option<PathBuf> {
    type Dir = unsafe extern "C" fn() -> *const std::ffi::c_char;
    let found = driver_available().ok().and_then(|_| {
        // SAFETY: the driver library is loadable (checked above); the symbol, when present, is
        // the stand-in's `const char* jg_emu_install_dir(void)`.
        unsafe {
            let f = cudarc::driver::sys::culib()
                .get::<Dir>(b"jg_emu_install_dir\0")
                .ok()?;
            Some(PathBuf::from(
                std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned(),
            ))
        }
    });
    if found.is_none() {
        if std::env::var("JETGEN_REQUIRE_EMU").is_ok_and(|v| v == "1") {
            panic!("{test}: JETGEN_REQUIRE_EMU=1 but the loaded CUDA driver is not the cuda-emu stand-in");
        }
        eprintln!("{test}: skipped: the CUDA driver loaded is not the cuda-emu stand-in");
    }
    found
}

#[test]
#[ignore = "needs the cuda-emu stand-in loaded as the CUDA driver: run with --include-ignored (.ci/run does)"]
fn executor_self_test_passes_with_both_fiber_switches() {
    let Some(dir) = emulator_or_skip("executor_self_test_passes_with_both_fiber_switches") else {
        return;
    };
    let exe = dir.join("cuda-emu-selftest");
    for fibers in ["fast", "ucontext"] {
        let out = Command::new(&exe)
            .env("JETGEN_EMU_FIBERS", fibers)
            .env_remove("JETGEN_EMU_SCHEDULE")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "self-test with {fibers} fibers:\n{log}"
        );
        assert!(log.contains("all self-test cases passed"), "{log}");
    }
}

/// The stand-in reports compute capability 10.0 (so jetgen loads PTX, not the sm_90 cubin),
/// and `Device::auto` does not mistake it for a GPU.
#[test]
#[ignore = "needs the cuda-emu stand-in loaded as the CUDA driver: run with --include-ignored (.ci/run does)"]
fn the_stand_in_is_no_gpu_for_auto() {
    if emulator_or_skip("the_stand_in_is_no_gpu_for_auto").is_none() {
        return;
    }
    let info = device_info(0).unwrap();
    assert!(info.name.starts_with(EMULATOR_NAME_PREFIX), "{}", info.name);
    assert_eq!(info.compute_capability, (10, 0));
    let choice = Device::auto_with_reason();
    assert_eq!(choice.device, Device::Cpu, "{}", choice.reason);
    assert!(choice.reason.contains("CUDA-on-CPU"), "{}", choice.reason);
}

/// A host pointer handed to a `_device` C API function is caught by the driver's checks and
/// becomes a jetgen error naming the problem, not a crash; the context stays usable.
#[test]
#[ignore = "needs the cuda-emu stand-in loaded as the CUDA driver: run with --include-ignored (.ci/run does)"]
fn host_pointers_given_as_device_memory_are_an_error() {
    use jetgen::ffi::*;
    if emulator_or_skip("host_pointers_given_as_device_memory_are_an_error").is_none() {
        return;
    }
    let (b, n, m, d) = (2usize, 5usize, 4usize, 3usize);
    let x = vec![0.5f32; b * n * d];
    let y = vec![0.25f32; b * m * d];
    let mut out = vec![0f32; b];
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid host buffers; the device call must reject them without touching them.
    unsafe {
        assert_eq!(jetgen_context_create(0, 0, &mut ctx), JetgenStatus::Ok);
        let status = jetgen_chamfer_device(
            ctx,
            x.as_ptr(),
            y.as_ptr(),
            b,
            n,
            m,
            d,
            std::ptr::null(),
            std::ptr::null(),
            0,
            out.as_mut_ptr(),
        );
        assert_ne!(status, JetgenStatus::Ok);
        let msg = std::ffi::CStr::from_ptr(jetgen_last_error())
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("not device memory"), "{msg}");
        jetgen_context_free(ctx);
    }
    let t = jetgen::Tensor::full(&[3], 2.0, Device::Cuda(0)).unwrap();
    assert_eq!(t.to_vec().unwrap(), vec![2.0; 3]);
}
