//! The C API from C: builds tests/c/api_test.c against include/jetgen.h and the static
//! library with the system C compiler, runs it on a flow trained here, and checks its
//! generated jets equal the Rust API's for the same seed. Skips (printing why) when no C
//! compiler is found.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use jetgen::data::JetNetData;
use jetgen::models::flow::{generate, load_checkpoint, train_flow, FlowSettings};
use jetgen::runs::settings::RunSettings;
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
    let settings = FlowSettings {
        layers: 2,
        hidden: 16,
        blocks: 1,
        run: RunSettings {
            steps: 10,
            batch: 32,
            val_every: 10,
            generate: 50,
            quick_eval: true,
            plots: false,
            out: Some(run.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    train_flow(&data, &settings, &mut |_| ()).unwrap();
    // a conditional CNF(m, n) for the conditional-generation checks
    let run_cnf = run.join("cnf_mn");
    let mut settings_cnf = settings.clone();
    settings_cnf.variant = jetgen::models::conditions::Variant::CnfMn;
    settings_cnf.run.out = Some(run_cnf.clone());
    train_flow(&data, &settings_cnf, &mut |_| ()).unwrap();
    let not_a_model = common::vectors_dir().join("mlp_adam/init.safetensors");
    let c_args = [
        run.as_os_str(),
        run_cnf.as_os_str(),
        not_a_model.as_os_str(),
    ];

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
    let res = Command::new(&exe).args(c_args).output().unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && stdout.contains("ok"),
        "C test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );

    // the same program against the shared library
    let shared = lib.with_file_name("libjetgen.so");
    if shared.exists() {
        let exe_so = run.join("api_test_shared");
        let out = Command::new(&cc)
            .args(["-std=c99", "-Wall", "-Werror", "-O1", "-I"])
            .arg(root.join("include"))
            .arg(root.join("tests/c/api_test.c"))
            .arg("-L")
            .arg(shared.parent().unwrap())
            .args(["-ljetgen", "-lm", "-lpthread", "-o"])
            .arg(&exe_so)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "C build against libjetgen.so failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let res = Command::new(&exe_so)
            .args(c_args)
            .env("LD_LIBRARY_PATH", shared.parent().unwrap())
            .output()
            .unwrap();
        assert!(
            res.status.success() && String::from_utf8_lossy(&res.stdout).contains("ok"),
            "C test against the shared library failed:\n{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
    } else {
        eprintln!(
            "shared-library pass skipped: {} not built",
            shared.display()
        );
    }

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
            .args(c_args)
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
        for dir in [&run, &run_cnf] {
            let res = Command::new(&sim).arg(dir).arg("5").output().unwrap();
            let text = String::from_utf8_lossy(&res.stdout);
            assert!(
                res.status.success() && text.contains("0 inconsistent"),
                "simulation: {text}{}",
                String::from_utf8_lossy(&res.stderr)
            );
        }
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

/// The header and the Rust exports agree: the same `jetgen_*` functions with the same number
/// of parameters, and the same status codes (the C program above checks the types compile).
#[test]
fn header_matches_rust_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/jetgen.h")).unwrap();
    let arity = |params: &str| {
        let p = params.trim();
        if p.is_empty() || p == "void" {
            0
        } else {
            p.split(',').count()
        }
    };
    // C declarations: `<type> jetgen_name(params);`
    let mut c_fns = std::collections::BTreeMap::new();
    // strip comments, then split declarations at ';'
    let mut flat = String::new();
    let mut rest = header.as_str();
    while let Some(start) = rest.find("/*") {
        flat.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |e| &rest[start + e + 2..]);
    }
    flat.push_str(rest);
    let flat = flat.replace('\n', " ");
    for code in flat.split(';') {
        if code.contains("typedef") {
            continue;
        }
        // the identifier just before the first '('
        let Some(open) = code.find('(') else { continue };
        let name = code[..open]
            .split_whitespace()
            .last()
            .unwrap_or("")
            .trim_start_matches('*');
        if name.starts_with("jetgen_") {
            let close = code.rfind(')').unwrap();
            c_fns.insert(name.to_string(), arity(&code[open + 1..close]));
        }
    }
    // Rust exports: `extern "C" fn jetgen_name(params)`
    let mut rust_fns = std::collections::BTreeMap::new();
    for file in ["src/ffi/mod.rs", "src/ffi/model.rs", "src/ffi/kernels.rs"] {
        let src = std::fs::read_to_string(root.join(file)).unwrap();
        for chunk in src.split("extern \"C\" fn ").skip(1) {
            let open = chunk.find('(').unwrap();
            let name = chunk[..open].trim().to_string();
            let mut depth = 0;
            let mut end = open;
            for (k, ch) in chunk[open..].char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let params = chunk[open + 1..end].trim().trim_end_matches(',');
            rust_fns.insert(name, arity(params));
        }
    }
    assert_eq!(c_fns, rust_fns, "jetgen.h and src/ffi disagree");
    // the family dispatch is part of the API: one name string per model
    assert_eq!(c_fns.get("jetgen_model_family"), Some(&1));
    for (name, code) in [
        ("JETGEN_OK", 0),
        ("JETGEN_FILE", 3),
        ("JETGEN_INTERNAL", 6),
        ("JETGEN_NUMERICAL", 7),
    ] {
        assert!(header.contains(&format!("{name} = {code}")), "{name}");
    }
    assert_eq!(jetgen::ffi::JetgenStatus::Numerical as i32, 7);
    assert_eq!(jetgen::ffi::JetgenStatus::File as i32, 3);
}
