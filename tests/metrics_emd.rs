//! Exact EMD: the transportation simplex against POT's network simplex on random problems,
//! closed forms on tiny ones, LP optimality (dual feasibility, complementary slackness), and
//! energyflow's jet EMD on sample jets.

mod common;

use jetgen::data::JetNetData;
use jetgen::metrics::{jet_emd, jet_particles, transport_exact, Particle};
use serde_json::Value;

fn reference() -> Value {
    let path = common::vectors_dir().join("emd/emd_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn euclidean_cost(x: &[f64], y: &[f64]) -> Vec<f64> {
    let mut c = Vec::new();
    for p in x.chunks(2) {
        for q in y.chunks(2) {
            c.push((p[0] - q[0]).hypot(p[1] - q[1]));
        }
    }
    c
}

#[test]
fn transport_matches_pot_and_is_optimal() {
    let r = reference();
    for p in r["transport"].as_array().unwrap() {
        let (n, m) = (
            p["n"].as_u64().unwrap() as usize,
            p["m"].as_u64().unwrap() as usize,
        );
        let (a, b) = (floats(&p["a"]), floats(&p["b"]));
        let cost = match p.get("cost") {
            Some(c) => floats(c),
            None => euclidean_cost(&floats(&p["x"]), &floats(&p["y"])),
        };
        let sol = transport_exact(&a, &b, &cost).unwrap();
        let want = p["emd"].as_f64().unwrap();
        assert!(
            (sol.cost - want).abs() <= 1e-10 * want.max(1.0),
            "{n}×{m}: {} vs POT {want}",
            sol.cost
        );
        // primal feasibility
        let (mut rows, mut cols) = (vec![0.0; n], vec![0.0; m]);
        for &(i, j, x) in &sol.flows {
            assert!(x >= 0.0);
            rows[i] += x;
            cols[j] += x;
        }
        common::assert_close(&rows, &a, 1e-12, 0.0, "row marginals");
        common::assert_close(&cols, &b, 1e-12, 0.0, "column marginals");
        // dual feasibility and complementary slackness
        for i in 0..n {
            for j in 0..m {
                assert!(
                    sol.u[i] + sol.v[j] <= cost[i * m + j] + 1e-10,
                    "dual infeasible"
                );
            }
        }
        for &(i, j, _) in &sol.flows {
            assert!((sol.u[i] + sol.v[j] - cost[i * m + j]).abs() < 1e-10);
        }
        let dual: f64 = a
            .iter()
            .zip(&sol.u)
            .chain(b.iter().zip(&sol.v))
            .map(|(w, p)| w * p)
            .sum();
        assert!(
            (dual - sol.cost).abs() < 1e-10,
            "duality gap {}",
            dual - sol.cost
        );
    }
}

#[test]
fn closed_forms_and_degenerate_cases() {
    // one point each: all mass moves the distance
    let s = transport_exact(&[2.0], &[2.0], &[1.5]).unwrap();
    assert_eq!(s.cost, 3.0);
    // identity permutation is optimal with zero cost
    let n = 9;
    let mut c = vec![1.0; n * n];
    for i in 0..n {
        c[i * n + i] = 0.0;
    }
    let w = vec![1.0 / n as f64; n];
    assert_eq!(transport_exact(&w, &w, &c).unwrap().cost, 0.0);
    // 1-D: cost |x−y| equals the W1 of the sorted CDFs
    let x = [0.0f64, 1.0, 3.0];
    let y = [0.5f64, 2.0];
    let (a, b): ([f64; 3], [f64; 2]) = ([0.2, 0.5, 0.3], [0.6, 0.4]);
    let c: Vec<f64> = x
        .iter()
        .flat_map(|p| y.iter().map(move |q| (p - q).abs()))
        .collect();
    let w1 = jetgen::metrics::wasserstein_1d_weighted(&x, &y, Some(&a[..]), Some(&b[..]));
    assert!((transport_exact(&a, &b, &c).unwrap().cost - w1).abs() < 1e-12);
    // all-zero, empty sides and ties are fine
    assert_eq!(
        transport_exact(&[0.0, 0.0], &[0.0], &[1.0, 2.0])
            .unwrap()
            .cost,
        0.0
    );
    assert_eq!(transport_exact(&[], &[], &[]).unwrap().cost, 0.0);
    let s = transport_exact(&[0.5, 0.5], &[0.5, 0.5], &[1.0; 4]).unwrap();
    assert!((s.cost - 1.0).abs() < 1e-15);
    // bad input is an error, not a panic
    assert!(transport_exact(&[1.0], &[2.0], &[1.0]).is_err());
    assert!(transport_exact(&[1.0], &[1.0], &[1.0, 2.0]).is_err());
    assert!(transport_exact(&[f64::NAN], &[1.0], &[1.0]).is_err());
    assert!(transport_exact(&[-1.0, 2.0], &[1.0], &[1.0, 1.0]).is_err());
    assert!(transport_exact(&[1.0], &[1.0], &[f64::INFINITY]).is_err());
}

#[test]
fn jet_emd_matches_energyflow() {
    let r = reference();
    let g = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let t = JetNetData::read(&common::sample_dir().join("t.hdf5")).unwrap();
    let stride = 30 * 4;
    let emds = r["jets"]["emds"].as_array().unwrap();
    for (i, row) in emds.iter().enumerate() {
        let gen = jet_particles(&t.particles[i * stride..(i + 1) * stride], 4);
        for (j, want) in floats(row).into_iter().enumerate() {
            let real = jet_particles(&g.particles[j * stride..(j + 1) * stride], 4);
            let got = jet_emd(&gen, &real).unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "EMD(t{i}, g{j}) = {got}, energyflow {want}"
            );
        }
    }
    // the |ΔΣpT| term: a jet against a scaled copy of itself costs exactly the pT difference
    let p = |pt, eta, phi| Particle { pt, eta, phi };
    let x = vec![p(0.6, 0.1, 0.0), p(0.3, -0.2, 0.1)];
    let y: Vec<Particle> = x.iter().map(|q| p(q.pt * 0.5, q.eta, q.phi)).collect();
    assert!((jet_emd(&x, &y).unwrap() - 0.45).abs() < 1e-12);
    assert!((jet_emd(&x, &[]).unwrap() - 0.9).abs() < 1e-12);
    assert_eq!(jet_emd(&[], &[]).unwrap(), 0.0);
}
