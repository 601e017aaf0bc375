//! `jetgen bench`: the engine benchmark suite as a table (and JSON for the GPU bundle).

use std::path::PathBuf;

use crate::bench::engine_suite;
use crate::device::Device;
use crate::error::{Error, Result};

/// Run the suite on `device` and print a table; write JSON rows to `json` if given.
pub fn run(device: &str, iters: usize, json: Option<PathBuf>) -> Result<()> {
    let device = Device::parse(device)?;
    device.ensure_available()?;
    println!(
        "jetgen {} bench on {device} ({} rayon threads), median of {iters} runs",
        crate::VERSION,
        rayon::current_num_threads()
    );
    let rows = engine_suite(device, iters)?;
    println!(
        "{:<46} {:>10} {:>21} {:>9}",
        "benchmark", "median ms", "p25-p75 ms", "GFLOP/s"
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
    }
    if let Some(path) = json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"name": r.name, "device": r.device, "median_ms": r.median_ms,
                    "p25_ms": r.p25_ms, "p75_ms": r.p75_ms, "gflops": r.gflops,
                    "threads": rayon::current_num_threads()})
            })
            .collect();
        let text =
            serde_json::to_string_pretty(&items).map_err(|e| Error::invalid(e.to_string()))?;
        crate::nn::store::write_atomic(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
