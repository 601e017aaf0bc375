//! `jetgen bench [engine|kernels|generate|all]`: benchmark suites as tables, and JSON for machines.

use std::path::PathBuf;

pub mod fm;
pub mod roofline;
pub(crate) mod workloads;

use crate::device::Device;
use crate::error::{Error, Result};
use workloads::{
    engine_suite, flow_step_suite, generation_suite, kernel_suite, mpgan_step_suite, vae_step_suite,
};

/// What `jetgen bench` was asked to run.
pub struct BenchArgs {
    /// engine, kernels, generate, roofline or all.
    pub suite: String,
    /// auto, cpu, cuda or cuda:N.
    pub device: String,
    /// Timed repetitions per engine/generation benchmark.
    pub iters: usize,
    /// CPU threads (0 = rayon's default).
    pub threads: usize,
    /// Minimum seconds per kernel case.
    pub min_time: f64,
    /// Write the rows as a JSON list here.
    pub json: Option<PathBuf>,
    /// Kernel ops to run (empty = all).
    pub only: Vec<String>,
    /// Jets per step / generation of the `fm` suite.
    pub batch: usize,
}

/// Run the suite on the device with the requested CPU threads; print tables and write the
/// rows as a JSON list if asked.
pub fn run(args: &BenchArgs) -> Result<()> {
    let threads = args.threads;
    if threads > 0 {
        // matrixmultiply reads this once, at its first use.
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid(format!("cannot build a thread pool: {e}")))?;
    pool.install(|| run_in_pool(args))
}

fn run_in_pool(args: &BenchArgs) -> Result<()> {
    let (suite, iters) = (args.suite.as_str(), args.iters);
    if !matches!(
        suite,
        "engine" | "kernels" | "scaling" | "generate" | "roofline" | "vae" | "fm" | "mpgan" | "all"
    ) {
        return Err(Error::invalid(format!(
            "unknown bench suite '{suite}' (engine, kernels, scaling, generate, roofline, vae, fm, mpgan, all)"
        )));
    }
    let device = Device::parse(&args.device)?;
    device.ensure_available()?;
    let threads = rayon::current_num_threads();
    println!(
        "jetgen {} bench {suite} on {device} ({threads} CPU threads, {} lanes)",
        crate::VERSION,
        crate::simd::BACKEND
    );
    let mut items: Vec<serde_json::Value> = Vec::new();
    if suite == "engine" || suite == "all" {
        let rows = engine_suite(device, iters)?;
        println!(
            "{:<46} {:>10} {:>21} {:>9}",
            "benchmark (median of runs)", "median ms", "p25-p75 ms", "GFLOP/s"
        );
        for r in &rows {
            let gf = r
                .gflops
                .map(|g| format!("{g:.1}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<46} {:>10.3} {:>10.3}-{:<10.3} {:>9}",
                r.name, r.median_ms, r.p25_ms, r.p75_ms, gf
            );
            items.push(
                serde_json::json!({"name": r.name, "device": r.device, "median_ms": r.median_ms,
                "p25_ms": r.p25_ms, "p75_ms": r.p75_ms, "gflops": r.gflops, "threads": threads}),
            );
        }
    }
    // the machine model, measured in the same run as the kernels it bounds
    let machine = matches!(suite, "kernels" | "scaling" | "roofline" | "all").then(|| {
        let m = roofline::Machine::measure();
        println!("{}", m.describe());
        items.push(serde_json::json!({ "machine": m.to_json() }));
        m
    });
    let gpu = match device {
        Device::Cuda(ordinal) => crate::device::cuda::device_info(ordinal)
            .ok()
            .and_then(|info| roofline::GpuModel::for_device(&info.name)),
        Device::Cpu => None,
    };
    if let Some(g) = &gpu {
        println!(
            "GPU model ({}): FP32 {:.1} TFLOP/s, HBM {:.2} TB/s, SFU {:.2} T/s (published rates)",
            g.name,
            g.flops / 1e12,
            g.bandwidth / 1e12,
            g.transcendentals / 1e12
        );
    }
    // the bound of a row's counted work on its device (None: no model for this GPU)
    let bound_of = |r: &workloads::KernelRow| -> Option<f64> {
        let work = r.work.as_ref()?;
        match device {
            Device::Cpu => machine.as_ref().map(|m| m.bound_s(work)),
            Device::Cuda(_) => gpu.as_ref().map(|g| g.bound_s(work)),
        }
    };
    if matches!(suite, "kernels" | "scaling" | "all") {
        let sizes = if suite == "scaling" {
            workloads::KernelSizes::Scaling
        } else {
            workloads::KernelSizes::Peers
        };
        println!(
            "{:<9} {:>5} {:>4} {:>4} {:>2} {:>3} {:>5} {:<8} {:<14} {:>11} {:>11} {:>5} {:>9} {:>6}",
            "op",
            "B",
            "N",
            "M",
            "D",
            "K",
            "iters",
            "pass",
            "variant",
            "median ms",
            "min ms",
            "runs",
            "bound ms",
            "% roof"
        );
        let rows = kernel_suite(device, args.min_time, &args.only, sizes, |r| {
            let o = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let bound = bound_of(r);
            let (b, f) = match bound {
                Some(b) => (
                    format!("{:.4}", b * 1e3),
                    format!("{:.1}", 100.0 * b / r.median_s),
                ),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<9} {:>5} {:>4} {:>4} {:>2} {:>3} {:>5} {:<8} {:<14} {:>11.4} {:>11.4} {:>5} {:>9} {:>6}",
                r.op, o(r.batch), o(r.n), o(r.m), o(r.d), o(r.bins), o(r.iters), r.pass,
                r.variant.clone().unwrap_or_default(), r.median_s * 1e3, r.min_s * 1e3, r.runs, b, f
            );
        })?;
        items.extend(rows.iter().map(|r| {
            let mut j = r.to_json();
            if let Some(b) = bound_of(r) {
                j["bound_s"] = b.into();
                j["roofline_fraction"] = (b / r.median_s).into();
            }
            j
        }));
    }
    if suite == "generate" || suite == "all" {
        let steps = flow_step_suite(device, iters)?;
        print_rates("flow (median of runs)", &steps, 256.0, threads, &mut items);
        let rows = generation_suite(device, iters)?;
        print_rates(
            "generation (median of runs)",
            &rows,
            10_000.0,
            threads,
            &mut items,
        );
        // one (Rust API, C API) pair of rows per model family
        for pair in rows.chunks_exact(2) {
            let (rust, c) = (&pair[0], &pair[1]);
            println!(
                "C API overhead ({}): {:+.2} % (median C / median Rust − 1)",
                rust.name.trim_end_matches(", Rust API"),
                (c.median_ms / rust.median_ms - 1.0) * 100.0
            );
        }
    }
    if suite == "vae" || suite == "all" {
        let rows = vae_step_suite(device, iters)?;
        print_rates(
            "VAE training steps (median of runs)",
            &rows,
            100.0,
            threads,
            &mut items,
        );
    }
    if suite == "fm" || suite == "all" {
        let rows = fm::fm_suite(device, iters, args.batch)?;
        print_rates(
            "flow matching (median of runs)",
            &rows,
            args.batch.max(1) as f64,
            threads,
            &mut items,
        );
    }
    if suite == "mpgan" || suite == "all" {
        let rows = mpgan_step_suite(device, iters)?;
        for (r, batch) in rows.iter().zip([32.0, 256.0]) {
            print_rates(
                "MPGAN training steps (median of runs)",
                std::slice::from_ref(r),
                batch,
                threads,
                &mut items,
            );
        }
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&items).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Prints rows with a jets/s column (`jets` per timed call) and appends them to `items`.
fn print_rates(
    title: &str,
    rows: &[workloads::BenchRow],
    jets: f64,
    threads: usize,
    items: &mut Vec<serde_json::Value>,
) {
    println!(
        "{title:<52} {:>10} {:>21} {:>12}",
        "median ms", "p25-p75 ms", "jets/s"
    );
    for r in rows {
        let rate = jets / (r.median_ms * 1e-3);
        println!(
            "{:<52} {:>10.2} {:>10.2}-{:<10.2} {:>12.0}",
            r.name, r.median_ms, r.p25_ms, r.p75_ms, rate
        );
        items.push(
            serde_json::json!({"name": r.name, "device": r.device, "median_ms": r.median_ms,
            "p25_ms": r.p25_ms, "p75_ms": r.p75_ms, "jets_per_s": rate, "threads": threads}),
        );
    }
}
