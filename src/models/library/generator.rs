//! The library as a [`Generator`]: `jetgen sample`, `eval --model`, the C API.

use std::path::Path;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::Result;
use crate::models::conditions::Conditions;
use crate::models::library::checkpoint::{load_library, FAMILY};
use crate::models::library::library::Library;
use crate::models::library::settings::{condition_names, LibraryCondition};
use crate::runs::generator::{Conditioning, Generator};

/// A loaded library (it runs on the host whatever device is asked for: it only copies and
/// transports particles).
pub struct LibraryGenerator {
    pub library: Library,
}

impl LibraryGenerator {
    /// Load a library checkpoint.
    pub fn load(path: &Path) -> Result<LibraryGenerator> {
        Ok(LibraryGenerator {
            library: load_library(path)?,
        })
    }
}

impl Generator for LibraryGenerator {
    fn family(&self) -> &'static str {
        FAMILY
    }
    /// `k<K>-<conditions>`, e.g. `k2-mass,multiplicity`.
    fn variant(&self) -> String {
        format!(
            "k{}-{}",
            self.library.k,
            condition_names(&self.library.conditions)
        )
    }
    fn particles(&self) -> usize {
        self.library.jets.n_particles
    }
    fn conditioning(&self) -> Conditioning {
        let has = |c| self.library.conditions.contains(&c);
        if has(LibraryCondition::Pt) {
            return Conditioning::default();
        }
        Conditioning {
            mass: has(LibraryCondition::Mass),
            multiplicity: has(LibraryCondition::Multiplicity),
        }
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        self.library.generate(n, seed)
    }
    fn generate_conditional(&self, given: &Conditions, seed: u64) -> Result<JetNetData> {
        self.library.generate_conditional(given, seed)
    }
}
