//! JetNet data layer, jet physics and W1 metrics: the built-in sample reads identically
//! from HDF5 and .npy, round-trips through our writer, bad files give errors naming the
//! file; kinematics against closed forms; W1 against scipy's documented values.

mod common;

use std::path::{Path, PathBuf};

use jetgen::data::JetNetData;
use jetgen::metrics::{w1m, w1p, wasserstein_1d, wasserstein_1d_weighted, Bootstrap};
use jetgen::physics::{from_cartesian, jet_p4, multiplicities, relative_masses, to_cartesian, P4};

fn sample(name: &str) -> PathBuf {
    common::sample_dir().join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jetgen-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn sample_hdf5_equals_npy_and_round_trips() {
    for class in ["g", "t"] {
        let h5 = JetNetData::read(&sample(&format!("{class}.hdf5"))).unwrap();
        let npy = JetNetData::read(&sample(&format!("{class}_particle_features.npy"))).unwrap();
        assert_eq!((h5.n_jets, h5.n_particles), (2000, 30));
        assert_eq!(h5, npy, "{class}: HDF5 and .npy differ");
        // layout facts from the data README: pT-sorted, padding rows all zero
        for i in 0..h5.n_jets {
            let pts: Vec<f32> = (0..30).map(|j| h5.particle(i, j)[2]).collect();
            assert!(
                pts.windows(2).all(|w| w[0] >= w[1]),
                "jet {i} not pT-sorted"
            );
            for j in 0..30 {
                let p = h5.particle(i, j);
                if p[3] == 0.0 {
                    assert_eq!(p, [0.0; 4]);
                }
            }
        }
        let out = tmp(&format!("{class}_copy.hdf5"));
        h5.write_hdf5(&out).unwrap();
        assert_eq!(
            JetNetData::read(&out).unwrap(),
            h5,
            "{class}: write/read round trip"
        );
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let good = std::fs::read(sample("g.hdf5")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.hdf5", vec![]),
        ("text.hdf5", b"this is not HDF5 at all".to_vec()),
        ("truncated.hdf5", good[..good.len() / 3].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        let err = JetNetData::read(&path).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
    let err = JetNetData::read(&tmp("does_not_exist.hdf5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does_not_exist"), "{err}");
    // a file with only one of the two datasets
    let mut fb = hdf5_pure_builder();
    fb.create_dataset("jet_features")
        .with_f32_data(&[1.0; 8])
        .with_shape(&[2, 4]);
    let path = tmp("one_dataset.hdf5");
    std::fs::write(&path, fb.finish().unwrap()).unwrap();
    let err = JetNetData::read(&path).unwrap_err().to_string();
    assert!(err.contains("particle_features"), "{err}");
    // NaN values, bad mask, wrong shapes
    let mut d = JetNetData::read(&sample("g.hdf5")).unwrap();
    d.particles[7] = f32::NAN;
    let err = d.write_hdf5(&tmp("nan.hdf5")).unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");
    assert!(!tmp("nan.hdf5").exists(), "nothing half-written");
    let mut d = JetNetData::read(&sample("g.hdf5")).unwrap();
    d.particles[3] = 0.5;
    assert!(d.validate("x").unwrap_err().to_string().contains("mask"));
    assert!(JetNetData::new(vec![0.0; 8], vec![0.0; 4], 1, 3, "x").is_err());
    assert!(JetNetData::new(vec![], vec![], 0, 30, "x")
        .unwrap_err()
        .to_string()
        .contains("empty"));
}

fn hdf5_pure_builder() -> hdf5_pure::FileBuilder {
    hdf5_pure::FileBuilder::new()
}

#[test]
fn kinematics_closed_forms() {
    // two massless back-to-back-in-φ particles of pT 1 at η = 0: m² = (2)² − 0 = 4
    let rows = [0.0f32, 0.0, 1.0, 1.0, 0.0, std::f32::consts::PI, 1.0, 1.0];
    let p = jet_p4(&rows, 4);
    assert!((p.mass() - 2.0).abs() < 1e-6 && p.pt() < 1e-6);
    // small-angle: m² ≈ pT1 pT2 ΔR² for two particles
    let rows = [0.01f32, 0.0, 0.6, 1.0, -0.02, 0.03, 0.4, 1.0];
    let m2 = jet_p4(&rows, 4).mass().powi(2);
    let dr2 = 0.03f64.powi(2) + 0.03f64.powi(2);
    assert!((m2 - 0.6 * 0.4 * dr2).abs() < 1e-3 * m2, "{m2}");
    // a single massless particle has zero mass; padding adds nothing
    assert_eq!(
        jet_p4(&[0.3, 0.2, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], 4).mass(),
        0.0
    );
    // relative masses of the sample: positive, O(0.1) for gluons, larger for tops
    let g = JetNetData::read(&sample("g.hdf5")).unwrap();
    let t = JetNetData::read(&sample("t.hdf5")).unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mg, mt) = (mean(&relative_masses(&g)), mean(&relative_masses(&t)));
    assert!(
        mg > 0.03 && mg < 0.15 && mt > mg * 1.5,
        "gluon {mg}, top {mt}"
    );
    let nmax = *multiplicities(&g).iter().max().unwrap();
    assert!(nmax <= 30);
    // Cartesian round trip: relative → (px,py,pz) → relative
    let rows: Vec<f32> = (0..30).flat_map(|j| g.particle(5, j).to_vec()).collect();
    let cart = to_cartesian(&rows, 1000.0, 0.3, 1.0);
    let (jet, rel) = from_cartesian(&cart);
    let full = jet_p4(&rows, 4);
    assert!((jet.pt() / 1000.0 - full.pt()).abs() < 1e-9 + 1e-6 * full.pt());
    for (j, r) in rel.iter().enumerate() {
        let p = g.particle(5, j);
        if p[3] != 0.0 {
            // relative to the constituent sum, so close to (not equal to) the file's values
            assert!(
                (r[2] * jet.pt() / 1000.0 - p[2] as f64).abs() < 1e-5,
                "pT of particle {j}"
            );
        }
    }
    let _ = P4::default();
}

#[test]
fn wasserstein_matches_scipy_examples() {
    // scipy.stats.wasserstein_distance docstring examples
    assert!((wasserstein_1d(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]) - 5.0).abs() < 1e-12);
    assert!(
        (wasserstein_1d_weighted(
            &[0.0, 1.0],
            &[0.0, 1.0],
            Some(&[3.0, 1.0]),
            Some(&[2.0, 2.0])
        ) - 0.25)
            .abs()
            < 1e-12
    );
    let w = wasserstein_1d_weighted(
        &[3.4, 3.9, 7.5, 7.8],
        &[4.5, 1.4],
        Some(&[1.4, 0.9, 3.1, 7.2]),
        Some(&[3.2, 3.5]),
    );
    assert!((w - 4.078_133_143_804_786).abs() < 1e-12, "{w}");
    assert_eq!(wasserstein_1d(&[1.0, 2.0], &[2.0, 1.0]), 0.0);
    assert_eq!(wasserstein_1d(&[], &[1.0]), f64::INFINITY);
}

#[test]
fn w1m_and_w1p_separate_classes() {
    let g = JetNetData::read(&sample("g.hdf5")).unwrap();
    let t = JetNetData::read(&sample("t.hdf5")).unwrap();
    let b = Bootstrap {
        batches: 5,
        batch_size: 2000,
        seed: 1,
    };
    let same = w1m(&g, &g, &b).unwrap();
    let diff = w1m(&g, &t, &b).unwrap();
    assert!(
        diff.mean > 10.0 * same.mean,
        "g vs g {same:?}, g vs t {diff:?}"
    );
    assert_eq!(w1m(&g, &t, &b).unwrap(), diff, "seeded: reproducible");
    let p_same = w1p(&g, &g, &b).unwrap();
    let p_diff = w1p(&g, &t, &b).unwrap();
    for f in 0..3 {
        assert!(p_diff[f].mean > p_same[f].mean, "feature {f}");
    }
    assert!(w1m(
        &g,
        &t,
        &Bootstrap {
            batches: 0,
            batch_size: 10,
            seed: 0
        }
    )
    .is_err());
}

/// EFPs against energyflow 1.4.0 (tests/vectors/efp, computed as jetnet's w1efp does) on the
/// first 40 gluon and top jets of the sample, against a brute-force O(M⁴) sum, and the
/// unnormalised-measure scaling (2× all pT → 2⁴× every EFP).
#[test]
fn efps_match_energyflow_and_brute_force() {
    use jetgen::metrics::{efps_d4, w1efp};
    let dir = std::env::var_os("JETGEN_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("efp/efp_sample40.json")).unwrap())
            .unwrap();
    for class in ["g", "t"] {
        let d = JetNetData::read(&sample(&format!("{class}.hdf5"))).unwrap();
        let want = reference["efps"][class].as_array().unwrap();
        for (i, row) in want.iter().enumerate() {
            let rows: Vec<f32> = (0..30).flat_map(|j| d.particle(i, j).to_vec()).collect();
            let got = efps_d4(&rows, 4);
            for k in 0..5 {
                let w = row[k].as_f64().unwrap();
                assert!(
                    (got[k] - w).abs() <= 1e-9 * w.abs() + 1e-15,
                    "{class} jet {i} EFP {k}: {} vs energyflow {w}",
                    got[k]
                );
            }
        }
    }
    // brute force on a small random jet
    let rows: Vec<f32> = (0..7)
        .flat_map(|k| {
            [
                0.1 * k as f32 - 0.3,
                0.37 * (k as f32).sin(),
                0.05 + 0.02 * k as f32,
                1.0,
            ]
        })
        .collect();
    let p: Vec<(f64, f64, f64)> = rows
        .chunks(4)
        .map(|r| (r[0] as f64, r[1] as f64, r[2] as f64))
        .collect();
    let th = |a: usize, b: usize| {
        let dphi = std::f64::consts::PI - ((p[a].1 - p[b].1).abs() - std::f64::consts::PI).abs();
        ((p[a].0 - p[b].0).powi(2) + dphi * dphi).sqrt()
    };
    let graphs: [[(usize, usize); 4]; 5] = [
        [(0, 1), (0, 2), (0, 2), (0, 3)],
        [(0, 1), (0, 2), (0, 2), (1, 3)],
        [(0, 1), (0, 1), (0, 2), (1, 3)],
        [(0, 1), (0, 2), (1, 2), (0, 3)],
        [(0, 1), (0, 2), (1, 3), (2, 3)],
    ];
    let fast = efps_d4(&rows, 4);
    for (k, g) in graphs.iter().enumerate() {
        let mut total = 0.0;
        for i in 0..7usize.pow(4) {
            let v = [i % 7, i / 7 % 7, i / 49 % 7, i / 343];
            let zs: f64 = v.iter().map(|&a| p[a].2).product();
            total += zs * g.iter().map(|&(a, b)| th(v[a], v[b])).product::<f64>();
        }
        assert!(
            (fast[k] - total).abs() < 1e-12 * total.abs().max(1e-300),
            "graph {k}: {} vs {total}",
            fast[k]
        );
    }
    let doubled: Vec<f32> = rows
        .chunks(4)
        .flat_map(|r| [r[0], r[1], 2.0 * r[2], r[3]])
        .collect();
    let f2 = efps_d4(&doubled, 4);
    for k in 0..5 {
        assert!((f2[k] / fast[k] - 16.0).abs() < 1e-9);
    }
    let g = JetNetData::read(&sample("g.hdf5")).unwrap();
    let t = JetNetData::read(&sample("t.hdf5")).unwrap();
    let b = Bootstrap {
        batches: 3,
        batch_size: 2000,
        seed: 3,
    };
    let same = w1efp(&g, &g, &b).unwrap();
    let diff = w1efp(&g, &t, &b).unwrap();
    assert!((0..5).all(|k| diff[k].mean > same[k].mean));
}

/// Relative jet masses against energyflow's 4-vector sum of the same constituents.
#[test]
fn relative_mass_matches_energyflow() {
    let dir = std::env::var_os("JETGEN_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"));
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("efp/relative_mass_sample40.json")).unwrap(),
    )
    .unwrap();
    for class in ["g", "t"] {
        let d = JetNetData::read(&sample(&format!("{class}.hdf5"))).unwrap();
        let ours = relative_masses(&d);
        for (i, w) in reference["masses"][class]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let w = w.as_f64().unwrap();
            assert!(
                (ours[i] - w).abs() < 1e-9 * w.max(1e-3),
                "{class} jet {i}: {} vs {w}",
                ours[i]
            );
        }
    }
}

/// The Cartesian representation: built from the sample's relative coordinates, written as an
/// `[N, P, 3]` .npy, read back, converted to JetNet layout: the relative features return.
#[test]
fn cartesian_round_trip_splits_and_jet_image() {
    use jetgen::data::{average_jet_image, split_indices, CartesianJets};
    let g = JetNetData::read(&sample("g.hdf5")).unwrap();
    let n = 50;
    let mut momenta = Vec::new();
    for i in 0..n {
        let rows = &g.particles[i * 120..(i + 1) * 120];
        for (r, p) in rows
            .chunks_exact(4)
            .zip(to_cartesian(rows, 500.0, 0.3, 1.0))
        {
            let p = if r[3] == 0.0 { [0.0; 3] } else { p };
            momenta.extend(p.iter().map(|&v| v as f32));
        }
    }
    // a .npy v1.0 file: magic, header dict padded to 64 bytes, little-endian f32 data
    let path = tmp("cart.npy");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, 30, 3), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(momenta.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(&path, &out).unwrap();
    let cart = CartesianJets::read_npy(&path).unwrap();
    assert_eq!((cart.n_jets, cart.n_particles), (n, 30));
    let back = cart.to_jetnet(30).unwrap();
    // the axis is now the sum of these 30 constituents, not the original jet: compare what
    // does not depend on it (angles and pT ratios relative to the leading particle)
    for i in 0..n {
        let (a0, b0) = (g.particle(i, 0), back.particle(i, 0));
        for j in 0..30 {
            let (a, b) = (g.particle(i, j), back.particle(i, j));
            assert_eq!(a[3], b[3], "mask {i},{j}");
            if a[3] == 0.0 {
                assert_eq!(b, [0.0; 4]);
                continue;
            }
            for f in 0..2 {
                let (da, db) = (a[f] - a0[f], b[f] - b0[f]);
                assert!(
                    (da - db).abs() < 2e-4,
                    "jet {i} particle {j} feature {f}: {da} vs {db}"
                );
            }
            assert!(
                (a[2] / a0[2] - b[2] / b0[2]).abs() < 1e-4,
                "pT ratio {i},{j}"
            );
        }
    }
    // a wrong shape is a clear error
    let bad = tmp("bad_cart.npy");
    std::fs::copy(sample("g_jet_features.npy"), &bad).unwrap();
    let err = CartesianJets::read_npy(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad_cart.npy") && err.contains("[N, P, 3]"),
        "{err}"
    );

    // pT sorting restores the file's order after a shuffle of the particles
    let mut shuffled = g.clone();
    for jet in shuffled.particles.chunks_exact_mut(120) {
        jet.rotate_left(4 * 7);
    }
    shuffled.sort_by_pt();
    assert_eq!(shuffled.particles, g.particles);

    // splits: seeded, disjoint, complete, with jetnet's and the papers' fractions
    let parts = split_indices(1000, &[0.7, 0.15, 0.15], 3).unwrap();
    assert_eq!(
        parts.iter().map(Vec::len).collect::<Vec<_>>(),
        [700, 150, 150]
    );
    let mut all: Vec<usize> = parts.concat();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert_eq!(parts, split_indices(1000, &[0.7, 0.15, 0.15], 3).unwrap());
    assert_ne!(
        parts[0],
        split_indices(1000, &[0.7, 0.15, 0.15], 4).unwrap()[0]
    );
    assert_eq!(split_indices(10, &[0.7, 0.3], 0).unwrap()[1].len(), 3);
    assert!(split_indices(10, &[0.7, 0.2], 0).is_err());

    // jet image: its total is the mean pT fraction of the particles inside the window
    let img = average_jet_image(&g, 25, 1.0);
    assert_eq!(img.len(), 625);
    let total: f64 = img.iter().sum();
    let inside: f64 = g
        .particles
        .chunks_exact(4)
        .filter(|p| p[0].abs() < 1.0 && p[1].abs() < 1.0)
        .map(|p| p[2] as f64)
        .sum::<f64>()
        / g.n_jets as f64;
    assert!(
        (total - inside).abs() < 1e-9 && total > 0.5,
        "image total {total} vs {inside}"
    );
    // the jet axis (centre) is the brightest region
    let centre = img[12 * 25 + 12];
    assert!(img.iter().all(|&v| v <= centre + 1e-12) || centre > 0.05);
}
