//! Every kernel in kernels/ compiles with NVRTC (as the library does at run time on a GPU
//! machine without precompiled kernels) and with nvcc + ptxas for sm_90 with no register
//! spills or local memory. Without the CUDA toolchain the checks skip with a message;
//! with `CI` set they fail instead (.ci/run installs the pinned CUDA 13.0 wheels).

use std::path::PathBuf;
use std::process::Command;

use jetgen::device::cuda::{KERNEL_MODULES, PRECOMPILED};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn skip_or_fail(what: &str) {
    if in_ci() {
        panic!("CI is set but {what}");
    }
    eprintln!("skipped: {what}");
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// The PTX ISA version a PTX text declares, e.g. (9, 0).
fn ptx_version(ptx: &str) -> (u32, u32) {
    let line = ptx
        .lines()
        .find(|l| l.trim_start().starts_with(".version"))
        .expect(".version line");
    let v = line.split_whitespace().nth(1).unwrap();
    let (a, b) = v.split_once('.').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn kernels_compile_with_nvrtc_and_pass_the_spill_gate() {
    assert!(KERNEL_MODULES.len() >= 6, "kernel modules are embedded");
    // SAFETY: probes whether libnvrtc can be dlopen'ed.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return skip_or_fail("libnvrtc is not loadable (install nvidia-cuda-nvrtc==13.0.*, put its lib on LD_LIBRARY_PATH)");
    }
    let ptxas = on_path("ptxas");
    let dir = std::env::temp_dir().join(format!("jetgen-nvrtc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for m in KERNEL_MODULES {
        let opts = cudarc::nvrtc::CompileOptions {
            arch: Some("compute_90"),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(m.source, opts)
            .unwrap_or_else(|e| panic!("NVRTC failed on {}.cu: {e:?}", m.name))
            .to_src();
        let version = ptx_version(&ptx);
        assert!(version <= (9, 0), "{}: NVRTC emitted PTX ISA {version:?}, newer than driver 580 / ptxas 13.0 accept (pin NVRTC to 13.0)", m.name);
        match &ptxas {
            Some(ptxas) => {
                let ptx_file = dir.join(format!("{}.ptx", m.name));
                std::fs::write(&ptx_file, &ptx).unwrap();
                let out = Command::new(ptxas)
                    .args([
                        "-arch=sm_90",
                        "-v",
                        "--warn-on-spills",
                        "--warn-on-local-memory-usage",
                        "-Werror",
                        "-o",
                    ])
                    .arg(dir.join(format!("{}.cubin", m.name)))
                    .arg(&ptx_file)
                    .output()
                    .unwrap();
                let report = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success(),
                    "ptxas rejected NVRTC's PTX for {}.cu:\n{report}",
                    m.name
                );
            }
            None => skip_or_fail("ptxas not on PATH"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn build_precompiled_every_kernel_when_nvcc_is_present() {
    if on_path("nvcc").is_none() && std::env::var_os("NVCC").is_none() {
        return skip_or_fail("nvcc not on PATH");
    }
    // PRECOMPILED is a build-time constant; whether it holds depends on this machine.
    let precompiled: bool = std::hint::black_box(PRECOMPILED);
    assert!(
        precompiled,
        "nvcc is available but the build did not precompile the kernels (rebuild)"
    );
    for m in KERNEL_MODULES {
        assert!(
            m.ptx.is_some() && m.cubin.is_some(),
            "{} lacks PTX/cubin",
            m.name
        );
        assert!(
            ptx_version(m.ptx.unwrap()) <= (9, 0),
            "{}: PTX too new for driver 580",
            m.name
        );
    }
}
