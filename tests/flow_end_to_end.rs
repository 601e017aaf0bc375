//! The flow model end to end on the built-in sample (seconds): NLL goes down, the run
//! directory is complete, the checkpoint reloads to identical samples, sampling is
//! consistent with log_prob, inverse(forward(x)) = x, and a 1-D flow's density integrates to 1.

mod common;

use common::sample_dir;

use jetgen::data::JetNetData;
use jetgen::models::flow::{generate, load_checkpoint, train_flow, Flow, FlowConfig, FlowSettings};
use jetgen::nn::{CouplingKind, Ctx, Module};
use jetgen::ops::rqs::RqsConfig;
use jetgen::runs::settings::RunSettings;
use jetgen::{Device, Rng, Tensor};

#[test]
fn training_reduces_nll_and_writes_a_complete_run() {
    let data = JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    let out = std::env::temp_dir().join(format!("jetgen-flow-e2e-{}", std::process::id()));
    let settings = FlowSettings {
        layers: 2,
        hidden: 32,
        blocks: 1,
        run: RunSettings {
            steps: 40,
            batch: 64,
            val_every: 20,
            generate: 200,
            out: Some(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut lines = 0;
    let report = train_flow(&data, &settings, &mut |_| lines += 1).unwrap();
    assert!(lines > 0, "progress was reported");
    assert!(
        report.best_score < report.first_loss - 10.0,
        "NLL {} → {}",
        report.first_loss,
        report.best_score
    );
    for f in [
        "config.json",
        "checkpoint.safetensors",
        "train_log.csv",
        "generated.hdf5",
        "metrics.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    for f in [
        "loss.png",
        "jet_mass.png",
        "multiplicity.png",
        "particle_pt_rel.png",
    ] {
        assert!(out.join("plots").join(f).exists(), "plots/{f} missing");
    }
    // the full suite ran: every metric key has a finite value
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for key in ["w1m", "w1p", "w1efp", "fpd", "kpd", "cov", "mmd"] {
        assert!(
            metrics[key]["value"].as_f64().is_some_and(f64::is_finite),
            "{key}: {}",
            metrics[key]
        );
    }
    let log = std::fs::read_to_string(out.join("train_log.csv")).unwrap();
    assert!(log.starts_with("step,train_nll,val_nll,jets_per_s") && log.lines().count() > 3);
    let gen = JetNetData::read(&out.join("generated.hdf5")).unwrap();
    assert_eq!((gen.n_jets, gen.n_particles), (200, 30));
    // the checkpoint reloads and samples identically for a seed
    let m1 = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    let m2 = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    let a = generate(&m1, 50, 7, Device::Cpu).unwrap();
    let b = generate(&m2, 50, 7, Device::Cpu).unwrap();
    assert_eq!(a, b);
    // a file that is not a flow checkpoint is refused
    let err = load_checkpoint(&sample_dir().join("g.hdf5"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("g.hdf5"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

fn random_flow(features: usize, coupling: CouplingKind, seed: u64) -> Flow {
    let flow = Flow::new(
        FlowConfig {
            features,
            layers: 3,
            hidden: 16,
            blocks: 1,
            coupling,
            ..FlowConfig::default_for(features)
        },
        &mut Rng::new(seed),
        Device::Cpu,
    )
    .unwrap();
    // move away from the near-identity initialisation
    for layer in &flow.layers {
        for b in &layer.net.blocks {
            b.linear[1]
                .init_uniform(0.3, &mut Rng::new(seed + 1))
                .unwrap();
        }
    }
    flow
}

#[test]
fn inverse_of_forward_and_sample_log_prob_consistency() {
    for coupling in [
        CouplingKind::Rqs(RqsConfig::new(6, 3.0)),
        CouplingKind::Affine,
    ] {
        let flow = random_flow(6, coupling, 3);
        let ctx = Ctx::new(false, 0);
        let x = ctx.tape.constant(
            Rng::new(4)
                .normal(&[32, 6], 0.0, 1.5, Device::Cpu)
                .unwrap()
                .to_dtype(jetgen::DType::F64)
                .unwrap(),
        );
        for p in flow.params() {
            p.set_value(p.value().to_dtype(jetgen::DType::F64).unwrap());
        }
        let (z, logdet) = flow.transform(&ctx, &x, None).unwrap();
        let (back, log_q) = flow.sample_from_noise(&ctx, &z, None).unwrap();
        let (xv, bv) = (
            x.value().to_vec_f64().unwrap(),
            back.value().to_vec_f64().unwrap(),
        );
        assert!(
            xv.iter().zip(&bv).all(|(a, b)| (a - b).abs() < 1e-9),
            "{coupling:?}: inverse(forward(x)) != x"
        );
        // log q of the sample equals log_prob of the same point
        let lp = flow
            .log_prob(&ctx, &back, None)
            .unwrap()
            .value()
            .to_vec_f64()
            .unwrap();
        let lq = log_q.value().to_vec_f64().unwrap();
        assert!(
            lp.iter().zip(&lq).all(|(a, b)| (a - b).abs() < 1e-8),
            "{coupling:?}: sample log q vs log_prob"
        );
        let _ = logdet;
    }
}

#[test]
fn density_integrates_to_one_in_2d() {
    let flow = random_flow(2, CouplingKind::Rqs(RqsConfig::new(5, 2.0)), 9);
    for p in flow.params() {
        p.set_value(p.value().to_dtype(jetgen::DType::F64).unwrap());
    }
    // midpoint rule on [-8, 8]² (the base density beyond is negligible)
    let (lo, hi, n) = (-8.0f64, 8.0f64, 400usize);
    let h = (hi - lo) / n as f64;
    let pts: Vec<f64> = (0..n * n)
        .flat_map(|k| {
            [
                lo + (k / n) as f64 * h + h / 2.0,
                lo + (k % n) as f64 * h + h / 2.0,
            ]
        })
        .collect();
    let ctx = Ctx::new(false, 0);
    let x = ctx
        .tape
        .constant(Tensor::from_f64(&pts, &[n * n, 2]).unwrap());
    let lp = flow
        .log_prob(&ctx, &x, None)
        .unwrap()
        .value()
        .to_vec_f64()
        .unwrap();
    let total: f64 = lp.iter().map(|l| l.exp()).sum::<f64>() * h * h;
    assert!((total - 1.0).abs() < 2e-3, "∫ p = {total}");
}

/// The conditional flow (mass and multiplicity) trains, and its generated jets respect the
/// sampled multiplicities.
#[test]
fn conditional_flow_trains_and_respects_multiplicity() {
    use jetgen::models::conditions::Variant;
    let data = JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    let out = std::env::temp_dir().join(format!("jetgen-cnf-e2e-{}", std::process::id()));
    let settings = FlowSettings {
        layers: 2,
        hidden: 32,
        blocks: 1,
        variant: Variant::CnfMn,
        run: RunSettings {
            steps: 30,
            batch: 64,
            val_every: 15,
            generate: 300,
            quick_eval: true,
            plots: false,
            out: Some(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let report = train_flow(&data, &settings, &mut |_| ()).unwrap();
    assert!(report.best_score < report.first_loss);
    let model = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    assert_eq!(model.variant, Variant::CnfMn);
    assert_eq!(model.flow.config.context, 2);
    let gen = generate(&model, 300, 1, Device::Cpu).unwrap();
    let max_n = jetgen::physics::multiplicities(&data)
        .into_iter()
        .max()
        .unwrap();
    assert!(jetgen::physics::multiplicities(&gen)
        .into_iter()
        .all(|n| n <= max_n));
    std::fs::remove_dir_all(&out).ok();
}

/// The mass-constrained flow trains through the inverse pass: finite losses, a checkpoint of
/// the right variant, and generation.
#[test]
fn mass_constrained_flow_trains() {
    use jetgen::models::conditions::Variant;
    let data = JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    let out = std::env::temp_dir().join(format!("jetgen-ccnf-e2e-{}", std::process::id()));
    let settings = FlowSettings {
        layers: 2,
        hidden: 32,
        blocks: 1,
        variant: Variant::CcnfM,
        run: RunSettings {
            steps: 20,
            batch: 32,
            val_every: 10,
            generate: 100,
            quick_eval: true,
            plots: false,
            out: Some(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let report = train_flow(&data, &settings, &mut |_| ()).unwrap();
    assert!(report.best_score.is_finite() && report.metrics.w1m.value.is_finite());
    let model = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    assert_eq!(model.variant, Variant::CcnfM);
    assert_eq!(generate(&model, 10, 0, Device::Cpu).unwrap().n_jets, 10);
    std::fs::remove_dir_all(&out).ok();
}

/// The CCNF mass constraint does what it is for: with the same seed, architecture and steps,
/// jets generated for given masses have a smaller mass error than the plain CNF(m)'s, and
/// conditional generation honours the requested conditions' shape rules.
#[test]
fn mass_constraint_lowers_the_mass_error() {
    use jetgen::models::conditions::{Conditions, Variant};
    use jetgen::models::flow::generate_conditional;
    let data = JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    let given = Conditions::of(&data, &(0..300).collect::<Vec<_>>());
    let mut errors = Vec::new();
    for variant in [Variant::CnfM, Variant::CcnfM] {
        let out = std::env::temp_dir().join(format!(
            "jetgen-ccnf-vs-cnf-{}-{}",
            variant.name(),
            std::process::id()
        ));
        let settings = FlowSettings {
            layers: 3,
            hidden: 64,
            blocks: 1,
            variant,
            reflect: false,
            run: RunSettings {
                steps: 250,
                batch: 128,
                val_every: 250,
                generate: 100,
                quick_eval: true,
                plots: false,
                out: Some(out.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        train_flow(&data, &settings, &mut |_| ()).unwrap();
        let model = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
        let gen = generate_conditional(&model, &given, 11, Device::Cpu).unwrap();
        let masses = jetgen::physics::relative_masses(&gen);
        let err = masses
            .iter()
            .zip(&given.mass)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / 300.0;
        println!("{}: mean |m_gen − m_cond| = {err:.4}", variant.name());
        errors.push(err);
        // bad conditions are errors
        let neg = Conditions {
            mass: vec![-0.1],
            n: vec![30.0],
        };
        assert!(generate_conditional(&model, &neg, 0, Device::Cpu).is_err());
        std::fs::remove_dir_all(&out).ok();
    }
    assert!(
        errors[1] < 0.9 * errors[0],
        "CCNF {:.4} vs CNF {:.4}",
        errors[1],
        errors[0]
    );
}

/// Random coupling masks: half the features per layer, different per layer, rebuilt
/// identically from a checkpoint.
#[test]
fn random_masks_are_seeded_and_survive_checkpoints() {
    use jetgen::models::flow::MaskKind;
    let masks = MaskKind::Random { seed: 5 };
    let (a, b) = (masks.mask(90, 0), masks.mask(90, 1));
    assert_eq!(a.iter().filter(|&&t| t).count(), 45);
    assert_ne!(a, b);
    assert_eq!(a, MaskKind::Random { seed: 5 }.mask(90, 0));
    assert_ne!(a, MaskKind::Random { seed: 6 }.mask(90, 0));
    assert_eq!(
        MaskKind::Random { seed: 1 }
            .mask(7, 0)
            .iter()
            .filter(|&&t| t)
            .count(),
        4
    );
    let data = JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    let out = std::env::temp_dir().join(format!("jetgen-random-masks-{}", std::process::id()));
    let settings = FlowSettings {
        layers: 2,
        hidden: 16,
        blocks: 1,
        masks: jetgen::models::flow::MaskChoice::Random,
        run: RunSettings {
            seed: 5,
            steps: 10,
            batch: 32,
            val_every: 10,
            generate: 20,
            quick_eval: true,
            plots: false,
            out: Some(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    train_flow(&data, &settings, &mut |_| ()).unwrap();
    let model = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    assert_eq!(model.flow.config.masks, masks);
    assert_eq!(model.flow.layers[1].mask, masks.mask(90, 1));
    std::fs::remove_dir_all(&out).ok();
}
