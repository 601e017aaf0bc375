//! JetNet-format jets: `particle_features [N, P, 4]` = [η_rel, φ_rel, pT_rel, mask] and
//! `jet_features [N, 4]` = [pT (GeV), η, mass (GeV), num_particles], float32, as in the
//! JetNet HDF5 files (and our ../shared/data/jetnet-like copies). Read with a pure-Rust HDF5
//! reader (no libhdf5 to clash with a C++ host's), or from a pair of `.npy` files; written
//! back in the same HDF5 layout (gzip-compressed, atomically).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Names of the particle feature columns.
pub const PARTICLE_FEATURES: [&str; 4] = ["etarel", "phirel", "ptrel", "mask"];
/// Names of the jet feature columns.
pub const JET_FEATURES: [&str; 4] = ["pt", "eta", "mass", "num_particles"];

/// A set of jets in JetNet layout, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct JetNetData {
    /// `[n_jets, n_particles, 4]` row-major: η_rel, φ_rel, pT_rel, mask.
    pub particles: Vec<f32>,
    /// `[n_jets, 4]`: pT, η, mass, num_particles.
    pub jets: Vec<f32>,
    pub n_jets: usize,
    pub n_particles: usize,
}

impl JetNetData {
    /// Build from arrays, validating shapes and values (see [`JetNetData::validate`]).
    pub fn new(
        particles: Vec<f32>,
        jets: Vec<f32>,
        n_jets: usize,
        n_particles: usize,
        source: &str,
    ) -> Result<Self> {
        let d = JetNetData {
            particles,
            jets,
            n_jets,
            n_particles,
        };
        d.validate(source)?;
        Ok(d)
    }

    /// Shapes agree, at least one jet, every value finite, masks are 0/1.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = |msg: String| {
            Err(Error::File {
                path: source.to_string(),
                msg,
            })
        };
        if self.n_jets == 0 || self.n_particles == 0 {
            return bad("no jets (empty dataset)".into());
        }
        if self.particles.len() != self.n_jets * self.n_particles * 4 {
            return bad(format!(
                "particle_features has {} values, expected [{}, {}, 4]",
                self.particles.len(),
                self.n_jets,
                self.n_particles
            ));
        }
        if self.jets.len() != self.n_jets * 4 {
            return bad(format!(
                "jet_features has {} values, expected [{}, 4]",
                self.jets.len(),
                self.n_jets
            ));
        }
        for (name, data) in [
            ("particle_features", &self.particles),
            ("jet_features", &self.jets),
        ] {
            let count = data.iter().filter(|v| !v.is_finite()).count();
            if count > 0 {
                let first = data.iter().position(|v| !v.is_finite()).unwrap();
                return bad(format!(
                    "{name} contains {count} NaN/inf values (first at flat index {first})"
                ));
            }
        }
        if let Some(k) = self
            .particles
            .chunks_exact(4)
            .position(|p| p[3] != 0.0 && p[3] != 1.0)
        {
            return bad(format!(
                "mask of particle {} of jet {} is {}, not 0 or 1",
                k % self.n_particles,
                k / self.n_particles,
                self.particles[4 * k + 3]
            ));
        }
        Ok(())
    }

    /// Read a JetNet HDF5 file (`.hdf5`/`.h5`), or `X_particle_features.npy` together with
    /// `X_jet_features.npy` when given either `.npy` file.
    pub fn read(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Self::read_npy_pair(path),
            _ => Self::read_hdf5(path),
        }
    }

    /// Read the two datasets of a JetNet HDF5 file.
    pub fn read_hdf5(path: &Path) -> Result<Self> {
        let meta =
            std::fs::metadata(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
        if meta.len() == 0 {
            return Err(Error::file(path, "file is empty"));
        }
        let file = hdf5_pure::File::open(path)
            .map_err(|e| Error::file(path, format!("not a readable HDF5 file: {e}")))?;
        let read = |name: &str, ndim: usize, last: usize| -> Result<(Vec<f32>, Vec<usize>)> {
            let ds = file
                .dataset(name)
                .map_err(|e| Error::file(path, format!("missing dataset '{name}': {e}")))?;
            let shape: Vec<usize> = ds
                .shape()
                .map_err(|e| Error::file(path, format!("dataset '{name}': {e}")))?
                .iter()
                .map(|&d| d as usize)
                .collect();
            if shape.len() != ndim || shape[ndim - 1] != last {
                return Err(Error::file(
                    path,
                    format!(
                        "dataset '{name}' has shape {shape:?}, expected {} dims ending in {last}",
                        ndim
                    ),
                ));
            }
            let data = ds.read::<f32>().map_err(|e| {
                Error::file(
                    path,
                    format!("cannot read dataset '{name}' (truncated or corrupt?): {e}"),
                )
            })?;
            Ok((data, shape))
        };
        let (particles, ps) = read("particle_features", 3, 4)?;
        let (jets, js) = read("jet_features", 2, 4)?;
        if ps[0] != js[0] {
            return Err(Error::file(
                path,
                format!(
                    "particle_features has {} jets but jet_features {}",
                    ps[0], js[0]
                ),
            ));
        }
        Self::new(particles, jets, ps[0], ps[1], &path.display().to_string())
    }

    /// Read `<stem>_particle_features.npy` and `<stem>_jet_features.npy` (float32 or float64).
    pub fn read_npy_pair(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = name
            .trim_end_matches(".npy")
            .trim_end_matches("_particle_features")
            .trim_end_matches("_jet_features");
        let dir = path.parent().unwrap_or(Path::new("."));
        let pf: PathBuf = dir.join(format!("{stem}_particle_features.npy"));
        let jf: PathBuf = dir.join(format!("{stem}_jet_features.npy"));
        let (particles, ps) = read_npy_f32(&pf)?;
        let (jets, js) = read_npy_f32(&jf)?;
        if ps.len() != 3 || ps[2] != 4 {
            return Err(Error::file(
                &pf,
                format!("shape {ps:?}, expected [N, P, 4]"),
            ));
        }
        if js.len() != 2 || js[1] != 4 || js[0] != ps[0] {
            return Err(Error::file(
                &jf,
                format!("shape {js:?}, expected [{}, 4]", ps[0]),
            ));
        }
        Self::new(particles, jets, ps[0], ps[1], &pf.display().to_string())
    }

    /// Write in JetNet HDF5 layout (gzip level 4, chunked), via a temporary file renamed into
    /// place, so a crash never leaves a half-written file behind.
    pub fn write_hdf5(&self, path: &Path) -> Result<()> {
        self.validate(&path.display().to_string())?;
        let mut fb = hdf5_pure::FileBuilder::new();
        let (n, p) = (self.n_jets as u64, self.n_particles as u64);
        let chunk = n.clamp(1, 1024);
        fb.create_dataset("particle_features")
            .with_f32_data(&self.particles)
            .with_shape(&[n, p, 4])
            .with_chunks(&[chunk, p, 4])
            .with_deflate(4);
        fb.create_dataset("jet_features")
            .with_f32_data(&self.jets)
            .with_shape(&[n, 4])
            .with_chunks(&[chunk, 4])
            .with_deflate(4);
        let bytes = fb
            .finish()
            .map_err(|e| Error::file(path, format!("cannot encode HDF5: {e}")))?;
        crate::io::write_atomic(path, &bytes)
    }

    /// A checksum of the jets' contents (shape and every value's bits; FNV-1a, 64 bits, as
    /// `fnv1a64:<hex>`): equal for the same jets whatever the file format, different for
    /// other jets. Runs record it, so a repeat can tell when its data differ.
    pub fn checksum(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(&(self.n_jets as u64).to_le_bytes());
        eat(&(self.n_particles as u64).to_le_bytes());
        for v in self.particles.iter().chain(&self.jets) {
            eat(&v.to_bits().to_le_bytes());
        }
        format!("fnv1a64:{h:016x}")
    }

    /// The jets `idx` (in that order) as a new set; an index out of range is an error.
    pub fn select(&self, idx: &[usize]) -> Result<JetNetData> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.n_jets) {
            return Err(Error::invalid(format!(
                "jet index {bad} out of range for {} jets",
                self.n_jets
            )));
        }
        let p = self.n_particles;
        let mut particles = Vec::with_capacity(idx.len() * p * 4);
        let mut jets = Vec::with_capacity(idx.len() * 4);
        for &i in idx {
            particles.extend_from_slice(&self.particles[i * p * 4..(i + 1) * p * 4]);
            jets.extend_from_slice(self.jet(i));
        }
        JetNetData::new(particles, jets, idx.len(), p, "subset")
    }

    /// Particle `j` of jet `i` as [η_rel, φ_rel, pT_rel, mask].
    pub fn particle(&self, i: usize, j: usize) -> &[f32] {
        let k = (i * self.n_particles + j) * 4;
        &self.particles[k..k + 4]
    }

    /// Jet `i`'s features [pT, η, mass, num_particles].
    pub fn jet(&self, i: usize) -> &[f32] {
        &self.jets[i * 4..i * 4 + 4]
    }

    /// Reorders every jet's particles by decreasing pT_rel (stable; padded rows, pT = 0, end
    /// up last), the order JetNet files and the flows assume.
    pub fn sort_by_pt(&mut self) {
        let p = self.n_particles;
        for jet in self.particles.chunks_exact_mut(p * 4) {
            let mut rows: Vec<[f32; 4]> = jet
                .chunks_exact(4)
                .map(|r| [r[0], r[1], r[2], r[3]])
                .collect();
            rows.sort_by(|a, b| b[2].total_cmp(&a[2]));
            for (dst, src) in jet.chunks_exact_mut(4).zip(&rows) {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// Read a `.npy` array as f32 (from `<f4` or `<f8`) with its shape.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let arr = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| Error::file(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = arr.shape().iter().map(|&d| d as usize).collect();
    let descr = match arr.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(Error::file(path, format!("unsupported dtype {other:?}"))),
    };
    let data = match descr.as_str() {
        "<f4" => arr.into_vec::<f32>(),
        "<f8" => arr
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        d => {
            return Err(Error::file(
                path,
                format!("dtype {d}: expected float32 or float64"),
            ))
        }
    }
    .map_err(|e| Error::file(path, format!("truncated or corrupt data: {e}")))?;
    Ok((data, shape))
}
