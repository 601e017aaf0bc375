//! One test per class of hostile input the readers, the checkpoint validator and the
//! evaluation must refuse or handle (issue 14): damaged checkpoints (NaN weights, zero or
//! negative scales, sizes out of range or larger than the file, inconsistent metadata,
//! stray tensors) through the Rust loader and the C API alike; Fortran-order and
//! over-declared `.npy` files; negative pT; padded entries with non-zero features; empty
//! and single-jet samples; oversized generation requests.

mod common;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use jetgen::data::jetnet::read_npy_f32;
use jetgen::data::JetNetData;
use jetgen::metrics::{evaluate, EvalConfig, Protocol};
use jetgen::models::conditions::{Conditions, Variant};
use jetgen::models::flow::{save_checkpoint, Flow, FlowConfig, TrainedFlow};
use jetgen::models::flow_data::Standardizer;
use jetgen::nn::store::{load_tensors, save_tensors};
use jetgen::runs::generator::{check_sample_size, generate_in_pieces, max_sample_jets};
use jetgen::{Device, Tensor};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jetgen-hostile-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small valid CNF(m) flow checkpoint at `path` (3 particles, 2 layers, 8 wide).
fn write_flow(path: &Path) {
    let d = 9;
    let config = FlowConfig {
        layers: 2,
        hidden: 8,
        blocks: 1,
        context: Variant::CnfM.context_dim(),
        ..FlowConfig::default_for(d)
    };
    let model = TrainedFlow {
        flow: Flow::new(config, &mut jetgen::Rng::new(1), Device::Cpu).unwrap(),
        standardizer: Standardizer {
            mean: vec![0.0; d],
            std: vec![0.2; d],
        },
        n_particles: 3,
        variant: Variant::CnfM,
        scale: [0.1, 0.02, 3.0, 1.0],
        conditions: Conditions {
            mass: vec![0.05, 0.1, 0.15],
            n: vec![3.0, 2.0, 3.0],
        },
    };
    save_checkpoint(path, &model).unwrap();
}

/// Rewrite the checkpoint at `path` through `edit` of its tensors and metadata.
fn edit_checkpoint(
    path: &Path,
    edit: impl FnOnce(&mut HashMap<String, Tensor>, &mut HashMap<String, String>),
) {
    let (mut t, mut m) = load_tensors(path).unwrap();
    edit(&mut t, &mut m);
    let mut list: Vec<(String, Tensor)> = t.into_iter().collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    save_tensors(path, &list, &m).unwrap();
}

fn set_values(t: &mut HashMap<String, Tensor>, name: &str, f: impl FnOnce(&mut Vec<f32>)) {
    let old = &t[name];
    let mut v = old.to_vec().unwrap();
    f(&mut v);
    let shape = old.shape().to_vec();
    t.insert(
        name.into(),
        Tensor::from_slice(&v, &shape, Device::Cpu).unwrap(),
    );
}

/// Loads through the C API; the status and the last error.
fn c_load(path: &Path) -> (jetgen::ffi::JetgenStatus, String) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut model = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated path and out pointer; the model is freed below.
    let status = unsafe {
        jetgen::ffi::jetgen_model_load(c.as_ptr(), jetgen::ffi::JETGEN_DEVICE_CPU, &mut model)
    };
    // SAFETY: the last error is a valid C string until the next call on this thread.
    let msg = unsafe { CStr::from_ptr(jetgen::ffi::jetgen_last_error()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: NULL or a model from jetgen_model_load.
    unsafe { jetgen::ffi::jetgen_model_free(model) };
    (status, msg)
}

#[test]
fn damaged_checkpoints_are_refused_by_the_cli_loader_and_the_c_api() {
    let dir = scratch("ckpt");
    let good = dir.join("good.safetensors");
    write_flow(&good);
    assert!(jetgen::runs::load_generator(&good, Device::Cpu).is_ok());
    assert_eq!(c_load(&good).0, jetgen::ffi::JetgenStatus::Ok);
    let weight = "_transform._transforms.0.transform_net.initial_layer.weight";
    type Edit = Box<dyn Fn(&mut HashMap<String, Tensor>, &mut HashMap<String, String>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a NaN weight",
            Box::new(|t, _| set_values(t, weight, |v| v[3] = f32::NAN)),
            "NaN/inf",
        ),
        (
            "an infinite weight",
            Box::new(|t, _| set_values(t, weight, |v| v[0] = f32::INFINITY)),
            "NaN/inf",
        ),
        (
            "a zero standardiser scale",
            Box::new(|t, _| set_values(t, "standardizer.std", |v| v[2] = 0.0)),
            "positive and finite",
        ),
        (
            "a negative standardiser scale",
            Box::new(|t, _| set_values(t, "standardizer.std", |v| v[0] = -1.0)),
            "positive and finite",
        ),
        (
            "a zero condition scale",
            Box::new(|t, _| set_values(t, "conditions.scale", |v| v[1] = 0.0)),
            "positive and finite",
        ),
        (
            "bins 0",
            Box::new(|_, m| {
                let c = m["flow_config"].replace("\"bins\":8", "\"bins\":0");
                m.insert("flow_config".into(), c);
            }),
            "bins",
        ),
        (
            "a hidden width far larger than the file",
            Box::new(|_, m| {
                let c = m["flow_config"].replace("\"hidden\":8", "\"hidden\":16000");
                m.insert("flow_config".into(), c);
            }),
            "needs at least",
        ),
        (
            "layers 0",
            Box::new(|_, m| {
                let c = m["flow_config"].replace("\"layers\":2", "\"layers\":0");
                m.insert("flow_config".into(), c);
            }),
            "layers",
        ),
        (
            "n_particles 0",
            Box::new(|_, m| {
                m.insert("n_particles".into(), "0".into());
            }),
            "n_particles",
        ),
        (
            "n_particles huge",
            Box::new(|_, m| {
                m.insert("n_particles".into(), "18446744073709551615".into());
            }),
            "n_particles",
        ),
        (
            "n_particles not matching the features",
            Box::new(|_, m| {
                m.insert("n_particles".into(), "4".into());
            }),
            "features",
        ),
        (
            "a variant of another context size",
            Box::new(|_, m| {
                m.insert("variant".into(), "vnf".into());
            }),
            "context",
        ),
        (
            "a multiplicity beyond the particles",
            Box::new(|t, _| set_values(t, "conditions.n", |v| v[1] = 7.0)),
            "multiplicity",
        ),
        (
            "a negative training mass",
            Box::new(|t, _| set_values(t, "conditions.mass", |v| v[0] = -0.1)),
            "negative",
        ),
        (
            "a weight of the wrong shape",
            Box::new(|t, _| {
                t.insert(
                    weight.into(),
                    Tensor::from_slice(&[0.0f32; 4], &[2, 2], Device::Cpu).unwrap(),
                );
            }),
            "shape",
        ),
        (
            "a missing standardiser",
            Box::new(|t, _| {
                t.remove("standardizer.mean");
            }),
            "standardizer.mean",
        ),
        (
            "a stray tensor",
            Box::new(|t, _| {
                t.insert(
                    "extra.weight".into(),
                    Tensor::from_slice(&[1.0f32], &[1], Device::Cpu).unwrap(),
                );
            }),
            "unexpected tensors",
        ),
    ];
    for (what, edit, want) in cases {
        let bad = dir.join("bad.safetensors");
        std::fs::copy(&good, &bad).unwrap();
        edit_checkpoint(&bad, edit);
        let e = jetgen::runs::load_generator(&bad, Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("{what}: loaded"))
            .to_string();
        assert!(e.contains(want), "{what}: {e}");
        let (status, msg) = c_load(&bad);
        assert_ne!(
            status,
            jetgen::ffi::JetgenStatus::Ok,
            "{what}: C API loaded it"
        );
        assert!(msg.contains(want), "{what} (C API): {msg}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `.npy` bytes of an f32 array with the given order flag (values already in that order).
fn npy(values: &[f32], shape: &[usize], fortran: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': {}, 'shape': ({}{}), }}",
        if fortran { "True" } else { "False" },
        dims.join(", "),
        if dims.len() == 1 { "," } else { "" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

#[test]
fn fortran_order_npy_reads_as_the_same_array_and_oversized_headers_are_refused() {
    let dir = scratch("npy");
    let shape = [2, 3, 4];
    let c: Vec<f32> = (0..24).map(|v| v as f32).collect();
    // column-major: element (i, j, k) at i + 2j + 6k
    let mut f = vec![0f32; 24];
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                f[i + 2 * j + 6 * k] = c[(i * 3 + j) * 4 + k];
            }
        }
    }
    std::fs::write(dir.join("c.npy"), npy(&c, &shape, false)).unwrap();
    std::fs::write(dir.join("f.npy"), npy(&f, &shape, true)).unwrap();
    let (a, sa) = read_npy_f32(&dir.join("c.npy")).unwrap();
    let (b, sb) = read_npy_f32(&dir.join("f.npy")).unwrap();
    assert_eq!(
        (sa.clone(), a.clone()),
        (sb, b),
        "Fortran order is transposed on read"
    );
    assert_eq!(sa, shape);
    // a header declaring far more than the file holds, however large
    for decl in [
        "(1000000, 30, 4)",
        "(4294967296, 4294967296, 4)",
        "(18446744073709551615,)",
    ] {
        let mut bytes = npy(&c, &shape, false);
        let text = String::from_utf8_lossy(&bytes[10..]).replace("(2, 3, 4)", decl);
        bytes.truncate(10);
        let mut header = text.trim_end_matches(|ch: char| ch != '\n').to_string();
        header.truncate(header.find('}').unwrap() + 1);
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        bytes[8..10].copy_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        c.iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        std::fs::write(dir.join("big.npy"), &bytes).unwrap();
        let e = read_npy_f32(&dir.join("big.npy")).unwrap_err().to_string();
        assert!(
            e.contains("declares") || e.contains("not a valid"),
            "{decl}: {e}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Three jets of two particles: (η, φ, pT, mask) rows.
fn jets(rows: &[[f32; 4]]) -> jetgen::Result<JetNetData> {
    let n = rows.len() / 2;
    let particles: Vec<f32> = rows.iter().flatten().copied().collect();
    let jets = vec![1.0f32; 4 * n];
    JetNetData::new(particles, jets, n, 2, "test jets")
}

#[test]
fn the_mask_defines_the_particles_and_pt_is_never_negative() {
    // a padded entry (mask 0) with features: cleared, it is not a particle
    let d = jets(&[
        [0.1, 0.2, 0.6, 1.0],
        [0.5, -0.3, 0.4, 0.0],
        [0.0, 0.1, 1.0, 1.0],
        [0.0, 0.0, 0.0, 0.0],
    ])
    .unwrap();
    assert_eq!(d.particle(0, 1), &[0.0, 0.0, 0.0, 0.0]);
    assert_eq!((d.multiplicity(0), d.multiplicity(1)), (1, 1));
    // negative pT of a particle is refused, of padding it is cleared
    let e = jets(&[
        [0.1, 0.2, -0.6, 1.0],
        [0.0; 4],
        [0.0, 0.1, 1.0, 1.0],
        [0.0; 4],
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("negative pT_rel"), "{e}");
    assert!(jets(&[
        [0.1, 0.2, -0.6, 0.0],
        [0.0; 4],
        [0.0, 0.1, 1.0, 1.0],
        [0.0; 4]
    ])
    .is_ok());
    // |φ_rel| > π is legal but unusual: a note, the data as given
    let wide = jets(&[
        [0.1, 4.0, 0.6, 1.0],
        [0.0; 4],
        [0.0, 0.1, 1.0, 1.0],
        [0.0; 4],
    ])
    .unwrap();
    assert_eq!(wide.particle(0, 0)[1], 4.0);
    assert!(wide.unusual_values()[0].contains("|φ_rel| > π"));
}

fn sample_jets() -> JetNetData {
    JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap()
}

#[test]
fn evaluation_counts_only_masked_particles_and_leaves_out_empty_jets() {
    let real = sample_jets().select(&(0..300).collect::<Vec<_>>()).unwrap();
    let gen = sample_jets()
        .select(&(300..600).collect::<Vec<_>>())
        .unwrap();
    let cfg = EvalConfig {
        full: false,
        w1_batch_size: Some(200),
        ..EvalConfig::new(Protocol::Mpgan, 1)
    };
    let base = evaluate(&real, &gen, &cfg, &mut |_| ()).unwrap();
    assert!(base.notes.is_empty() && base.empty_generated == 0);
    // junk in the padding of the generated jets changes nothing
    let mut junk = gen.clone();
    for p in junk.particles.chunks_exact_mut(4) {
        if p[3] == 0.0 {
            p[..3].copy_from_slice(&[0.3, -0.2, 0.05]);
        }
    }
    let junk = JetNetData::new(
        junk.particles,
        junk.jets,
        junk.n_jets,
        junk.n_particles,
        "junk",
    )
    .unwrap();
    let with_junk = evaluate(&real, &junk, &cfg, &mut |_| ()).unwrap();
    assert_eq!((with_junk.w1m, with_junk.w1p), (base.w1m, base.w1p));
    // empty jets: left out, counted, noted; the numbers finite
    let mut with_empty = gen.clone();
    let p = with_empty.n_particles;
    for i in [3, 17, 200] {
        with_empty.particles[i * p * 4..(i + 1) * p * 4].fill(0.0);
    }
    let report = evaluate(&real, &with_empty, &cfg, &mut |_| ()).unwrap();
    assert_eq!((report.empty_generated, report.n_generated), (3, 297));
    assert!(
        report.notes[0].contains("3 empty generated jets"),
        "{:?}",
        report.notes
    );
    report.check_finite().unwrap();
    let json = report.to_json().to_string();
    assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
    assert!(report.table().chars().all(|c| c != '∞') && !report.table().contains("NaN"));
    // only empty jets: an error, not a table of inf
    let mut all_empty = gen.clone();
    all_empty.particles.fill(0.0);
    let e = evaluate(&real, &all_empty, &cfg, &mut |_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
    // one jet: evaluated, with a note that the error bars mean nothing
    let one = gen.select(&[0]).unwrap();
    let report = evaluate(&real, &one, &cfg, &mut |_| ()).unwrap();
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("only 1 generated jet")),
        "{:?}",
        report.notes
    );
}

#[test]
fn oversized_samples_are_refused_and_large_ones_are_made_in_pieces() {
    let e = check_sample_size(1_000_000_000_000, 30)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&max_sample_jets(30).to_string()) && e.contains("GiB"),
        "{e}"
    );
    assert!(check_sample_size(0, 30).is_err());
    assert!(check_sample_size(max_sample_jets(30), 30).is_ok());
    let dir = scratch("pieces");
    let ckpt = dir.join("checkpoint.safetensors");
    write_flow(&ckpt);
    let g = jetgen::runs::load_generator(&ckpt, Device::Cpu).unwrap();
    // up to one piece: exactly generate(n, seed)
    assert_eq!(
        generate_in_pieces(&*g, 5, 9, None).unwrap(),
        g.generate(5, 9).unwrap()
    );
    let n = jetgen::runs::generator::GENERATION_CHUNK + 3;
    let a = generate_in_pieces(&*g, n, 9, None).unwrap();
    assert_eq!(a.n_jets, n);
    assert_eq!(
        a,
        generate_in_pieces(&*g, n, 9, None).unwrap(),
        "deterministic"
    );
    assert_eq!(
        g.training_mass_range(),
        Some((0.05f32 as f64, 0.15f32 as f64))
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The VAE and GAN loaders too: metadata declaring a model far larger than the file (or sizes
/// out of range) is refused before anything is allocated, by the Rust loader and the C API.
#[test]
fn vae_and_gan_checkpoints_declaring_huge_models_are_refused() {
    let dir = scratch("huge-models");
    let vae = dir.join("vae.safetensors");
    jetgen::models::vae::write_bench_checkpoint(&vae, Device::Cpu).unwrap();
    let gan = dir.join("gan.safetensors");
    jetgen::models::gan::checkpoint::write_bench_checkpoint(&gan, Device::Cpu).unwrap();
    for path in [&vae, &gan] {
        jetgen::runs::registry::load_generator(path, Device::Cpu).expect("intact checkpoint loads");
    }
    let cases: Vec<(&Path, Box<dyn Fn(&mut HashMap<String, String>)>, &str)> = vec![
        (
            &vae,
            Box::new(|m| {
                let mut v: serde_json::Value = serde_json::from_str(&m["vae_config"]).unwrap();
                v["network"]["hidden"] = serde_json::json!([20000, 20000]);
                m.insert("vae_config".into(), v.to_string());
            }),
            "declares",
        ),
        (
            &vae,
            Box::new(|m| {
                let mut v: serde_json::Value = serde_json::from_str(&m["vae_config"]).unwrap();
                v["network"]["latent"] = serde_json::json!(1u64 << 40);
                m.insert("vae_config".into(), v.to_string());
            }),
            "out of range",
        ),
        (
            &gan,
            Box::new(|m| {
                m.insert("hidden".into(), "65536".into());
                m.insert("depth".into(), "65536".into());
            }),
            "declares",
        ),
    ];
    for (k, (path, edit, want)) in cases.iter().enumerate() {
        let bad = dir.join(format!("bad{k}.safetensors"));
        std::fs::copy(path, &bad).unwrap();
        edit_checkpoint(&bad, |_, m| edit(m));
        let err = jetgen::runs::registry::load_generator(&bad, Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("case {k} loaded"))
            .to_string();
        assert!(err.contains(want), "case {k}: {err}");
        let (status, msg) = c_load(&bad);
        assert_ne!(
            status,
            jetgen::ffi::JetgenStatus::Ok,
            "case {k} via the C API"
        );
        assert!(msg.contains(want), "case {k} via the C API: {msg}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
