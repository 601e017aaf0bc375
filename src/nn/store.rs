//! Save and load named tensors in the safetensors format, so PyTorch users can open our
//! checkpoints (`safetensors.torch.load_file`) and we can load theirs (`save_file` of a
//! state dict). Writes are atomic: a temporary file is renamed into place.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::nn::Param;
use crate::tensor::Tensor;

/// Write `tensors` (name → tensor, f32 on disk) plus string `metadata` to `path` atomically.
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data = t.to_vec()?;
        bytes.push((
            name.clone(),
            t.shape().to_vec(),
            bytemuck::cast_slice(&data).to_vec(),
        ));
    }
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::file(path, format!("{e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    let serialized = safetensors::serialize(views, &meta)
        .map_err(|e| Error::file(path, format!("serialize: {e}")))?;
    write_atomic(path, &serialized)
}

/// Atomic file writes now live in [`crate::io`]; kept here for existing callers.
pub use crate::io::write_atomic;

/// Read every tensor of a safetensors file as CPU f32 (F32, F64, F16, BF16, I64, I32, U8 and
/// BOOL are converted), with the file's metadata.
/// A file the parser cannot make sense of is an error, never a panic.
pub fn load_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    crate::quiet_panic::catch_quietly(|| parse_tensors(path, &bytes)).unwrap_or_else(|panic| {
        Err(Error::file(
            path,
            format!("not a valid safetensors file (the parser failed: {panic})"),
        ))
    })
}

/// [`load_tensors`] of the file's bytes.
fn parse_tensors(
    path: &Path,
    bytes: &[u8],
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::file(path, format!("bad header: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::U8 | Dtype::BOOL => data.iter().map(|&b| b as f32).collect(),
            other => {
                return Err(Error::file(
                    path,
                    format!("tensor '{name}' has unsupported dtype {other:?}"),
                ))
            }
        };
        out.insert(
            name.to_string(),
            Tensor::from_cpu_vec(values, view.shape())?,
        );
    }
    let meta = meta.metadata().clone().unwrap_or_default();
    Ok((out, meta))
}

/// Save parameters by name.
pub fn save_params(
    path: &Path,
    params: &[Param],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = params.iter().map(|p| (p.name(), p.value())).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _)) = tensors.iter().find(|(n, _)| !seen.insert(n.clone())) {
        return Err(Error::invalid(format!("two parameters are named '{dup}'")));
    }
    save_tensors(path, &tensors, metadata)
}

/// Load values into `params` by name (placed on each parameter's current device). Every
/// parameter must be present with the right shape; extra tensors in the file are an error
/// when `strict`.
pub fn load_params(path: &Path, params: &[Param], strict: bool) -> Result<HashMap<String, String>> {
    let (mut tensors, meta) = load_tensors(path)?;
    for p in params {
        let name = p.name();
        let t = tensors
            .remove(&name)
            .ok_or_else(|| Error::file(path, format!("missing tensor '{name}'")))?;
        let cur = p.value();
        if t.shape() != cur.shape() {
            return Err(Error::file(
                path,
                format!(
                    "tensor '{name}' has shape {:?}, model expects {:?}",
                    t.shape(),
                    cur.shape()
                ),
            ));
        }
        let t = match cur.dtype() {
            crate::tensor::DType::F64 => t.to_dtype(crate::tensor::DType::F64)?,
            _ => t.to_device(cur.device())?,
        };
        p.set_value(t);
    }
    if strict && !tensors.is_empty() {
        let mut extra: Vec<_> = tensors.keys().cloned().collect();
        extra.sort();
        return Err(Error::file(
            path,
            format!("unexpected tensors: {}", extra.join(", ")),
        ));
    }
    Ok(meta)
}
