//! `jetgen sample`: jets from any trained model, through its [`Generator`].
//!
//! [`Generator`]: crate::runs::generator::Generator

use std::path::PathBuf;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::runs::load_generator;

/// Generate `n` jets from a trained run directory (or checkpoint file) into a JetNet file;
/// with `mass` (and `multiplicity`) every jet gets those conditions.
pub fn run(
    model: PathBuf,
    n: usize,
    seed: u64,
    out: PathBuf,
    device: &str,
    mass: Option<f64>,
    multiplicity: Option<usize>,
) -> Result<()> {
    let device = Device::parse(device)?;
    if n == 0 {
        return Err(Error::invalid("--n must be at least 1"));
    }
    crate::io::refuse_input_as_output(&out, &[&crate::runs::dir::checkpoint_of(&model)])?;
    device.ensure_available()?;
    let model = load_generator(&model, device)?;
    let wants = model.conditioning();
    let jets = match (mass, multiplicity) {
        (None, None) => crate::on_thread_pool(|| model.generate(n, seed))?,
        (Some(m), k) => {
            if !wants.mass {
                return Err(Error::invalid(format!(
                    "a {} model is not conditioned on the jet mass",
                    model.name()
                )));
            }
            if k.is_some() && !wants.multiplicity {
                return Err(Error::invalid(format!(
                    "a {} model is not conditioned on the multiplicity",
                    model.name()
                )));
            }
            let given = Conditions {
                mass: vec![m; n],
                n: vec![k.unwrap_or(model.particles()) as f64; n],
            };
            crate::on_thread_pool(|| model.generate_conditional(&given, seed))?
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--multiplicity needs --mass too (models condition on m, or on m and n)",
            ))
        }
    };
    jets.write_hdf5(&out)?;
    println!(
        "wrote {n} jets ({} particles each, {} model) to {}",
        model.particles(),
        model.name(),
        out.display()
    );
    Ok(())
}
