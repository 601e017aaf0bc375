//! The one checkpoint validator every model family's loader goes through, so a hostile or
//! damaged checkpoint is a clean [`Error`] naming the problem — never a panic, an
//! allocation far beyond the file's size, or a model that loads and silently produces
//! plausible-looking jets from NaN weights or a zero standard deviation.
//!
//! [`CheckpointFile::open`] reads a safetensors checkpoint and checks what holds for every
//! family: it is a jetgen checkpoint of the expected family and every value of every tensor
//! is finite. A family's loader then takes its metadata and tensors through the typed
//! accessors, each of which validates what it hands out:
//!
//! * [`CheckpointFile::size`] — a metadata integer in a stated range (call it for every
//!   size — bins, layers, hidden width, particles — *before* allocating anything from it);
//! * [`CheckpointFile::ensure_room`] — an architecture the metadata declares needs at least
//!   as many values as the file holds (a 1 kB file cannot declare a 10⁹-parameter model);
//! * [`CheckpointFile::take`] — a tensor of an exact shape;
//! * [`CheckpointFile::take_scales`] — a standardiser's scales: positive and finite;
//! * [`CheckpointFile::finish`] — no tensor left over that the model did not use.
//!
//! `jetgen sample`, `jetgen eval --model`, the benches and the C API's `jetgen_model_load`
//! all load through [`crate::runs::registry::load_generator`], which runs the family-
//! independent checks of [`CheckpointFile::open`] before any family's loader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::nn::store;
use crate::tensor::Tensor;

/// A checkpoint read into memory with its family-independent checks passed; the family's
/// loader takes its parts through the validating accessors.
pub struct CheckpointFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
    values: usize,
}

impl std::fmt::Debug for CheckpointFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CheckpointFile({}, {} tensors, {} values)",
            self.path.display(),
            self.tensors.len(),
            self.values
        )
    }
}

impl CheckpointFile {
    /// Read `path` (a safetensors file) and check that its `jetgen_model` metadata is
    /// `family` (any family when `None`) and that every tensor value is finite.
    pub fn open(path: &Path, family: Option<&str>) -> Result<Self> {
        let (tensors, meta) = store::load_tensors(path)?;
        if let Some(family) = family {
            match meta.get("jetgen_model") {
                Some(f) if f == family => {}
                Some(f) => {
                    return Err(Error::file(
                        path,
                        format!("is a '{f}' checkpoint, not a '{family}' one"),
                    ))
                }
                None => {
                    return Err(Error::file(
                        path,
                        format!("not a jetgen {family} checkpoint (no jetgen_model metadata)"),
                    ))
                }
            }
        }
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut values = 0usize;
        for name in names {
            let v = tensors[name].to_vec()?;
            check_finite(path, &format!("tensor '{name}'"), &v)?;
            values += v.len();
        }
        Ok(CheckpointFile {
            path: path.to_path_buf(),
            tensors,
            meta,
            values,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total number of values over all tensors still held and already taken.
    pub fn values(&self) -> usize {
        self.values
    }

    /// All metadata strings.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.meta
    }

    /// The metadata string `key`; missing is an error naming it.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::file(&self.path, format!("checkpoint has no '{key}' metadata")))
    }

    /// The metadata string `key` parsed as JSON.
    pub fn meta_json(&self, key: &str) -> Result<serde_json::Value> {
        serde_json::from_str(self.meta(key)?)
            .map_err(|e| Error::file(&self.path, format!("metadata '{key}' is not JSON: {e}")))
    }

    /// The metadata integer `key`, which must lie in `lo..=hi`.
    pub fn size(&self, key: &str, lo: usize, hi: usize) -> Result<usize> {
        let text = self.meta(key)?;
        let v: usize = text.trim().parse().map_err(|_| {
            Error::file(
                &self.path,
                format!("metadata '{key}' = '{text}' is not a size"),
            )
        })?;
        size_in(&self.path, key, v, lo, hi)
    }

    /// An error unless the file holds at least `needed` values: the parameters an
    /// architecture declared by the metadata implies (a lower bound is enough), computed
    /// by the caller with saturating arithmetic. Call it before building the model, so a
    /// small file declaring a huge model is refused instead of allocated.
    pub fn ensure_room(&self, what: &str, needed: u128) -> Result<()> {
        ensure_room_in(&self.path, what, needed, self.values)
    }

    /// True when the file has a tensor called `name` not yet taken.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Remove and return tensor `name`, which must have exactly `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let got = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::file(&self.path, format!("missing tensor '{name}'")))?
            .shape();
        if got != shape {
            return Err(Error::file(
                &self.path,
                format!("tensor '{name}' has shape {got:?}, expected {shape:?}"),
            ));
        }
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::file(&self.path, format!("missing tensor '{name}'")))
    }

    /// Remove and return tensor `name` as a vector of `len` values (any shape of that size
    /// is refused unless it is one-dimensional).
    pub fn take_vec(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.take(name, &[len])?.to_vec()
    }

    /// Remove and return one-dimensional tensor `name` of any length ≥ `min_len`.
    pub fn take_any_vec(&mut self, name: &str, min_len: usize) -> Result<Vec<f32>> {
        let len = match self.tensors.get(name).map(|t| t.shape().to_vec()) {
            Some(s) if s.len() == 1 => s[0],
            Some(s) => {
                return Err(Error::file(
                    &self.path,
                    format!("tensor '{name}' has shape {s:?}, expected one dimension"),
                ))
            }
            None => return Err(Error::file(&self.path, format!("missing tensor '{name}'"))),
        };
        if len < min_len {
            return Err(Error::file(
                &self.path,
                format!("tensor '{name}' has {len} values, expected at least {min_len}"),
            ));
        }
        self.take_vec(name, len)
    }

    /// Remove and return the `len` scales of a standardiser (standard deviations):
    /// every one positive and finite, since data are divided by them.
    pub fn take_scales(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let v = self.take_vec(name, len)?;
        check_scales(&self.path, &format!("tensor '{name}'"), &v)?;
        Ok(v)
    }

    /// An error naming every tensor the loader did not take (a checkpoint of another
    /// architecture that happens to contain the expected names).
    pub fn finish(self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let mut extra: Vec<&String> = self.tensors.keys().collect();
        extra.sort();
        let shown: Vec<&str> = extra.iter().take(5).map(|s| s.as_str()).collect();
        Err(Error::file(
            &self.path,
            format!(
                "{} unexpected tensors ({}{})",
                extra.len(),
                shown.join(", "),
                if extra.len() > 5 { ", …" } else { "" }
            ),
        ))
    }
}

/// `value` of the size `what` when it lies in `lo..=hi`, else an error naming both.
pub fn size_in(path: &Path, what: &str, value: usize, lo: usize, hi: usize) -> Result<usize> {
    if value < lo || value > hi {
        return Err(Error::file(
            path,
            format!("checkpoint {what} = {value} is outside {lo}..={hi}"),
        ));
    }
    Ok(value)
}

/// An error naming the first non-finite value of `values` and how many there are.
pub fn check_finite(path: &Path, what: &str, values: &[f32]) -> Result<()> {
    if let Some(first) = values.iter().position(|v| !v.is_finite()) {
        let count = values.iter().filter(|v| !v.is_finite()).count();
        return Err(Error::file(
            path,
            format!(
                "{what} has {count} NaN/inf values (first at flat index {first}: {})",
                values[first]
            ),
        ));
    }
    Ok(())
}

/// An error unless every scale is positive and finite.
pub fn check_scales(path: &Path, what: &str, scales: &[f32]) -> Result<()> {
    if let Some(k) = scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::file(
            path,
            format!(
                "{what}: scale {k} is {}, a standardiser's scales must be positive and finite",
                scales[k]
            ),
        ));
    }
    Ok(())
}

/// [`CheckpointFile::ensure_room`] for a loader that read its tensors itself: an error unless
/// `available` (the values the file holds) covers the `needed` parameters of the architecture
/// its metadata declares. Call it before building the model.
pub fn ensure_room_in(path: &Path, what: &str, needed: u128, available: usize) -> Result<()> {
    if needed > available as u128 {
        return Err(Error::file(
            path,
            format!(
                "the {what} its metadata declares needs at least {needed} parameters, \
                 but the file holds {available} values (corrupt metadata?)"
            ),
        ));
    }
    Ok(())
}

/// The values held by a checkpoint's tensors.
pub fn values_in(tensors: &HashMap<String, Tensor>) -> usize {
    tensors.values().map(|t| t.numel()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;

    fn write(path: &Path, tensors: &[(&str, Vec<f32>)], meta: &[(&str, &str)]) {
        let t: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    Tensor::from_slice(v, &[v.len()], Device::Cpu).unwrap(),
                )
            })
            .collect();
        let m = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        store::save_tensors(path, &t, &m).unwrap();
    }

    #[test]
    fn the_validator_refuses_what_no_model_can_use() {
        let dir = std::env::temp_dir().join(format!("jetgen-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.safetensors");
        let meta = [("jetgen_model", "toy"), ("bins", "8"), ("huge", "1e9")];
        write(&p, &[("w", vec![1.0, 2.0]), ("std", vec![1.0, 0.5])], &meta);
        let mut c = CheckpointFile::open(&p, Some("toy")).unwrap();
        assert_eq!(c.values(), 4);
        assert_eq!(c.size("bins", 2, 64).unwrap(), 8);
        assert!(c
            .size("bins", 9, 64)
            .unwrap_err()
            .to_string()
            .contains("outside 9..=64"));
        assert!(c
            .size("huge", 1, 10)
            .unwrap_err()
            .to_string()
            .contains("not a size"));
        assert!(c
            .size("layers", 1, 10)
            .unwrap_err()
            .to_string()
            .contains("'layers'"));
        assert!(c.ensure_room("toy", 4).is_ok());
        assert!(c
            .ensure_room("toy", 5)
            .unwrap_err()
            .to_string()
            .contains("holds 4"));
        assert!(c
            .take("w", &[3])
            .unwrap_err()
            .to_string()
            .contains("shape [2]"));
        assert_eq!(c.take_scales("std", 2).unwrap(), vec![1.0, 0.5]);
        assert!(c.finish().unwrap_err().to_string().contains("(w)"));
        // another family, no family
        let e = CheckpointFile::open(&p, Some("flow"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'toy' checkpoint"), "{e}");
        write(&p, &[("w", vec![1.0])], &[]);
        assert!(CheckpointFile::open(&p, Some("toy")).is_err());
        assert!(CheckpointFile::open(&p, None).is_ok());
        // NaN / inf anywhere
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            write(&p, &[("a", vec![0.0]), ("w", vec![1.0, bad])], &meta);
            let e = CheckpointFile::open(&p, Some("toy"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("tensor 'w' has 1 NaN/inf values"), "{e}");
        }
        // zero, negative, NaN scales
        for bad in [0.0, -1.0, -0.0] {
            write(&p, &[("std", vec![1.0, bad])], &meta);
            let mut c = CheckpointFile::open(&p, None).unwrap();
            let e = c.take_scales("std", 2).unwrap_err().to_string();
            assert!(e.contains("scale 1") && e.contains("positive"), "{e}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
