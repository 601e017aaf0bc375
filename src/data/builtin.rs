//! The built-in sample, embedded in the library and the binary so `jetgen train` and
//! `jetgen eval --real` work from any working directory: the first 2,000 jets of the
//! JetNet-like gluon (`g`) and top (`t`) development sets (`data/sample/`, see its README),
//! 30 particles each, in JetNet HDF5 layout. A data path `builtin:g` or `builtin:t` names
//! it; any other path is a file.

use std::path::Path;

use crate::data::JetNetData;
use crate::error::{Error, Result};

/// The prefix of a data path that names a built-in sample.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// The default data path of `jetgen train` and `jetgen eval --real`: the built-in gluons.
pub const DEFAULT_DATA: &str = "builtin:g";

/// The embedded files: (class, JetNet HDF5 bytes).
pub const SAMPLES: [(&str, &[u8]); 2] = [
    ("g", include_bytes!("../../data/sample/g.hdf5")),
    ("t", include_bytes!("../../data/sample/t.hdf5")),
];

/// The class a `builtin:<class>` path names, or `None` for a file path.
pub fn builtin_name(path: &Path) -> Option<&str> {
    path.to_str()?.strip_prefix(BUILTIN_PREFIX)
}

/// The built-in jets of `class` (`g` or `t`).
pub fn read_builtin(class: &str) -> Result<JetNetData> {
    let name = format!("{BUILTIN_PREFIX}{class}");
    let bytes = SAMPLES
        .iter()
        .find(|(c, _)| *c == class)
        .map(|(_, b)| *b)
        .ok_or_else(|| {
            let have: Vec<String> = SAMPLES
                .iter()
                .map(|(c, _)| format!("{BUILTIN_PREFIX}{c}"))
                .collect();
            Error::file(
                &name,
                format!(
                    "no such built-in sample (built in: {}; give a file for other classes)",
                    have.join(", ")
                ),
            )
        })?;
    JetNetData::read_hdf5_bytes(bytes, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_samples_equal_their_files() {
        for (class, _) in SAMPLES {
            let path = format!("{BUILTIN_PREFIX}{class}");
            let built_in = JetNetData::read(Path::new(&path)).unwrap();
            let file =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("data/sample/{class}.hdf5"));
            assert_eq!(built_in, JetNetData::read(&file).unwrap());
            assert_eq!((built_in.n_jets, built_in.n_particles), (2000, 30));
        }
        let e = JetNetData::read(Path::new("builtin:q"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("builtin:g, builtin:t"), "{e}");
    }
}
