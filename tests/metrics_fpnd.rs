//! FPND: our ParticleNet forward (jetnet's trained weights, compiled in) reproduces jetnet
//! 0.2.5's activations and FPND values (fixtures: tests/vectors/fpnd/make_reference.py, with
//! a pure-torch kNN standing in for torch_cluster).

mod common;

use jetgen::data::JetNetData;
use jetgen::metrics::{fpnd, ParticleNet};

fn fixture() -> serde_json::Value {
    let p = common::vectors_dir().join("fpnd/fpnd_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn activations_and_fpnd_match_jetnet() {
    let f = fixture();
    let g = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let t = JetNetData::read(&common::sample_dir().join("t.hdf5")).unwrap();
    let mut head = g.clone();
    head.n_jets = 32;
    head.particles.truncate(32 * 30 * 4);
    head.jets.truncate(32 * 4);
    let act = ParticleNet::jetnet30().unwrap().activations(&head).unwrap();
    let want: Vec<f64> = f["activations_g32"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(act.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (k, (a, w)) in act.iter().zip(&want).enumerate() {
        assert!(
            (*a as f64 - w).abs() <= 1e-4 * scale,
            "activation {k}: {a} vs jetnet {w}"
        );
    }
    for (data, key) in [(&g, "fpnd_g_sample_vs_g"), (&t, "fpnd_t_sample_vs_g")] {
        let got = fpnd(data, 'g').unwrap();
        let want = f[key].as_f64().unwrap();
        println!("{key}: {got:.4} (jetnet {want:.4})");
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "{key}: {got} vs jetnet {want}"
        );
    }
    // bad inputs
    assert!(fpnd(&g, 'w').is_err());
    let mut short = g.clone();
    short.n_jets = 1;
    short.particles.truncate(120);
    short.jets.truncate(4);
    assert!(fpnd(&short, 'g').is_err());
}
