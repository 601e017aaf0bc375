//! Build script of the `jetgen-cuda-emu` crate: compiles the CUDA-on-CPU executor, every
//! `kernels/*.cu` and the stand-in driver into `$OUT_DIR/cuda-emu/lib/`
//! (`libcuda.so.1`, also reachable as `libcuda.so`, `libcublas.so.13` and `libcublas.so`, one
//! library so the stand-in cuBLAS sees the driver's allocations), plus the executor's self-test
//! program `$OUT_DIR/cuda-emu/cuda-emu-selftest`.
//!
//! The kernel sources compile unchanged except for one mechanical rewrite of their shared
//! memory declarations (same line, so diagnostics keep the source line numbers):
//!   `extern __shared__ T name[];`  →  `T* name = JG_EMU_DYNAMIC_SHARED(T);`
//!   `__shared__ T name[N]...;`     →  `JG_EMU_SHARED(T, name, [N]...);`
//! and each kernel family gets a generated table from `.entry` name to compiled function.
//!
//! The `cc` crate finds and configures the C++ compiler; the files are compiled in parallel
//! (NUM_JOBS) and only when a source or header is newer than its object. The library directory
//! is announced with `cargo:rustc-link-search`, which makes `cargo test` / `cargo run` of a
//! package depending on this one (jetgen with `--features cuda-emu`) put it on
//! LD_LIBRARY_PATH, where cudarc's dynamic loading finds it. The build's directory is also
//! exported as `JETGEN_CUDA_EMU_DIR` (this crate's `DIR`; its program prints it). `JETGEN_CUDA_EMU_SANITIZE=address,undefined` builds the same with
//! AddressSanitizer/UBSan into `$OUT_DIR/cuda-emu-address-undefined/` (kernels/emu/sanitized.sh
//! runs the CUDA tests through it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernel_dir = manifest
        .parent()
        .expect("kernels/emu lies in kernels/")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // kernels/ as a whole (cargo scans directories recursively): a new kernel file counts too
    println!("cargo:rerun-if-changed={}", kernel_dir.display());
    build(&kernel_dir, &out_dir);
}

/// The executor and driver sources, relative to kernels/emu.
const CORE: &[&str] = &[
    "fiber.cpp",
    "memory.cpp",
    "executor.cpp",
    "ptx.cpp",
    "driver.cpp",
    "cublas.cpp",
];

fn build(kernel_dir: &Path, out_dir: &Path) {
    let emu_dir = kernel_dir.join("emu");
    let sanitize = std::env::var("JETGEN_CUDA_EMU_SANITIZE").unwrap_or_default();
    // A sanitized build lives apart, so switching back never loads an instrumented library.
    let root = out_dir.join(if sanitize.is_empty() {
        "cuda-emu".to_string()
    } else {
        format!("cuda-emu-{}", sanitize.replace(',', "-"))
    });
    let src_dir = root.join("src");
    let lib_dir = root.join("lib");
    fs::create_dir_all(&src_dir).unwrap();
    fs::create_dir_all(&lib_dir).unwrap();
    println!("cargo:rerun-if-env-changed=JETGEN_CUDA_EMU_SANITIZE");
    println!("cargo:rerun-if-env-changed=CXX");
    println!("cargo:rerun-if-env-changed=CI");

    // 1. Rewritten kernel sources and their entry tables.
    let mut generated = Vec::new();
    rewrite_dir(kernel_dir, &src_dir, "kernels", &mut generated);
    rewrite_dir(
        &emu_dir.join("selftest"),
        &src_dir.join("selftest"),
        "kernels/emu/selftest",
        &mut Vec::new(),
    );
    let selftest_tables = {
        let mut v = Vec::new();
        let sdir = src_dir.join("selftest");
        for (stem, entries) in entry_tables(&emu_dir.join("selftest")) {
            let tu = sdir.join(format!("{stem}_entries.cpp"));
            write_if_changed(
                &tu,
                &entry_tu(&format!("selftest/{stem}"), &format!("{stem}.cu"), &entries),
            );
            v.push(tu);
        }
        v
    };
    let mut kernel_tus = Vec::new();
    for (stem, entries) in entry_tables(kernel_dir) {
        let tu = src_dir.join(format!("{stem}_entries.cpp"));
        write_if_changed(&tu, &entry_tu(&stem, &format!("{stem}.cu"), &entries));
        kernel_tus.push(tu);
    }

    // 2. Compile.
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .pic(true)
        .opt_level(if sanitize.is_empty() { 2 } else { 1 })
        .debug(!sanitize.is_empty())
        .cargo_metadata(false)
        .warnings(false)
        .include(&emu_dir)
        .flag("-fvisibility=hidden")
        .flag("-ffp-contract=off")
        .flag("-fno-strict-aliasing");
    if !sanitize.is_empty() {
        build
            .flag(format!("-fsanitize={sanitize}"))
            .flag("-fno-sanitize-recover=all")
            .flag("-fno-omit-frame-pointer");
    }
    let compiler = build.get_compiler();
    let obj_dir = root.join("obj");
    fs::create_dir_all(&obj_dir).unwrap();
    let headers = newest_mtime(&[&emu_dir, kernel_dir], &["h", "cuh"]);
    // (source, object, extra flags, newest input): kernel TUs depend on every rewritten source.
    // Warnings are errors in CI (as a missing nvcc is for build.rs), not on users' compilers.
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    let strict = if ci {
        vec!["-Wall", "-Wextra", "-Werror"]
    } else {
        vec!["-Wall", "-Wextra"]
    };
    let mut jobs: Vec<(PathBuf, PathBuf, Vec<&str>, SystemTime)> = Vec::new();
    for f in CORE {
        let src = emu_dir.join(f);
        println!("cargo:rerun-if-changed={}", src.display());
        let deps = mtime(&src).max(headers);
        jobs.push((src, obj_dir.join(format!("{f}.o")), strict.clone(), deps));
    }
    let generated_newest = newest_in(&src_dir).max(headers);
    for tu in kernel_tus.iter().chain(&selftest_tables) {
        let name = tu
            .strip_prefix(&src_dir)
            .unwrap()
            .to_string_lossy()
            .replace('/', "_");
        jobs.push((
            tu.clone(),
            obj_dir.join(format!("{name}.o")),
            vec![],
            generated_newest,
        ));
    }
    let selftest_main = emu_dir.join("selftest/selftest.cpp");
    println!("cargo:rerun-if-changed={}", selftest_main.display());
    let deps = mtime(&selftest_main).max(headers);
    jobs.push((
        selftest_main,
        obj_dir.join("selftest_main.o"),
        strict.clone(),
        deps,
    ));
    let stale: Vec<_> = jobs
        .iter()
        .filter(|(_, obj, _, deps)| mtime(obj) < *deps)
        .collect();
    let threads = std::env::var("NUM_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .max(1);
    let chunks: Vec<Vec<_>> = (0..threads)
        .map(|t| stale.iter().skip(t).step_by(threads).collect())
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let compiler = &compiler;
                let src_dir = &src_dir;
                s.spawn(move || {
                    for (src, obj, extra, _) in chunk.iter().map(|j| &***j) {
                        let mut cmd = compiler.to_command();
                        cmd.args(extra)
                            .arg("-I")
                            .arg(src_dir)
                            .arg("-c")
                            .arg(src)
                            .arg("-o")
                            .arg(obj);
                        run(&mut cmd, &format!("compiling {}", src.display()));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("compile thread");
        }
    });

    // 3. Link the library and the self-test.
    let obj = |name: &str| obj_dir.join(format!("{name}.o"));
    let core_objs: Vec<PathBuf> = CORE.iter().map(|f| obj(f)).collect();
    let kernel_objs: Vec<PathBuf> = kernel_tus
        .iter()
        .map(|tu| obj(&tu.file_name().unwrap().to_string_lossy()))
        .collect();
    let san: Vec<String> = if sanitize.is_empty() {
        vec![]
    } else {
        vec![format!("-fsanitize={sanitize}")]
    };
    let lib = lib_dir.join("libcuda.so.1");
    let map = emu_dir.join("exports.map");
    println!("cargo:rerun-if-changed={}", map.display());
    let mut link = compiler.to_command();
    link.arg("-shared")
        .args(&san)
        .arg("-Wl,-soname,libcuda.so.1")
        .arg(format!("-Wl,--version-script={}", map.display()))
        .arg("-o")
        .arg(&lib)
        .args(&core_objs)
        .args(&kernel_objs)
        .arg("-lpthread")
        .arg("-ldl");
    run(&mut link, "linking libcuda.so.1");
    for alias in ["libcuda.so", "libcublas.so.13", "libcublas.so"] {
        let p = lib_dir.join(alias);
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink("libcuda.so.1", &p).unwrap();
    }
    let selftest = root.join("cuda-emu-selftest");
    let selftest_objs: Vec<PathBuf> = selftest_tables
        .iter()
        .map(|tu| {
            let name = tu
                .strip_prefix(&src_dir)
                .unwrap()
                .to_string_lossy()
                .replace('/', "_");
            obj_dir.join(format!("{name}.o"))
        })
        .collect();
    let mut link = compiler.to_command();
    link.args(&san)
        .arg("-o")
        .arg(&selftest)
        .arg(obj("selftest_main"))
        .args(&core_objs)
        .args(&selftest_objs)
        .arg("-lpthread");
    run(&mut link, "linking cuda-emu-selftest");

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-env=JETGEN_CUDA_EMU_DIR={}", root.display());
}

/// Rewrite every .cu/.cuh of `from` into `to`, with a #line directive naming `shown/<file>`.
fn rewrite_dir(from: &Path, to: &Path, shown: &str, written: &mut Vec<PathBuf>) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().filter_map(|e| e.ok()) {
        let p = e.path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if ext != "cu" && ext != "cuh" {
            continue;
        }
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&p).unwrap();
        let mut out = format!("#line 1 \"{shown}/{name}\"\n");
        for (n, line) in text.lines().enumerate() {
            out.push_str(
                &rewrite_shared(line).unwrap_or_else(|e| panic!("{}:{}: {e}", p.display(), n + 1)),
            );
            out.push('\n');
        }
        let dst = to.join(&name);
        write_if_changed(&dst, &out);
        written.push(dst);
    }
}

/// The shared-memory rewrite of one source line (unchanged when it declares none).
fn rewrite_shared(line: &str) -> Result<String, String> {
    let code = line.split("//").next().unwrap_or("");
    if !code.contains("__shared__") {
        return Ok(line.to_string());
    }
    let indent: String = code.chars().take_while(|c| c.is_whitespace()).collect();
    let t = code.trim();
    let unsupported = || {
        Err(format!(
            "the cuda-emu build cannot rewrite this __shared__ declaration (one array per line, \
             no initialiser, no __align__): `{t}`"
        ))
    };
    if t.contains("__align__") || t.contains('=') || t.contains(',') || !t.ends_with(';') {
        return unsupported();
    }
    let body = t.trim_end_matches(';').trim();
    let (is_extern, rest) = match body.strip_prefix("extern") {
        Some(r) => (true, r.trim()),
        None => (false, body),
    };
    let Some(decl) = rest.strip_prefix("__shared__") else {
        return unsupported();
    };
    let decl = decl.trim();
    let Some(lb) = decl.find('[') else {
        return unsupported(); // a shared scalar: not used by our kernels
    };
    let (head, dims) = (decl[..lb].trim(), decl[lb..].trim());
    let name_start = head
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let (ty, name) = (head[..name_start].trim(), &head[name_start..]);
    if ty.is_empty() || name.is_empty() {
        return unsupported();
    }
    Ok(if is_extern {
        if dims != "[]" {
            return unsupported();
        }
        format!("{indent}{ty}* {name} = JG_EMU_DYNAMIC_SHARED({ty});")
    } else {
        format!("{indent}JG_EMU_SHARED({ty}, {name}, {dims});")
    })
}

/// One `extern "C" __global__` entry: its name and its `__launch_bounds__` thread limit, if any.
struct Entry {
    name: String,
    max_threads: Option<String>,
}

/// For each .cu in `dir`: its stem and its entries.
fn entry_tables(dir: &Path) -> Vec<(String, Vec<Entry>)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    files.sort();
    for p in files {
        let text = fs::read_to_string(&p).unwrap();
        out.push((
            p.file_stem().unwrap().to_string_lossy().into_owned(),
            entries(&text),
        ));
    }
    out
}

/// The `extern "C" __global__ void [__launch_bounds__(T[, B])] NAME(` entries of a source.
fn entries(text: &str) -> Vec<Entry> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("__global__") {
        rest = &rest[i + "__global__".len()..];
        let mut s = rest.trim_start();
        s = s.strip_prefix("void").unwrap_or(s).trim_start();
        let mut max_threads = None;
        if let Some(lb) = s.strip_prefix("__launch_bounds__") {
            let open = lb.find('(').expect("__launch_bounds__(...)");
            let close = lb.find(')').expect("__launch_bounds__(...)");
            let args = &lb[open + 1..close];
            max_threads = Some(args.split(',').next().unwrap().trim().to_string());
            s = lb[close + 1..].trim_start();
        }
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        if end > 0 {
            found.push(Entry {
                name: s[..end].to_string(),
                max_threads,
            });
        }
    }
    found
}

fn entry_tu(module: &str, include: &str, entries: &[Entry]) -> String {
    let mut s = format!(
        "// Generated by kernels/emu/build_emu.rs: the {module} kernels and their entry table.\n\
         #include \"executor.h\"\n#include \"kernel_prelude.h\"\n#include \"{include}\"\n\nnamespace {{\n\
         const ::jg_emu::KernelEntry entries[] = {{\n"
    );
    for e in entries {
        let bound = e.max_threads.as_deref().unwrap_or("0");
        s.push_str(&format!(
            "    JG_EMU_KERNEL(\"{module}\", {}, {bound}),\n",
            e.name
        ));
    }
    s.push_str(&format!(
        "}};\nstruct Register {{\n    Register() {{ ::jg_emu::register_kernels(entries, {}); }}\n}} registered;\n}}  // namespace\n",
        entries.len()
    ));
    s
}

fn write_if_changed(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap();
    }
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn newest_mtime(dirs: &[&Path], exts: &[&str]) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for d in dirs {
        for e in fs::read_dir(d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
            {
                println!("cargo:rerun-if-changed={}", p.display());
                t = t.max(mtime(&p));
            }
        }
    }
    t
}

fn newest_in(dir: &Path) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for e in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        t = t.max(if p.is_dir() { newest_in(&p) } else { mtime(&p) });
    }
    t
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run the C++ compiler: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed:\n{:?}\n{}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
