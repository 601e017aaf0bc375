//! The C API from C: builds tests/c/api_test.c against include/jetgen.h and the static
//! library with the system C compiler, runs it on a flow trained here, and checks its
//! generated jets equal the Rust API's for the same seed. Skips (printing why) when no C
//! compiler is found.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use jetgen::data::JetNetData;
use jetgen::models::flow::FlowConfig;
use jetgen::models::train_flow::{generate, load_checkpoint, train_flow, TrainConfig};
use jetgen::Device;

fn staticlib() -> Option<PathBuf> {
    // the test executable lives in target/<profile>/deps, next to libjetgen.a
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [deps.join("libjetgen.a"), deps.parent()?.join("libjetgen.a")]
        .into_iter()
        .find(|p| p.exists())
}

#[test]
fn c_program_uses_the_api() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        eprintln!("skipped: no C compiler ({cc})");
        return;
    }
    let Some(lib) = staticlib() else {
        eprintln!("skipped: libjetgen.a not found next to the test executable");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = common::sample_dir();
    let data = JetNetData::read(&sample.join("g.hdf5")).unwrap();
    let run = std::env::temp_dir().join(format!("jetgen-capi-{}", std::process::id()));
    let flow = FlowConfig {
        layers: 2,
        hidden: 16,
        blocks: 1,
        ..FlowConfig::default_for(90)
    };
    let cfg = TrainConfig {
        steps: 10,
        batch: 32,
        val_every: 10,
        generate: 50,
        full_eval: false,
        plots: false,
        ..Default::default()
    };
    train_flow(&data, flow, &cfg, &run, |_| ()).unwrap();

    let exe = run.join("api_test");
    let out = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Werror", "-O1", "-I"])
        .arg(root.join("include"))
        .arg(root.join("tests/c/api_test.c"))
        .arg(&lib)
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "C build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = Command::new(&exe).arg(&run).output().unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("ok"),
        "C test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );

    // one pass under AddressSanitizer (with leak detection) when the toolchain supports it
    let asan = run.join("api_test_asan");
    let built = Command::new(&cc)
        .args(["-std=c99", "-g", "-fsanitize=address", "-I"])
        .arg(root.join("include"))
        .arg(root.join("tests/c/api_test.c"))
        .arg(&lib)
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&asan)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if built {
        let res = Command::new(&asan)
            .arg(&run)
            .env("ASAN_OPTIONS", "detect_leaks=1")
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "AddressSanitizer run failed:\n{}",
            String::from_utf8_lossy(&res.stderr)
        );
    } else {
        eprintln!(
            "AddressSanitizer pass skipped: the C compiler cannot build with -fsanitize=address"
        );
    }

    // the C++ "simulation" example builds with g++ (C++17) and runs clean
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&cxx).arg("--version").output().is_ok() {
        let sim = run.join("simulation");
        let out = Command::new(&cxx)
            .args(["-std=c++17", "-Wall", "-Werror", "-O1", "-I"])
            .arg(root.join("include"))
            .arg(root.join("examples/cpp/simulation.cpp"))
            .arg(&lib)
            .args(["-lm", "-lpthread", "-ldl", "-o"])
            .arg(&sim)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "C++ build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let res = Command::new(&sim).arg(&run).arg("5").output().unwrap();
        let text = String::from_utf8_lossy(&res.stdout);
        assert!(
            res.status.success() && text.contains("0 inconsistent"),
            "simulation: {text}{}",
            String::from_utf8_lossy(&res.stderr)
        );
    } else {
        eprintln!("C++ example skipped: no C++ compiler ({cxx})");
    }

    // same seed through the Rust API gives the same jets as through the C API
    let model = load_checkpoint(&run.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    let a = generate(&model, 64, 7, Device::Cpu).unwrap();
    let mut parts = vec![0f32; 64 * 30 * 4];
    let mut jets = vec![0f32; 64 * 4];
    let mut handle = std::ptr::null_mut();
    let path = std::ffi::CString::new(run.to_str().unwrap()).unwrap();
    // SAFETY: valid pointers and sizes.
    unsafe {
        assert_eq!(
            jetgen::ffi::jetgen_model_load(
                path.as_ptr(),
                jetgen::ffi::JETGEN_DEVICE_CPU,
                &mut handle
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        assert_eq!(
            jetgen::ffi::jetgen_model_generate(
                handle,
                64,
                7,
                parts.as_mut_ptr(),
                parts.len(),
                jets.as_mut_ptr(),
                jets.len()
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        jetgen::ffi::jetgen_model_free(handle);
    }
    assert_eq!(
        parts, a.particles,
        "C API output equals the Rust API's for the same seed"
    );
    std::fs::remove_dir_all(&run).ok();
}
