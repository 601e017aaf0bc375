//! JetNet-format jets: `particle_features [N, P, 4]` = [η_rel, φ_rel, pT_rel, mask] and
//! `jet_features [N, 4]` = [pT (GeV), η, mass (GeV), num_particles], float32, as in the
//! JetNet HDF5 files (and our ../shared/data/jetnet-like copies). Read with a pure-Rust HDF5
//! reader (no libhdf5 to clash with a C++ host's), or from a pair of `.npy` files; written
//! back in the same HDF5 layout (gzip-compressed, atomically).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The most a compressed HDF5 dataset may expand over its file's size (deflate's limit is
/// about 1032×): a larger declared shape is a corrupt header, refused before reading.
pub const MAX_EXPANSION: u64 = 1100;

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
        let mut d = JetNetData {
            particles,
            jets,
            n_jets,
            n_particles,
        };
        d.validate(source)?;
        d.apply_mask();
        Ok(d)
    }

    /// The mask defines the particles: the features of every particle with mask 0 are set
    /// to 0, so no metric, plot or model can count a padded entry as a particle. Returns
    /// how many padded entries had non-zero features. [`JetNetData::new`] (every reader and
    /// generator) calls it.
    pub fn apply_mask(&mut self) -> usize {
        let mut cleared = 0;
        for p in self.particles.chunks_exact_mut(4) {
            if p[3] == 0.0 && p[..3].iter().any(|&v| v != 0.0) {
                p[..3].fill(0.0);
                cleared += 1;
            }
        }
        cleared
    }

    /// Particles of jet `i` with mask 1.
    pub fn multiplicity(&self, i: usize) -> usize {
        let p = self.n_particles;
        self.particles[i * p * 4..(i + 1) * p * 4]
            .chunks_exact(4)
            .filter(|r| r[3] != 0.0)
            .count()
    }

    /// Indices of the jets with at least one particle (mask 1).
    pub fn non_empty_jets(&self) -> Vec<usize> {
        (0..self.n_jets)
            .filter(|&i| self.multiplicity(i) > 0)
            .collect()
    }

    /// Notes about values that are legal but unusual, for the reader to print as warnings:
    /// |φ_rel| > π (relative angles are normally wrapped into [−π, π]).
    pub fn unusual_values(&self) -> Vec<String> {
        let wide = self
            .particles
            .chunks_exact(4)
            .filter(|p| p[3] != 0.0 && p[1].abs() > std::f32::consts::PI)
            .count();
        match wide {
            0 => vec![],
            k => vec![format!(
                "{k} particles have |φ_rel| > π (not wrapped into [−π, π]?); used as given"
            )],
        }
    }

    /// Shapes agree, at least one jet, every value finite, masks are 0/1, no particle
    /// (mask 1) with a negative pT_rel.
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
        if let Some(k) = self
            .particles
            .chunks_exact(4)
            .position(|p| p[3] != 0.0 && p[2] < 0.0)
        {
            return bad(format!(
                "particle {} of jet {} has a negative pT_rel ({}): transverse momenta are ≥ 0",
                k % self.n_particles,
                k / self.n_particles,
                self.particles[4 * k + 2]
            ));
        }
        Ok(())
    }

    /// Print [`JetNetData::unusual_values`] as warnings naming `source`.
    fn warn_unusual(&self, source: &Path) {
        for w in self.unusual_values() {
            eprintln!("warning: {}: {w}", source.display());
        }
    }

    /// Read a JetNet HDF5 file (`.hdf5`/`.h5`), or `X_particle_features.npy` together with
    /// `X_jet_features.npy` when given either `.npy` file.
    /// `builtin:g` (or `builtin:t`) is the sample embedded in the library
    /// ([`crate::data::builtin`]), readable from any working directory.
    pub fn read(path: &Path) -> Result<Self> {
        if let Some(name) = crate::data::builtin::builtin_name(path) {
            return crate::data::builtin::read_builtin(name);
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Self::read_npy_pair(path),
            _ => Self::read_hdf5(path),
        }
    }

    /// Read the two datasets of a JetNet HDF5 file. A dataset whose declared shape holds
    /// more bytes than the file could decompress to (deflate expands at most
    /// [`MAX_EXPANSION`]×) is refused before it is read, and a parser failure on a
    /// corrupt file is an error, never a panic.
    pub fn read_hdf5(path: &Path) -> Result<Self> {
        let meta =
            std::fs::metadata(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
        if meta.len() == 0 {
            return Err(Error::file(path, "file is empty"));
        }
        let d = crate::quiet_panic::catch_quietly(|| {
            let file = hdf5_pure::File::open(path)
                .map_err(|e| Error::file(path, format!("not a readable HDF5 file: {e}")))?;
            Self::parse_hdf5(file, path, meta.len())
        })
        .unwrap_or_else(|panic| {
            Err(Error::file(
                path,
                format!("not a readable HDF5 file (the parser failed: {panic})"),
            ))
        })?;
        d.warn_unusual(path);
        Ok(d)
    }

    /// A JetNet HDF5 file held in memory (`name` for messages), checked like
    /// [`JetNetData::read_hdf5`].
    pub fn read_hdf5_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let path = Path::new(name);
        if bytes.is_empty() {
            return Err(Error::file(path, "file is empty"));
        }
        crate::quiet_panic::catch_quietly(|| {
            let file = hdf5_pure::File::from_bytes(bytes.to_vec())
                .map_err(|e| Error::file(path, format!("not a readable HDF5 file: {e}")))?;
            Self::parse_hdf5(file, path, bytes.len() as u64)
        })
        .unwrap_or_else(|panic| {
            Err(Error::file(
                path,
                format!("not a readable HDF5 file (the parser failed: {panic})"),
            ))
        })
    }

    /// The jets of an open HDF5 `file` of `file_len` bytes called `path`.
    fn parse_hdf5(file: hdf5_pure::File, path: &Path, file_len: u64) -> Result<Self> {
        let limit = (file_len as u128) * MAX_EXPANSION as u128 + (1 << 20);
        let read = |name: &str, ndim: usize, last: usize| -> Result<(Vec<f32>, Vec<usize>)> {
            let ds = file
                .dataset(name)
                .map_err(|e| Error::file(path, format!("missing dataset '{name}': {e}")))?;
            let shape64 = ds
                .shape()
                .map_err(|e| Error::file(path, format!("dataset '{name}': {e}")))?;
            if shape64.len() != ndim || shape64[ndim - 1] != last as u64 {
                return Err(Error::file(
                    path,
                    format!(
                        "dataset '{name}' has shape {shape64:?}, expected {} dims ending in {last}",
                        ndim
                    ),
                ));
            }
            let bytes = shape64
                .iter()
                .try_fold(4u128, |acc, &d| acc.checked_mul(d as u128));
            if bytes.is_none_or(|b| b > limit) {
                return Err(Error::file(
                    path,
                    format!(
                        "dataset '{name}' declares shape {shape64:?}, more than a {file_len}-byte                          file can hold (corrupt header?)"
                    ),
                ));
            }
            let shape: Vec<usize> = shape64.iter().map(|&d| d as usize).collect();
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
        let d = Self::new(particles, jets, ps[0], ps[1], &pf.display().to_string())?;
        d.warn_unusual(&pf);
        Ok(d)
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

    /// The jets of every part, in order, as one set; the parts must have the same number of
    /// particles per jet.
    pub fn concat(parts: Vec<JetNetData>) -> Result<JetNetData> {
        let mut it = parts.into_iter();
        let Some(mut out) = it.next() else {
            return Err(Error::invalid("no jets to concatenate"));
        };
        for part in it {
            if part.n_particles != out.n_particles {
                return Err(Error::invalid(format!(
                    "cannot join jets of {} and {} particles",
                    out.n_particles, part.n_particles
                )));
            }
            out.particles.extend_from_slice(&part.particles);
            out.jets.extend_from_slice(&part.jets);
            out.n_jets += part.n_jets;
        }
        Ok(out)
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

/// Read a `.npy` array as f32 (from `<f4` or `<f8`) with its shape, in C (row-major)
/// order: a Fortran-order file (`fortran_order: True`, column-major) is transposed on read,
/// so both layouts give the same array. A header declaring more values than the file
/// holds is refused before anything is allocated for them.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    crate::quiet_panic::catch_quietly(|| parse_npy_f32(path, &bytes)).unwrap_or_else(|panic| {
        Err(Error::file(
            path,
            format!("not a valid .npy file (the parser failed: {panic})"),
        ))
    })
}

/// [`read_npy_f32`] of the file's bytes.
fn parse_npy_f32(path: &Path, bytes: &[u8]) -> Result<(Vec<f32>, Vec<usize>)> {
    check_npy_preamble(path, bytes)?;
    let arr = npyz::NpyFile::new(bytes)
        .map_err(|e| Error::file(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = arr
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let descr = match arr.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(Error::file(path, format!("unsupported dtype {other:?}"))),
    };
    let width = match descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        d => {
            return Err(Error::file(
                path,
                format!("dtype {d}: expected float32 or float64"),
            ))
        }
    };
    let declared = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(width));
    match declared {
        Some(b) if b <= bytes.len() => {}
        _ => {
            return Err(Error::file(
                path,
                format!(
                    "header declares shape {shape:?} of {descr}, more than the file's {} bytes                      hold (truncated or corrupt)",
                    bytes.len()
                ),
            ))
        }
    }
    let fortran = arr.order() == npyz::Order::Fortran;
    let data = match width {
        4 => arr.into_vec::<f32>(),
        _ => arr
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
    }
    .map_err(|e| Error::file(path, format!("truncated or corrupt data: {e}")))?;
    let data = if fortran {
        fortran_to_c_order(&data, &shape)
    } else {
        data
    };
    Ok((data, shape))
}

/// The `.npy` preamble: the magic string, a known version (1, 2 or 3) and a header length
/// (2 bytes little-endian in version 1, 4 in 2 and 3) that fits in the file — checked
/// before the parser allocates a buffer of that length.
fn check_npy_preamble(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |msg: String| Err(Error::file(path, format!("not a valid .npy file: {msg}")));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return bad("no \\x93NUMPY magic string".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return bad(format!("unknown format version {v}")),
    };
    if len > bytes.len() - start {
        return bad(format!(
            "header of {len} bytes in a {}-byte file",
            bytes.len()
        ));
    }
    Ok(())
}

/// The row-major copy of `data`, a column-major (Fortran-order) array of `shape`: element
/// (i₀, …, i_{k−1}) sits at Σ i_j·Π_{l<j} shape_l in `data`.
pub fn fortran_to_c_order(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut strides = vec![1usize; shape.len()];
    for j in 1..shape.len() {
        strides[j] = strides[j - 1] * shape[j - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..data.len() {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(data[at]);
        // the next row-major index: the last axis fastest
        for j in (0..shape.len()).rev() {
            index[j] += 1;
            if index[j] < shape[j] {
                break;
            }
            index[j] = 0;
        }
    }
    out
}
