//! The library generator end to end on the built-in sample: k = 1 returns training jets
//! exactly (drawn and conditional), k = 2 moves between its two neighbours along their
//! transport plan, the checkpoint reloads through the registry and the C API, and a
//! `train library` run is complete.

mod common;

use std::collections::HashSet;

use common::sample_dir;

use jetgen::data::JetNetData;
use jetgen::models::conditions::Conditions;
use jetgen::models::library::interpolate::displacement_interpolation;
use jetgen::models::library::{
    load_library, save_library, train_library, Library, LibraryCondition, LibrarySettings,
};
use jetgen::runs::settings::RunSettings;
use jetgen::Device;

fn sample() -> JetNetData {
    JetNetData::read(&sample_dir().join("g.hdf5")).unwrap()
}

fn bits(rows: &[f32]) -> Vec<u32> {
    rows.iter().map(|v| v.to_bits()).collect()
}

const MN: [LibraryCondition; 2] = [LibraryCondition::Mass, LibraryCondition::Multiplicity];

#[test]
fn k1_returns_training_jets_exactly() {
    let data = sample();
    let (p, n) = (data.n_particles, 500);
    let lib = Library::new(data.select(&(0..n).collect::<Vec<_>>()).unwrap(), &MN, 1).unwrap();
    let known: HashSet<(Vec<u32>, Vec<u32>)> = (0..n)
        .map(|i| {
            (
                bits(&lib.jets.particles[i * p * 4..(i + 1) * p * 4]),
                bits(lib.jets.jet(i)),
            )
        })
        .collect();
    let gen = lib.generate(300, 5).unwrap();
    let mut distinct = HashSet::new();
    for g in 0..gen.n_jets {
        let key = (
            bits(&gen.particles[g * p * 4..(g + 1) * p * 4]),
            bits(gen.jet(g)),
        );
        assert!(
            known.contains(&key),
            "generated jet {g} is not a library jet"
        );
        distinct.insert(key);
    }
    assert!(distinct.len() > 200, "{} distinct of 300", distinct.len());
    assert_eq!(gen, lib.generate(300, 5).unwrap(), "seeded");
    assert_ne!(gen, lib.generate(300, 6).unwrap());

    // conditional: at a library jet's own (unique) conditions, that jet comes back
    let all: Vec<usize> = (0..n).collect();
    let c = Conditions::of(&lib.jets, &all);
    let pick = [3usize, 77, 401];
    let given = Conditions {
        mass: pick.iter().map(|&i| c.mass[i]).collect(),
        n: pick.iter().map(|&i| c.n[i]).collect(),
    };
    let out = lib.generate_conditional(&given, 1).unwrap();
    for (g, &i) in pick.iter().enumerate() {
        assert_eq!(
            &out.particles[g * p * 4..(g + 1) * p * 4],
            &lib.jets.particles[i * p * 4..(i + 1) * p * 4]
        );
    }
    // the nearest jet by mass is returned for a mass between library jets
    let lib_m = Library::new(lib.jets.clone(), &[LibraryCondition::Mass], 1).unwrap();
    let target = 0.5 * (c.mass[3] + c.mass[77]);
    let out = lib_m
        .generate_conditional(
            &Conditions {
                mass: vec![target],
                n: vec![],
            },
            0,
        )
        .unwrap();
    let got = Conditions::of(&out, &[0]).mass[0];
    let best = c
        .mass
        .iter()
        .map(|m| (m - target).abs())
        .fold(f64::INFINITY, f64::min);
    assert!(
        ((got - target).abs() - best).abs() < 1e-9,
        "{got} vs {target}"
    );
    // missing conditions are clean errors
    let e = lib
        .generate_conditional(
            &Conditions {
                mass: vec![0.1],
                n: vec![],
            },
            0,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiplicity"), "{e}");
}

#[test]
fn k2_interpolates_between_its_two_neighbours() {
    let data = sample();
    let p = data.n_particles;
    let lib = Library::new(data.select(&(0..400).collect::<Vec<_>>()).unwrap(), &MN, 2).unwrap();
    let gen = lib.generate(100, 3).unwrap();
    let library_jets: HashSet<Vec<u32>> = (0..400)
        .map(|i| bits(&lib.jets.particles[i * p * 4..(i + 1) * p * 4]))
        .collect();
    let mut new = 0;
    for g in 0..gen.n_jets {
        let rows = &gen.particles[g * p * 4..(g + 1) * p * 4];
        new += usize::from(!library_jets.contains(&bits(rows)));
        // sorted by pT, real particles first, valid masks
        let pts: Vec<f32> = rows.chunks_exact(4).map(|r| r[2]).collect();
        assert!(pts.windows(2).all(|w| w[0] >= w[1]));
        assert!(rows.chunks_exact(4).all(|r| (r[3] == 1.0) == (r[2] > 0.0)));
    }
    assert!(new > 90, "k = 2 jets are new jets ({new} of 100)");
    // along the plan between two library jets: t = 0 and t = 1 are the jets themselves
    let cloud = |i: usize| -> Vec<[f64; 3]> {
        lib.jets.particles[i * p * 4..(i + 1) * p * 4]
            .chunks_exact(4)
            .filter(|r| r[3] != 0.0)
            .map(|r| [r[0] as f64, r[1] as f64, r[2] as f64])
            .collect()
    };
    let (a, b) = (cloud(10), cloud(11));
    let sort = |mut c: Vec<[f64; 3]>| {
        c.sort_by(|x, y| y[2].total_cmp(&x[2]));
        c
    };
    for (t, end) in [(0.0, &a), (1.0, &b)] {
        let z = sort(displacement_interpolation(&a, &b, t, p).unwrap());
        let want = sort(end.clone());
        assert_eq!(z.len(), want.len());
        for (x, y) in z.iter().zip(&want) {
            assert!((0..3).all(|k| (x[k] - y[k]).abs() < 1e-12), "t = {t}");
        }
    }
}

#[test]
fn checkpoints_reload_and_sample_through_the_registry_and_the_c_api() {
    let data = sample();
    let dir = std::env::temp_dir().join(format!("jetgen-library-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    let lib = Library::new(data.select(&(0..300).collect::<Vec<_>>()).unwrap(), &MN, 2).unwrap();
    save_library(&ckpt, &lib).unwrap();
    let back = load_library(&ckpt).unwrap();
    assert_eq!(back.jets, lib.jets);
    assert_eq!(back.generate(50, 9).unwrap(), lib.generate(50, 9).unwrap());
    let g = jetgen::runs::load_generator(&dir, Device::Cpu).unwrap();
    assert_eq!(g.name(), "library/k2-mass,multiplicity");
    assert!(g.conditioning().mass && g.conditioning().multiplicity);
    let a = g.generate(64, 7).unwrap();
    assert_eq!(a, lib.generate(64, 7).unwrap());
    let (mut parts, mut jets) = (vec![0f32; 64 * 30 * 4], vec![0f32; 64 * 4]);
    let mut handle = std::ptr::null_mut();
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: valid pointers and sizes.
    unsafe {
        assert_eq!(
            jetgen::ffi::jetgen_model_load(
                path.as_ptr(),
                jetgen::ffi::JETGEN_DEVICE_CPU,
                &mut handle
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        assert_eq!(
            jetgen::ffi::jetgen_model_generate(
                handle,
                64,
                7,
                parts.as_mut_ptr(),
                parts.len(),
                jets.as_mut_ptr(),
                jets.len()
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        jetgen::ffi::jetgen_model_free(handle);
    }
    assert_eq!(parts, a.particles, "C API = Rust API for the same seed");
    // a damaged checkpoint is a clean error
    let meta = [("jetgen_model".to_string(), "library".to_string())].into();
    let t = jetgen::Tensor::from_slice(&[1.0f32], &[1], Device::Cpu).unwrap();
    jetgen::nn::store::save_tensors(&ckpt, &[("w".into(), t)], &meta).unwrap();
    assert!(load_library(&ckpt).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_library_run_is_complete_and_bad_settings_are_refused() {
    let data = sample();
    let out = std::env::temp_dir().join(format!("jetgen-library-run-{}", std::process::id()));
    let settings = LibrarySettings {
        k: 1,
        run: RunSettings {
            generate: 150,
            plots: false,
            out: Some(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(settings.condition, MN.to_vec(), "default conditions");
    let report = train_library(&data, &settings, &mut |_| ()).unwrap();
    for f in [
        "config.json",
        "checkpoint.safetensors",
        "generated.hdf5",
        "metrics.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert_eq!(report.steps_run, 0);
    assert!(report.metrics.w1m.value.is_finite());
    let g = jetgen::runs::load_generator(&out, Device::Cpu).unwrap();
    assert_eq!(g.name(), "library/k1-mass,multiplicity");
    std::fs::remove_dir_all(&out).ok();
    for (k, cond) in [
        (0, MN.to_vec()),
        (100, MN.to_vec()),
        (1, vec![]),
        (1, vec![LibraryCondition::Pt, LibraryCondition::Pt]),
    ] {
        let bad = LibrarySettings {
            k,
            condition: cond,
            ..Default::default()
        };
        assert!(bad.validate().is_err(), "k {k}");
    }
}
