//! COV/MMD, FPD, KPD and the 36 d ≤ 4 EFPs against jetnet 0.2.5 itself on fixed pairs of the
//! built-in sample (fixtures: tests/vectors/jetnet_metrics/make_reference.py). EFPs agree to
//! rounding; the sampled metrics agree within their statistical errors (our draws come from
//! jetgen's generator, not numpy's).

mod common;

use std::collections::HashMap;

use jetgen::data::JetNetData;
use jetgen::metrics::{
    cov_mmd, efp, efp_graphs_d4, fpd, fpd_kpd_features, kpd, normalise, CovMmdConfig, FpdConfig,
    Graph, JetAngles, KpdConfig,
};
use serde_json::Value;

fn fixture() -> Value {
    let p = common::vectors_dir().join("jetnet_metrics/jetnet_metrics.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn sample(class: &str) -> JetNetData {
    JetNetData::read(&common::sample_dir().join(format!("{class}.hdf5"))).unwrap()
}

/// The first `n` jets (or the jets from `start`) of a sample.
fn slice(d: &JetNetData, start: usize, n: usize) -> JetNetData {
    let stride = d.n_particles * 4;
    let mut out = d.clone();
    out.n_jets = n;
    out.particles = d.particles[start * stride..(start + n) * stride].to_vec();
    out.jets = d.jets[start * 4..(start + n) * 4].to_vec();
    out
}

/// η_rel and φ_rel of every real particle × 1.2 (the fixture's "gwide").
fn widen(d: &JetNetData) -> JetNetData {
    let mut out = d.clone();
    for p in out.particles.chunks_exact_mut(4) {
        p[0] *= 1.2;
        p[1] *= 1.2;
    }
    out
}

fn pairs() -> Vec<(&'static str, JetNetData, JetNetData)> {
    let (g, t) = (sample("g"), sample("t"));
    vec![
        ("g_vs_t", g.clone(), t),
        ("g_vs_gwide", g.clone(), widen(&g)),
        ("g_vs_g", slice(&g, 0, 1000), slice(&g, 1000, 1000)),
    ]
}

#[test]
fn efp_d4_set_and_values_match_energyflow() {
    let f = fixture();
    let ef = &f["efp_d4"];
    let theirs: Vec<Graph> = ef["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let edges: Vec<(usize, usize)> = g
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e[0].as_u64().unwrap() as usize,
                        e[1].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            if edges.is_empty() {
                Graph {
                    n_vertices: 1,
                    edges,
                }
            } else {
                Graph::new(&edges).canonical()
            }
        })
        .collect();
    let ours = efp_graphs_d4();
    assert_eq!(ours.len(), 36);
    let mut a: Vec<&Graph> = theirs.iter().collect();
    let mut b: Vec<&Graph> = ours.iter().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the d ≤ 4 graph set differs from energyflow's");
    let g = sample("g");
    let stride = g.n_particles * 4;
    // the batch path (composites as products of cached components) gives the same values
    let batch = jetgen::metrics::jet_efp_features(&slice(&g, 0, 10), &theirs).unwrap();
    for (j, row) in ef["values"].as_array().unwrap().iter().enumerate() {
        for (k, want) in row.as_array().unwrap().iter().enumerate() {
            let (got, want) = (batch[j * 36 + k], want.as_f64().unwrap());
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1e-12),
                "batch jet {j} graph {k}: {got} vs {want}"
            );
        }
    }
    for (j, row) in ef["values"].as_array().unwrap().iter().enumerate() {
        let angles = JetAngles::new(&g.particles[j * stride..(j + 1) * stride], 4, 4);
        for (graph, want) in theirs.iter().zip(row.as_array().unwrap()) {
            let want = want.as_f64().unwrap();
            let got = efp(graph, &angles).unwrap();
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1e-12),
                "jet {j} graph {:?}: {got} vs energyflow {want}",
                graph.edges
            );
        }
    }
}

#[test]
fn cov_mmd_agree_with_jetnet() {
    let f = fixture();
    for (name, real, gen) in pairs() {
        let want = &f["pairs"][name];
        let r = cov_mmd(&real, &gen, &CovMmdConfig::jetnet(5)).unwrap();
        // both are means over 10 batches of independent draws: compare within 4σ of the
        // difference of two such means
        let tol = |std: f64| 4.0 * std * (2.0f64 / 10.0).sqrt() + 1e-3;
        let (wc, wm) = (want["cov"].as_f64().unwrap(), want["mmd"].as_f64().unwrap());
        println!(
            "{name}: cov {:.4} ± {:.4} (jetnet {wc:.4}), mmd {:.5} ± {:.5} (jetnet {wm:.5})",
            r.cov.mean, r.cov.std, r.mmd.mean, r.mmd.std
        );
        assert!((r.cov.mean - wc).abs() < tol(r.cov.std), "{name}: COV");
        assert!((r.mmd.mean - wm).abs() < tol(r.mmd.std), "{name}: MMD");
    }
}

#[test]
fn fpd_kpd_agree_with_jetnet() {
    let f = fixture();
    let mut seen = HashMap::new();
    for (name, real, gen) in pairs() {
        let want = &f["pairs"][name];
        let (fr, fg) = normalise(
            &fpd_kpd_features(&real).unwrap(),
            &fpd_kpd_features(&gen).unwrap(),
        )
        .unwrap();
        let p = fpd(&fr, &fg, &FpdConfig::jetnet(42)).unwrap();
        let k = kpd(&fr, &fg, &KpdConfig::jetnet(42)).unwrap();
        let (wf, wfe) = (
            want["fpd"][0].as_f64().unwrap(),
            want["fpd"][1].as_f64().unwrap(),
        );
        let (wk, wke) = (
            want["kpd"][0].as_f64().unwrap(),
            want["kpd"][1].as_f64().unwrap(),
        );
        println!("{name}: fpd {:.3e} ± {:.1e} (jetnet {wf:.3e} ± {wfe:.1e}); kpd {:.3e} ± {:.1e} (jetnet {wk:.3e} ± {wke:.1e})",
            p.mean, p.std, k.mean, k.std);
        let close =
            |a: f64, ea: f64, b: f64, eb: f64| (a - b).abs() <= 4.0 * ea.hypot(eb) + 0.02 * b.abs();
        assert!(close(p.mean, p.std, wf, wfe), "{name}: FPD");
        assert!(close(k.mean, k.std, wk, wke), "{name}: KPD");
        seen.insert(name, (p.mean, k.mean));
    }
    // truth vs truth is the floor for both
    for other in ["g_vs_gwide", "g_vs_t"] {
        assert!(seen["g_vs_g"].0 < seen[other].0 && seen["g_vs_g"].1 < seen[other].1);
    }
}

#[test]
fn evaluation_report_json_table_and_plots() {
    use jetgen::metrics::{evaluate, EvalConfig, Protocol};
    let (g, t) = (sample("g"), sample("t"));
    let cfg = EvalConfig {
        full: false,
        w1_batch_size: Some(2000),
        ..EvalConfig::new(Protocol::Mpgan, 3)
    };
    let mut stages = Vec::new();
    let r = evaluate(&g, &t, &cfg, &mut |s| stages.push(s.to_string())).unwrap();
    assert_eq!(stages, ["W1M", "W1P", "W1EFP"]);
    let j = r.to_json();
    for key in ["w1m", "w1p", "w1efp"] {
        assert!(
            j[key]["value"].as_f64().unwrap() > 0.0 && j[key]["error"].as_f64().unwrap() >= 0.0
        );
    }
    assert_eq!(j["w1p"]["per_feature"].as_array().unwrap().len(), 3);
    assert_eq!(j["w1efp"]["per_feature"].as_array().unwrap().len(), 5);
    for key in ["fpd", "kpd", "cov", "mmd"] {
        assert!(j[key].is_null(), "{key} not computed in a quick run");
    }
    assert_eq!(
        (j["n_real"].as_u64(), j["protocol"].as_str()),
        (Some(2000), Some("mpgan"))
    );
    // W1P mean is the mean of the features; MPGAN-era error is the L2 norm of their errors
    let per = r.w1p_per_feature;
    assert!((r.w1p.value - (per[0].value + per[1].value + per[2].value) / 3.0).abs() < 1e-15);
    assert!(
        (r.w1p.error - (per[0].error.powi(2) + per[1].error.powi(2) + per[2].error.powi(2)).sqrt())
            .abs()
            < 1e-15
    );
    assert!(r.table().contains("W1EFP"));
    // plots: six PNGs with the PNG signature
    let dir = std::env::temp_dir().join(format!("jetgen-plots-{}", std::process::id()));
    let files = jetgen::plots::comparison_plots(&g, &t, &dir).unwrap();
    assert_eq!(files.len(), 6);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            bytes.len() > 5000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{}",
            f.display()
        );
    }
    // bad input: NaN in the generated particles is an error, not a number
    let mut bad = t.clone();
    bad.particles[2] = f32::NAN;
    assert!(jetgen::metrics::cov_mmd(&g, &bad, &CovMmdConfig::jetnet(1)).is_err());
}
