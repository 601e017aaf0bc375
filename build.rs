//! Embeds the CUDA kernels in the library.
//!
//! For every `kernels/*.cu`: local `#include "x.cuh"` lines are inlined (so NVRTC can
//! compile the source alone), and the expanded source is embedded. When `nvcc` is found
//! (on PATH, or `$NVCC`), each kernel is also compiled to PTX (compute_90) and to an sm_90
//! cubin through `ptxas -v --warn-on-spills --warn-on-local-memory-usage -Werror`; a spill
//! or local-memory use fails the build, and the ptxas report is written to
//! `$OUT_DIR/ptxas-report.txt`. Without nvcc the sources are compiled by NVRTC at first use
//! on a GPU machine; with `CI` set, a missing nvcc is a build error.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn expand_includes(path: &Path, depth: usize) -> String {
    assert!(depth < 8, "include nesting too deep at {}", path.display());
    let src =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let dir = path.parent().unwrap();
    let mut out = String::new();
    for line in src.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("#include \"") {
            let name = rest.trim_end_matches('"');
            out.push_str(&format!("// ---- begin {name}\n"));
            out.push_str(&expand_includes(&dir.join(name), depth + 1));
            out.push_str(&format!("// ---- end {name}\n"));
        } else if t == "#pragma once" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn find_nvcc() -> Option<PathBuf> {
    if let Ok(p) = env::var("NVCC") {
        return Some(PathBuf::from(p));
    }
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
    })
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        panic!("{what} failed:\n{text}");
    }
    text
}

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let kernel_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");

    let mut names: Vec<String> = fs::read_dir(&kernel_dir)
        .expect("kernels/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let nvcc = find_nvcc();
    let ci = env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    if nvcc.is_none() {
        if ci {
            panic!("CI is set but nvcc was not found: install the pinned CUDA 13.0 wheels (see .ci/run) so every kernel is compile-checked");
        }
        println!("cargo:warning=nvcc not found: CUDA kernels are embedded as source and compiled with NVRTC at first use");
    }
    let ptxas = nvcc.as_ref().map(|n| n.with_file_name("ptxas"));

    let mut report = String::new();
    let mut table = String::from("pub static KERNEL_MODULES: &[KernelModule] = &[\n");
    for name in &names {
        let cu = kernel_dir.join(format!("{name}.cu"));
        let expanded = out_dir.join(format!("{name}.cu"));
        fs::write(&expanded, expand_includes(&cu, 0)).unwrap();
        let (mut ptx_entry, mut cubin_entry) = ("None".to_string(), "None".to_string());
        if let (Some(nvcc), Some(ptxas)) = (&nvcc, &ptxas) {
            let ptx = out_dir.join(format!("{name}.ptx"));
            let cubin = out_dir.join(format!("{name}.cubin"));
            run(
                Command::new(nvcc)
                    .args(["-ptx", "-arch=compute_90", "-O3", "-std=c++17", "-o"])
                    .arg(&ptx)
                    .arg(&expanded),
                &format!("nvcc -ptx {name}.cu"),
            );
            let text = run(
                Command::new(ptxas)
                    .args([
                        "-arch=sm_90",
                        "-O3",
                        "-v",
                        "--warn-on-spills",
                        "--warn-on-local-memory-usage",
                        "-Werror",
                        "-o",
                    ])
                    .arg(&cubin)
                    .arg(&ptx),
                &format!("ptxas sm_90 {name}.ptx (spill/local-memory gate)"),
            );
            report.push_str(&format!("== {name}.cu\n{text}\n"));
            ptx_entry = format!("Some(include_str!({:?}))", ptx.display().to_string());
            cubin_entry = format!("Some(include_bytes!({:?}))", cubin.display().to_string());
        }
        table.push_str(&format!(
            "    KernelModule {{ name: {name:?}, source: include_str!({:?}), ptx: {ptx_entry}, cubin: {cubin_entry} }},\n",
            expanded.display().to_string()
        ));
    }
    table.push_str("];\n");
    table.push_str(&format!("/// True when nvcc compiled and spill-checked every kernel at build time.\npub const PRECOMPILED: bool = {};\n", nvcc.is_some()));
    fs::write(out_dir.join("kernels.rs"), table).unwrap();
    fs::write(out_dir.join("ptxas-report.txt"), report).unwrap();
}
