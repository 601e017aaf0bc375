//! File helpers shared by every writer: atomic writes (a temporary file in the target's
//! directory, renamed into place) and JSON files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A temporary path next to `path` that no other writer uses: `.<name>.<pid>.<n>.tmp`.
fn temporary_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Write `data` to `path` atomically: into a uniquely named temporary file in the same
/// directory, flushed to disk, then renamed over `path`. Readers see the old file or the new
/// one, never a half-written one; on any failure the temporary file is removed and `path`
/// is untouched. A directory at `path` is an error.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if path.is_dir() {
        return Err(Error::file(path, "is a directory, not a file"));
    }
    let tmp = temporary_path(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::file(path, format!("cannot write: {e}")));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot rename into place: {e}"))
    })
}

/// True when `a` and `b` are the same existing file, however spelled (same device and
/// inode on Unix; the same canonical path elsewhere).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// An error when the output `out` is one of the command's `inputs` (writing it would destroy
/// an input).
pub fn refuse_input_as_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    match inputs.iter().find(|i| same_file(out, i)) {
        Some(input) => Err(Error::file(
            out,
            format!(
                "is also an input ({}): writing it would destroy it; choose another output",
                input.display()
            ),
        )),
        None => Ok(()),
    }
}

/// Write `value` as pretty-printed JSON (with a final newline), atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::file(path, format!("cannot encode JSON: {e}")))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Read a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not valid JSON: {e}")))
}

/// The `__metadata__` strings of a safetensors file, read from its header alone (8 bytes of
/// little-endian header length, then that much JSON) without loading the tensors.
pub fn safetensors_metadata(path: &Path) -> Result<std::collections::HashMap<String, String>> {
    use std::io::Read;
    let bad = |msg: String| Error::file(path, msg);
    let mut f = std::fs::File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let size = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("not a safetensors file (shorter than its header)".into()))?;
    let n = u64::from_le_bytes(len);
    if n > size.saturating_sub(8) || n > 100 << 20 {
        return Err(bad(format!(
            "not a safetensors file (header of {n} bytes in a {size}-byte file)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a safetensors file (header is not JSON: {e})")))?;
    let mut out = std::collections::HashMap::new();
    if let Some(serde_json::Value::Object(m)) = v.get("__metadata__") {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("jetgen-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        // a directory as target, and a missing parent: errors, nothing left behind
        assert!(write_atomic(&dir, b"x").is_err());
        assert!(write_atomic(&dir.join("missing/b.json"), b"x").is_err());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
