//! `jetgen eval`: compare generated jets with real ones using the JetNet metrics implemented
//! so far (W1M, W1P, W1EFP; FPD/KPD, COV/MMD and FPND arrive with the rest of the metrics
//! issue).

use std::path::PathBuf;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::{w1efp, w1m, w1p, Bootstrap};

/// Read both files, run the metrics, print a table (papers' units: W1 × 10³) and optionally
/// write JSON.
pub fn run(
    real: PathBuf,
    gen: PathBuf,
    protocol: &str,
    seed: u64,
    json: Option<PathBuf>,
) -> Result<()> {
    let b = match protocol {
        "jetnet" => Bootstrap::jetnet(seed),
        "mpgan" => Bootstrap::mpgan(seed),
        _ => {
            return Err(Error::invalid(format!(
                "unknown protocol '{protocol}' (jetnet = 5 × 50,000, mpgan = 5 × 10,000)"
            )))
        }
    };
    let real_data = JetNetData::read(&real)?;
    let gen_data = JetNetData::read(&gen)?;
    println!(
        "real: {} ({} jets × {} particles)",
        real.display(),
        real_data.n_jets,
        real_data.n_particles
    );
    println!(
        "gen:  {} ({} jets × {} particles)",
        gen.display(),
        gen_data.n_jets,
        gen_data.n_particles
    );
    println!(
        "protocol: {protocol}, {} batches × {} jets drawn with replacement, seed {seed}",
        b.batches, b.batch_size
    );
    let m = w1m(&real_data, &gen_data, &b)?;
    let p = w1p(&real_data, &gen_data, &b)?;
    let p_mean = (p[0].mean + p[1].mean + p[2].mean) / 3.0;
    let p_err = (p[0].std.powi(2) + p[1].std.powi(2) + p[2].std.powi(2)).sqrt() / 3.0;
    println!("{:<22} {:>14}", "metric", "value ×10³");
    println!(
        "{:<22} {:>7.3} ± {:.3}",
        "W1M (m/pT)",
        m.mean * 1e3,
        m.std * 1e3
    );
    for (k, name) in ["W1P eta_rel", "W1P phi_rel", "W1P pt_rel"]
        .iter()
        .enumerate()
    {
        println!(
            "{:<22} {:>7.3} ± {:.3}",
            name,
            p[k].mean * 1e3,
            p[k].std * 1e3
        );
    }
    println!(
        "{:<22} {:>7.3} ± {:.3}",
        "W1P (mean of 3)",
        p_mean * 1e3,
        p_err * 1e3
    );
    let e = w1efp(&real_data, &gen_data, &b)?;
    let e_mean = e.iter().map(|r| r.mean).sum::<f64>() / e.len() as f64;
    let e_err = e.iter().map(|r| r.std * r.std).sum::<f64>().sqrt() / e.len() as f64;
    println!(
        "{:<22} {:>7.3} ± {:.3}   (×10⁵, mean of the 5 EFPs)",
        "W1EFP",
        e_mean * 1e5,
        e_err * 1e5
    );
    if let Some(path) = json {
        let value = serde_json::json!({
            "real": real.display().to_string(), "gen": gen.display().to_string(), "protocol": protocol, "seed": seed,
            "batches": b.batches, "batch_size": b.batch_size,
            "w1m": {"mean": m.mean, "std": m.std},
            "w1p": p.iter().map(|r| serde_json::json!({"mean": r.mean, "std": r.std})).collect::<Vec<_>>(),
            "w1efp": e.iter().map(|r| serde_json::json!({"mean": r.mean, "std": r.std})).collect::<Vec<_>>(),
        });
        let text =
            serde_json::to_string_pretty(&value).map_err(|e| Error::invalid(e.to_string()))?;
        crate::nn::store::write_atomic(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
