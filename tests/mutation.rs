//! Seeded mutation tests of every reader — JetNet HDF5, `.npy` pairs (either half),
//! Cartesian `.npy`, safetensors checkpoints (through `load_generator`, as `jetgen sample`
//! and the C API load them) and `--config` JSON: truncations at many offsets, bit flips,
//! random bytes, huge declared sizes, duplicated and deleted ranges. Each must end in a
//! clean `Error` (or valid data), never a panic or a hang, and allocate at most a bounded
//! multiple of the file's size (see `common/mutate.rs`). Inputs kept under
//! `tests/mutation_cases/<reader>/` are replayed first.
//!
//! `cargo test --test mutation` runs a few hundred cases per reader in seconds. The
//! long-running mode — `scripts/mutate.sh` — runs the `#[ignore]`d
//! `mutate_for_a_long_time` with `JETGEN_MUTATE_SECONDS` and keeps every failing input as a
//! regression case.

mod common;

use std::path::Path;

use common::mutate::{run_reader, CountingAlloc, Outcome, Reader};
use jetgen::data::{CartesianJets, JetNetData};
use jetgen::models::conditions::{Conditions, Variant};
use jetgen::models::flow::{save_checkpoint, Flow, FlowConfig, TrainedFlow};
use jetgen::models::flow_data::Standardizer;
use jetgen::Device;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A small JetNet set: the first `n` built-in gluon jets, cut to `p` particles.
fn small_jets(n: usize, p: usize) -> JetNetData {
    let all = JetNetData::read(Path::new("builtin:g")).unwrap();
    let idx: Vec<usize> = (0..n).collect();
    let sub = all.select(&idx).unwrap();
    let mut particles = Vec::new();
    for i in 0..n {
        for j in 0..p {
            particles.extend_from_slice(sub.particle(i, j));
        }
    }
    JetNetData::new(particles, sub.jets.clone(), n, p, "small").unwrap()
}

/// `.npy` bytes of an f32 (`<f4`) array, C order.
pub fn npy_bytes(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn summary_of_jets(r: jetgen::Result<JetNetData>) -> Outcome {
    r.map(|d| d.checksum()).map_err(|e| e.to_string())
}

fn hdf5_reader() -> Reader {
    let dir = std::env::temp_dir().join(format!("jetgen-mutation-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("jets.hdf5");
    small_jets(6, 8).write_hdf5(&f).unwrap();
    Reader {
        name: "jetnet_hdf5",
        file_name: "jets.hdf5",
        original: std::fs::read(&f).unwrap(),
        // a compressed dataset may expand up to jetgen's MAX_EXPANSION (1100×)
        budget_factor: 2 * 1100 + 64,
        read: |p| summary_of_jets(JetNetData::read_hdf5(p)),
        setup: |_| {},
    }
}

fn pair_files() -> (Vec<u8>, Vec<u8>) {
    let d = small_jets(5, 6);
    (
        npy_bytes(&d.particles, &[5, 6, 4]),
        npy_bytes(&d.jets, &[5, 4]),
    )
}

fn npy_pair_particles_reader() -> Reader {
    Reader {
        name: "npy_pair_particles",
        file_name: "x_particle_features.npy",
        original: pair_files().0,
        budget_factor: 64,
        read: |p| summary_of_jets(JetNetData::read(p)),
        setup: |dir| std::fs::write(dir.join("x_jet_features.npy"), pair_files().1).unwrap(),
    }
}

fn npy_pair_jets_reader() -> Reader {
    Reader {
        name: "npy_pair_jets",
        file_name: "x_jet_features.npy",
        original: pair_files().1,
        budget_factor: 64,
        read: |p| summary_of_jets(JetNetData::read(p)),
        setup: |dir| std::fs::write(dir.join("x_particle_features.npy"), pair_files().0).unwrap(),
    }
}

fn cartesian_reader() -> Reader {
    let momenta: Vec<f32> = (0..4 * 5 * 3)
        .map(|k| ((k * 37 % 23) as f32 - 11.0) * 3.5)
        .collect();
    Reader {
        name: "cartesian_npy",
        file_name: "c.npy",
        original: npy_bytes(&momenta, &[4, 5, 3]),
        budget_factor: 64,
        read: |p| {
            CartesianJets::read_npy(p)
                .and_then(|c| c.to_jetnet(5))
                .map(|d| d.checksum())
                .map_err(|e| e.to_string())
        },
        setup: |_| {},
    }
}

/// A tiny conditional flow checkpoint (2 RQS layers, 4 wide), so mutations reach every
/// part of it: header, metadata, weights, standardisation, conditions.
fn checkpoint_reader() -> Reader {
    let dir = std::env::temp_dir().join(format!("jetgen-mutation-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("checkpoint.safetensors");
    let d = 6;
    let config = FlowConfig {
        layers: 2,
        hidden: 4,
        blocks: 1,
        context: Variant::CnfM.context_dim(),
        ..FlowConfig::default_for(d)
    };
    let model = TrainedFlow {
        flow: Flow::new(config, &mut jetgen::Rng::new(3), Device::Cpu).unwrap(),
        standardizer: Standardizer {
            mean: vec![0.1; d],
            std: vec![0.5; d],
        },
        n_particles: 2,
        variant: Variant::CnfM,
        scale: [0.1, 0.05, 2.0, 1.0],
        conditions: Conditions {
            mass: vec![0.1, 0.12, 0.08],
            n: vec![2.0, 2.0, 1.0],
        },
    };
    save_checkpoint(&f, &model).unwrap();
    Reader {
        name: "safetensors_checkpoint",
        file_name: "checkpoint.safetensors",
        original: std::fs::read(&f).unwrap(),
        budget_factor: 64,
        read: |p| {
            jetgen::runs::load_generator(p, Device::Cpu)
                .and_then(|g| g.generate(2, 0))
                .map(|d| d.checksum())
                .map_err(|e| e.to_string())
        },
        setup: |_| {},
    }
}

fn config_reader() -> Reader {
    let text = r#"{"variant": "cnf-m", "layers": 3, "hidden": 16, "bins": 8, "lr": 0.001,
"lr_schedule": "cosine", "steps": 20, "batch": 64, "quick_eval": true, "generate": 100}"#;
    Reader {
        name: "config_json",
        file_name: "config.json",
        original: text.as_bytes().to_vec(),
        budget_factor: 64,
        read: |p| {
            use jetgen::runs::settings::{merge, read_config, Settings};
            let file = read_config(p).map_err(|e| e.to_string())?;
            let s = merge(
                &jetgen::models::flow::FlowSettings::default(),
                &file,
                |_| false,
                p,
            )
            .map_err(|e| e.to_string())?;
            Settings::validate(&s).map_err(|e| e.to_string())?;
            Ok(format!("{s:?}"))
        },
        setup: |_| {},
    }
}

fn readers() -> Vec<Reader> {
    vec![
        hdf5_reader(),
        npy_pair_particles_reader(),
        npy_pair_jets_reader(),
        cartesian_reader(),
        checkpoint_reader(),
        config_reader(),
    ]
}

fn assert_none_failed(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `cargo test`'s share: 64 truncations and 300 seeded mutations per reader.
macro_rules! reader_test {
    ($name:ident, $reader:expr, $seed:expr) => {
        #[test]
        fn $name() {
            assert_none_failed(run_reader(&$reader, $seed, 300, 64, false));
        }
    };
}

reader_test!(jetnet_hdf5_survives_mutations, hdf5_reader(), 1);
reader_test!(
    npy_pair_particles_survive_mutations,
    npy_pair_particles_reader(),
    2
);
reader_test!(npy_pair_jets_survive_mutations, npy_pair_jets_reader(), 3);
reader_test!(cartesian_npy_survives_mutations, cartesian_reader(), 4);
reader_test!(checkpoints_survive_mutations, checkpoint_reader(), 5);
reader_test!(config_json_survives_mutations, config_reader(), 6);

/// The long-running mode (`scripts/mutate.sh`): every reader, fresh seeds from
/// `JETGEN_MUTATE_SEED` (default 1000) on, for `JETGEN_MUTATE_SECONDS` (default 60);
/// failing inputs are saved under `tests/mutation_cases/<reader>/`.
#[test]
#[ignore]
fn mutate_for_a_long_time() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seconds = env("JETGEN_MUTATE_SECONDS", 60);
    let mut seed = env("JETGEN_MUTATE_SEED", 1000);
    let start = std::time::Instant::now();
    let readers = readers();
    let mut failures = Vec::new();
    let mut cases = 0;
    while start.elapsed().as_secs() < seconds {
        for r in &readers {
            failures.extend(run_reader(r, seed, 200, 0, true));
            cases += 200;
        }
        seed += 1;
    }
    println!(
        "{cases} mutated inputs over {} readers in {:.0} s, seeds up to {seed}: {} failures",
        readers.len(),
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    assert_none_failed(failures);
}
