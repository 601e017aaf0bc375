//! Library checkpoints: one safetensors file holding the library's jets
//! (`library.particles [N, P, 4]`, `library.jets [N, 4]`) and, in the metadata, the family
//! (`jetgen_model = library`), `k` and the conditions. The index is rebuilt on loading (it is
//! a function of the jets), so a checkpoint cannot disagree with its jets.

use std::collections::HashMap;
use std::path::Path;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::library::library::Library;
use crate::models::library::settings::{condition_names, LibraryCondition};
use crate::nn::store;
use crate::tensor::Tensor;

/// The family name libraries record in their checkpoints' `jetgen_model` metadata.
pub const FAMILY: &str = "library";

/// Save `lib` as a checkpoint (atomically).
pub fn save_library(path: &Path, lib: &Library) -> Result<()> {
    let j = &lib.jets;
    let tensors = vec![
        (
            "library.particles".to_string(),
            Tensor::from_slice(&j.particles, &[j.n_jets, j.n_particles, 4], Device::Cpu)?,
        ),
        (
            "library.jets".to_string(),
            Tensor::from_slice(&j.jets, &[j.n_jets, 4], Device::Cpu)?,
        ),
    ];
    let mut meta = HashMap::new();
    meta.insert("jetgen_model".into(), FAMILY.into());
    meta.insert("jetgen_version".into(), crate::VERSION.into());
    meta.insert("k".into(), lib.k.to_string());
    meta.insert("conditions".into(), condition_names(&lib.conditions));
    meta.insert("n_particles".into(), j.n_particles.to_string());
    store::save_tensors(path, &tensors, &meta)
}

/// Load a library checkpoint (checked: family, shapes, valid jets, k and conditions).
pub fn load_library(path: &Path) -> Result<Library> {
    let (mut tensors, meta) = store::load_tensors(path)?;
    if meta.get("jetgen_model").map(String::as_str) != Some(FAMILY) {
        return Err(Error::file(
            path,
            "not a jetgen library checkpoint (metadata jetgen_model != library)",
        ));
    }
    let k: usize = meta
        .get("k")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::file(path, "checkpoint has no valid k"))?;
    let conditions = meta
        .get("conditions")
        .ok_or_else(|| Error::file(path, "checkpoint has no conditions"))?
        .split(',')
        .map(LibraryCondition::parse)
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::file(path, e.to_string()))?;
    let mut take = |name: &str| {
        tensors
            .remove(name)
            .ok_or_else(|| Error::file(path, format!("missing tensor '{name}'")))
    };
    let (particles, jets) = (take("library.particles")?, take("library.jets")?);
    let (ps, js) = (particles.shape().to_vec(), jets.shape().to_vec());
    if ps.len() != 3 || ps[2] != 4 || js != [ps[0], 4] {
        return Err(Error::file(
            path,
            format!("library tensors have shapes {ps:?} and {js:?}, expected [N, P, 4] and [N, 4]"),
        ));
    }
    let data = JetNetData::new(
        particles.to_vec()?,
        jets.to_vec()?,
        ps[0],
        ps[1],
        &path.display().to_string(),
    )?;
    Library::new(data, &conditions, k).map_err(|e| Error::file(path, e.to_string()))
}

/// Write the benchmark library: 20,000 seeded synthetic 30-particle jets (Gaussian
/// η, φ with σ = 0.1, exponential pT fractions, 20–30 real particles), k = 2 over mass and
/// multiplicity. Generation speed depends on the index and the transport, not on the
/// physics, so `jetgen bench generate` times this.
pub fn write_bench_checkpoint(path: &Path, _device: Device) -> Result<()> {
    let (n, p) = (20_000, 30);
    let mut rng = crate::rng::Rng::new(7);
    let mut unit = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut particles = vec![0f32; n * p * 4];
    for jet in particles.chunks_exact_mut(p * 4) {
        let real = 20 + (unit() * 11.0) as usize;
        let mut pts: Vec<f64> = (0..real).map(|_| -unit().ln()).collect();
        let total: f64 = pts.iter().sum();
        pts.iter_mut().for_each(|v| *v /= total);
        pts.sort_by(|a, b| b.total_cmp(a));
        for (row, pt) in jet.chunks_exact_mut(4).zip(pts) {
            let gauss =
                |u1: f64, u2: f64| (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let (a, b, c, d) = (unit(), unit(), unit(), unit());
            row.copy_from_slice(&[
                (0.1 * gauss(a, b)) as f32,
                (0.1 * gauss(c, d)) as f32,
                pt as f32,
                1.0,
            ]);
        }
    }
    let mut data = JetNetData::new(particles, vec![0f32; n * 4], n, p, "bench library")?;
    for i in 0..n {
        let rows = &data.particles[i * p * 4..(i + 1) * p * 4];
        let p4 = crate::physics::jet_p4(rows, 4);
        let count = rows.chunks_exact(4).filter(|r| r[3] != 0.0).count();
        data.jets[i * 4..i * 4 + 4].copy_from_slice(&[
            p4.pt() as f32,
            p4.eta() as f32,
            p4.mass() as f32,
            count as f32,
        ]);
    }
    let lib = Library::new(
        data,
        &[LibraryCondition::Mass, LibraryCondition::Multiplicity],
        2,
    )?;
    save_library(path, &lib)
}
