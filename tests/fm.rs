//! Flow matching: the EPiC velocity network is permutation-equivariant and padded particles
//! never influence real ones; the loss of a tiny model against a hand-computed case; OT
//! pairings; the likelihood of a linear velocity field against its closed form;
//! Hutchinson's estimator unbiased; few-step training lowers the loss; a trained run
//! sampled and scored through the registry, the solvers and the C API.

mod common;

use jetgen::autograd::CreateGraph;
use jetgen::data::JetNetData;
use jetgen::models::conditions::Conditions;
use jetgen::models::flow_data::Standardizer;
use jetgen::models::fm::coupling::{cost_matrix, pair};
use jetgen::models::fm::inference::{EpicInference, JETS_PER_TASK};
use jetgen::models::fm::likelihood::{divergence, log_density, rademacher, Divergence};
use jetgen::models::fm::path::interpolate;
use jetgen::models::fm::training::{batch_loss, FmBatch};
use jetgen::models::fm::{
    train_fm, Coupling, EpicConfig, EpicNet, FmCondition, FmSettings, TrainedFm,
};
use jetgen::nn::{Adam, AdamConfig, Ctx, Module};
use jetgen::ode::{Method, SolverSettings};
use jetgen::runs::settings::RunSettings;
use jetgen::{Device, Rng, Tensor, Var};

fn tiny_config(particles: usize, context: usize) -> EpicConfig {
    EpicConfig {
        particles,
        layers: 2,
        hidden: 8,
        global: 3,
        time_embed: 4,
        context,
        sum_scale: 0.1,
    }
}

fn tiny_model(particles: usize, condition: FmCondition, seed: u64) -> TrainedFm {
    TrainedFm {
        net: EpicNet::new(
            tiny_config(particles, condition.context_dim()),
            &mut Rng::new(seed),
            Device::Cpu,
        )
        .unwrap(),
        standardizer: Standardizer {
            mean: vec![0.0, 0.0, 0.05],
            std: vec![0.1, 0.1, 0.05],
        },
        condition,
        conditions: Conditions {
            mass: vec![0.1; 8],
            n: vec![2.0, 3.0, 3.0, 4.0, 4.0, 4.0, 5.0, 5.0],
        },
        scale: [0.1, 0.02, 4.0, 1.0],
        pt: vec![],
        pt_scale: [0.0, 1.0],
        sigma_min: 1e-4,
        sampler: SolverSettings::fixed(Method::Midpoint, 4),
    }
}

/// v of `net` for particles `x [B, P, 3]`, mask `[B, P]`, time t, optional context.
fn velocity(net: &EpicNet, x: &[f32], mask: &[f32], t: f32, context: Option<&[f32]>) -> Vec<f32> {
    let p = net.config.particles;
    let b = mask.len() / p;
    let ctx = Ctx::new(false, 0);
    let m = Tensor::from_slice(mask, &[b, p], Device::Cpu).unwrap();
    let frame = net.frame(&ctx, &vec![t; b], &m).unwrap();
    let xv = ctx
        .tape
        .constant(Tensor::from_slice(x, &[b, p, 3], Device::Cpu).unwrap());
    let c = context.map(|c| {
        ctx.tape
            .constant(Tensor::from_slice(c, &[b, c.len() / b], Device::Cpu).unwrap())
    });
    net.forward(&ctx, &xv, &frame, c.as_ref())
        .unwrap()
        .value()
        .to_vec()
        .unwrap()
}

#[test]
fn the_velocity_network_is_permutation_equivariant_and_ignores_padding() {
    let p = 6;
    let net = EpicNet::new(tiny_config(p, 1), &mut Rng::new(3), Device::Cpu).unwrap();
    let mut rng = Rng::new(4);
    let x = rng
        .normal(&[2, p, 3], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    // jet 0: particles 1 and 4 padded; jet 1: particle 5 padded
    let mask = [1., 0., 1., 1., 0., 1., 1., 1., 1., 1., 1., 0.];
    let context = [0.3f32, -1.2];
    let v = velocity(&net, &x, &mask, 0.37, Some(&context));
    // padded particles get no velocity
    for (k, &m) in mask.iter().enumerate() {
        if m == 0.0 {
            assert!(v[k * 3..k * 3 + 3].iter().all(|&e| e == 0.0));
        } else {
            assert!(v[k * 3..k * 3 + 3].iter().any(|&e| e != 0.0));
        }
    }
    // permuting the particles of each jet (with their mask) permutes the velocity
    let perm = [3usize, 5, 0, 4, 1, 2];
    let (mut xp, mut mp) = (x.clone(), mask);
    for b in 0..2 {
        for (j, &src) in perm.iter().enumerate() {
            mp[b * p + j] = mask[b * p + src];
            for f in 0..3 {
                xp[(b * p + j) * 3 + f] = x[(b * p + src) * 3 + f];
            }
        }
    }
    let vp = velocity(&net, &xp, &mp, 0.37, Some(&context));
    for b in 0..2 {
        for (j, &src) in perm.iter().enumerate() {
            for f in 0..3 {
                let (a, c) = (vp[(b * p + j) * 3 + f], v[(b * p + src) * 3 + f]);
                assert!((a - c).abs() < 1e-5, "jet {b} particle {j}: {a} vs {c}");
            }
        }
    }
    // changing the padded particles' features changes nothing
    let mut xq = x.clone();
    for (k, &m) in mask.iter().enumerate() {
        if m == 0.0 {
            for f in 0..3 {
                xq[k * 3 + f] = 1e3 * (f as f32 + 1.0);
            }
        }
    }
    assert_eq!(velocity(&net, &xq, &mask, 0.37, Some(&context)), v);
    // and the gradient of the real particles' velocity wrt the padded ones is exactly 0
    let ctx = Ctx::new(false, 0);
    let mt = Tensor::from_slice(&mask, &[2, p], Device::Cpu).unwrap();
    let frame = net.frame(&ctx, &[0.37, 0.37], &mt).unwrap();
    let xv = ctx
        .tape
        .var(Tensor::from_slice(&x, &[2, p, 3], Device::Cpu).unwrap());
    let c = ctx
        .tape
        .constant(Tensor::from_slice(&context, &[2, 1], Device::Cpu).unwrap());
    let out = net.forward(&ctx, &xv, &frame, Some(&c)).unwrap();
    let g = ctx
        .tape
        .grad(&out.sum_all().unwrap(), &[&xv], CreateGraph::No)
        .unwrap();
    let g = g[0].value().to_vec().unwrap();
    for (k, &m) in mask.iter().enumerate() {
        let gk = &g[k * 3..k * 3 + 3];
        if m == 0.0 {
            assert!(gk.iter().all(|&e| e == 0.0), "padded particle {k}: {gk:?}");
        }
    }
    // the jets of a batch do not see each other: jet 1 alone gives the same velocity
    let alone = velocity(&net, &x[p * 3..], &mask[p..], 0.37, Some(&context[1..]));
    for (a, b) in alone.iter().zip(&v[p * 3..]) {
        assert!((a - b).abs() < 1e-5);
    }
    // the reference configuration has the EPiC-FM size (≈ 0.5 M parameters)
    let reference = EpicConfig::reference(30, 0);
    let n = EpicNet::new(reference.clone(), &mut Rng::new(0), Device::Cpu)
        .unwrap()
        .params()
        .iter()
        .map(|p| p.value().numel())
        .sum::<usize>();
    assert_eq!(n as u128, reference.parameter_count());
    assert!((400_000..700_000).contains(&n), "{n} parameters");
    // bad shapes are errors
    let ctx = Ctx::new(false, 0);
    assert!(net.frame(&ctx, &[0.1], &mt).is_err());
    let frame = net.frame(&ctx, &[0.1, 0.2], &mt).unwrap();
    let bad = ctx
        .tape
        .constant(Tensor::zeros(&[2, p, 2], Device::Cpu).unwrap());
    assert!(net.forward(&ctx, &bad, &frame, Some(&c)).is_err());
    let good = ctx
        .tape
        .constant(Tensor::zeros(&[2, p, 3], Device::Cpu).unwrap());
    assert!(
        net.forward(&ctx, &good, &frame, None).is_err(),
        "missing context"
    );
}

#[test]
fn the_fused_epic_layers_match_the_composed_network() {
    // the same weights, fused (CPU custom ops) vs composed from tape ops: equal velocities
    // and equal parameter and input gradients, with and without a context
    for context in [0usize, 1] {
        let p = 5;
        let mut net = EpicNet::new(tiny_config(p, context), &mut Rng::new(8), Device::Cpu).unwrap();
        let mut rng = Rng::new(9);
        let x = rng.normal(&[3, p, 3], 0.0, 1.0, Device::Cpu).unwrap();
        let mask = Tensor::from_slice(
            &[1., 1., 1., 0., 0., 1., 1., 1., 1., 1., 1., 0., 0., 0., 0.],
            &[3, p],
            Device::Cpu,
        )
        .unwrap();
        let cvals = [0.5f32, -0.3, 1.1];
        let mut run = |fused: bool| {
            net.fused = fused;
            net.params().iter().for_each(|q| q.zero_grad());
            let ctx = Ctx::new(true, 0);
            let frame = net.frame(&ctx, &[0.1, 0.5, 0.9], &mask).unwrap();
            let c = (context > 0).then(|| {
                ctx.tape
                    .constant(Tensor::from_slice(&cvals, &[3, 1], Device::Cpu).unwrap())
            });
            let xv = ctx.tape.var(x.clone());
            let v = net.forward(&ctx, &xv, &frame, c.as_ref()).unwrap();
            let loss = v.square().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let gx = grads.get(&xv).unwrap().to_vec().unwrap();
            let gp: Vec<Vec<f32>> = net
                .params()
                .iter()
                .map(|q| q.grad().unwrap().to_vec().unwrap())
                .collect();
            (v.value().to_vec().unwrap(), gx, gp, ctx.tape.len())
        };
        let (v1, gx1, gp1, nodes1) = run(true);
        let (v0, gx0, gp0, nodes0) = run(false);
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 + 1e-4 * y.abs(),
                    "{what}[{k}]: {x} vs {y}"
                );
            }
        };
        close(&v1, &v0, "velocity");
        close(&gx1, &gx0, "∂/∂x");
        for (k, (a, b)) in gp1.iter().zip(&gp0).enumerate() {
            close(a, b, &format!("parameter {k}"));
        }
        assert!(
            nodes1 < nodes0,
            "fused records fewer nodes ({nodes1} vs {nodes0})"
        );
    }
}

#[test]
fn the_tape_free_inference_path_matches_the_tape_forward() {
    // generation's CPU path (compact rows, packed-panel GEMMs, chunks of jets per task)
    // against the tape forward: per-jet times, a context, empty and full jets, more jets
    // than one task holds, and both a tiny and the reference width (odd GEMM edges: H = 8,
    // G + T = 42, out 3)
    for (config, seed) in [
        (tiny_config(7, 1), 3u64),
        (EpicConfig::reference(30, 2), 4),
        (EpicConfig::reference(30, 0), 5),
    ] {
        let p = config.particles;
        let k = config.context;
        let net = EpicNet::new(config, &mut Rng::new(seed), Device::Cpu).unwrap();
        let b = 2 * JETS_PER_TASK + 3;
        let mut rng = Rng::new(seed + 10);
        let counts: Vec<usize> = (0..b)
            .map(|j| match j {
                0 => 0,
                1 => p,
                _ => 1 + rng.below(p),
            })
            .collect();
        let mask: Vec<f32> = counts
            .iter()
            .flat_map(|&n| (0..p).map(move |q| f32::from(q < n)))
            .collect();
        let mut x = rng
            .normal(&[b, p, 3], 0.0, 1.0, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        for (i, v) in x.iter_mut().enumerate() {
            *v *= mask[i / 3];
        }
        let t: Vec<f32> = (0..b).map(|j| j as f32 / b as f32).collect();
        let context: Vec<f32> = (0..b * k).map(|i| (i as f32 * 0.37).sin()).collect();
        // the tape forward with per-jet times
        let ctx = Ctx::new(false, 0);
        let m = Tensor::from_slice(&mask, &[b, p], Device::Cpu).unwrap();
        let frame = net.frame(&ctx, &t, &m).unwrap();
        let xv = ctx
            .tape
            .constant(Tensor::from_slice(&x, &[b, p, 3], Device::Cpu).unwrap());
        let c = (k > 0).then(|| {
            ctx.tape
                .constant(Tensor::from_slice(&context, &[b, k], Device::Cpu).unwrap())
        });
        let want = net
            .forward(&ctx, &xv, &frame, c.as_ref())
            .unwrap()
            .value()
            .to_vec()
            .unwrap();
        let fast = EpicInference::new(&net).unwrap();
        let got = fast.velocity(&x, &t, &mask, &context).unwrap();
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(scale > 0.0);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * scale + 1e-4 * w.abs(),
                "p{p} k{k} v[{i}]: {g} vs {w}"
            );
            if mask[i / 3] == 0.0 {
                assert_eq!(*g, 0.0, "a padded particle's velocity is zero");
            }
        }
        // a composed network and one whose weights disagree with its config are refused
        let mut composed =
            EpicNet::new(net.config.clone(), &mut Rng::new(seed), Device::Cpu).unwrap();
        composed.fused = false;
        assert!(!EpicInference::applies_to(&composed));
        assert!(EpicInference::new(&composed).is_err());
        let broken = EpicNet::new(net.config.clone(), &mut Rng::new(seed), Device::Cpu).unwrap();
        broken
            .out
            .weight
            .set_value(Tensor::zeros(&[4, net.config.hidden], Device::Cpu).unwrap());
        let err = EpicInference::new(&broken)
            .err()
            .expect("a [4, H] output weight is refused");
        assert!(err.to_string().contains("weight"), "{err}");
        // shapes that do not fit are refused, not read out of bounds
        assert!(fast.velocity(&x[1..], &t, &mask, &context).is_err());
        assert!(
            fast.velocity(&x, &t, &mask, &context[..k.saturating_sub(1)])
                .is_err()
                || k == 0
        );
    }
}

#[test]
fn the_loss_of_a_tiny_model_matches_a_hand_computed_case() {
    // path: σ_min = 0.1, t = 0.25, one real and one padded particle
    let x0 = [1.0f32, 2.0, 3.0, 9.0, 9.0, 9.0];
    let x1 = [0.5f32, -1.0, 2.0, 0.0, 0.0, 0.0];
    let (xt, u) = interpolate(&x0, &x1, &[0.25], 0.1).unwrap();
    let want_xt = [0.9f32, 1.3, 2.825];
    let want_u = [-0.4f32, -2.8, -0.7];
    for f in 0..3 {
        assert!((xt[f] - want_xt[f]).abs() < 1e-6 && (u[f] - want_u[f]).abs() < 1e-6);
    }
    // a network whose output layer is the constant (0.1, −0.2, 0.3): v = b on real particles
    let mut m = tiny_model(2, FmCondition::None, 1);
    m.sigma_min = 0.1;
    m.net
        .out
        .weight
        .set_value(Tensor::zeros(&[3, 8], Device::Cpu).unwrap());
    m.net
        .out
        .bias
        .as_ref()
        .unwrap()
        .set_value(Tensor::from_slice(&[0.1, -0.2, 0.3], &[3], Device::Cpu).unwrap());
    let batch = FmBatch {
        x: x1.to_vec(),
        mask: vec![1.0, 0.0],
        context: vec![],
        len: 1,
    };
    let ctx = Ctx::new(false, 0);
    let loss = batch_loss(&ctx, &m, &batch, &x0, &[0.25], Device::Cpu)
        .unwrap()
        .value()
        .item()
        .unwrap();
    // ((0.1 + 0.4)² + (−0.2 + 2.8)² + (0.3 + 0.7)²) / 3 = (0.25 + 6.76 + 1) / 3
    assert!((loss - 8.01 / 3.0).abs() < 1e-5, "loss {loss}");
    // no real particle: an error, not a NaN
    let empty = FmBatch {
        mask: vec![0.0, 0.0],
        ..batch
    };
    assert!(batch_loss(&ctx, &m, &empty, &x0, &[0.25], Device::Cpu).is_err());
}

#[test]
fn ot_pairings_lower_the_transport_cost() {
    let (b, p) = (12, 4);
    let mut rng = Rng::new(9);
    let x0 = rng
        .normal(&[b * p * 3], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let x1 = rng
        .normal(&[b * p * 3], 0.5, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let mask: Vec<f32> = (0..b * p)
        .map(|k| f32::from(k % p < 2 + k / p % 3))
        .collect();
    let cost = cost_matrix(&x0, &x1, &mask, b);
    let total = |pairing: &[usize]| -> f64 { (0..b).map(|j| cost[pairing[j] * b + j]).sum() };
    let identity = pair(&x0, &x1, &mask, b, Coupling::Independent, &mut rng).unwrap();
    assert_eq!(identity, (0..b).collect::<Vec<_>>());
    let exact = pair(&x0, &x1, &mask, b, Coupling::Exact, &mut rng).unwrap();
    let mut sorted = exact.clone();
    sorted.sort();
    assert_eq!(sorted, (0..b).collect::<Vec<_>>(), "a permutation");
    // the exact assignment is at least as cheap as any of many random permutations
    for _ in 0..200 {
        let mut perm: Vec<usize> = (0..b).collect();
        rng.shuffle(&mut perm);
        assert!(total(&exact) <= total(&perm) + 1e-9);
    }
    let sink = pair(&x0, &x1, &mask, b, Coupling::Sinkhorn, &mut rng).unwrap();
    assert!(sink.iter().all(|&i| i < b));
    assert!(
        total(&sink) < total(&identity),
        "{} vs {}",
        total(&sink),
        total(&identity)
    );
    assert!(pair(&x0, &x1[1..], &mask, b, Coupling::Exact, &mut rng).is_err());
}

/// e^{sA} by its Taylor series (‖A‖ small), row-major D × D.
fn expm(a: &[f64], d: usize, s: f64) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    let mut term = vec![0f64; d * d];
    for i in 0..d {
        out[i * d + i] = 1.0;
        term[i * d + i] = 1.0;
    }
    for k in 1..40 {
        let mut next = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                next[i * d + j] =
                    (0..d).map(|l| term[i * d + l] * a[l * d + j]).sum::<f64>() * s / k as f64;
            }
        }
        term = next;
        for (o, t) in out.iter_mut().zip(&term) {
            *o += t;
        }
    }
    out
}

#[test]
fn the_likelihood_of_a_linear_field_matches_its_closed_form() {
    // v(x) = A x on the 6 dimensions of a 2-particle jet: x₁ = e^{A} x₀, so
    // log p₁(x₁) = log N(e^{−A} x₁) − tr A
    let (p, d) = (2, 6);
    let mut rng = Rng::new(5);
    let a: Vec<f64> = rng
        .normal(&[d * d], 0.0, 0.3, Device::Cpu)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let at = Tensor::from_f64(&a, &[d, d]).unwrap();
    let field = |ctx: &Ctx, x: &Var, _t: f64| -> jetgen::Result<Var> {
        let b = x.shape()[0];
        x.reshape(&[b, d])?
            .matmul_t(&ctx.tape.constant(at.clone()), false, true)?
            .reshape(&[b, p, 3])
    };
    let x1: Vec<f64> = rng
        .normal(&[3 * d], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let x1t = Tensor::from_f64(&x1, &[3, p, 3]).unwrap();
    let mask = vec![1.0f32; 3 * p];
    let inv = expm(&a, d, -1.0);
    let trace: f64 = (0..d).map(|i| a[i * d + i]).sum();
    let want: Vec<f64> = (0..3)
        .map(|b| {
            let x0: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| inv[i * d + j] * x1[b * d + j]).sum())
                .collect();
            x0.iter()
                .map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln())
                .sum::<f64>()
                - trace
        })
        .collect();
    for solver in [
        SolverSettings::adaptive(1e-9, 1e-9),
        SolverSettings::fixed(Method::Rk4, 50),
    ] {
        let (got, nfe) = log_density(&field, &x1t, &mask, Divergence::Exact, &solver).unwrap();
        assert!(nfe > 0);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{solver:?}: {g} vs {w}");
        }
    }
    // Hutchinson on a linear field along the same trajectory: unbiased, close for many probes
    let (got, _) = log_density(
        &field,
        &x1t,
        &mask,
        Divergence::Hutchinson {
            probes: 64,
            seed: 1,
        },
        &SolverSettings::fixed(Method::Rk4, 20),
    )
    .unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 0.5, "hutchinson {g} vs {w}");
    }
}

#[test]
fn hutchinson_divergence_is_unbiased_for_the_network() {
    let p = 4;
    let net = EpicNet::new(tiny_config(p, 0), &mut Rng::new(11), Device::Cpu).unwrap();
    let mask = vec![1., 1., 1., 0., 1., 1., 0., 0.];
    let mt = Tensor::from_slice(&mask, &[2, p], Device::Cpu).unwrap();
    let field = |ctx: &Ctx, x: &Var, t: f64| -> jetgen::Result<Var> {
        let frame = net.frame(ctx, &[t as f32; 2], &mt)?;
        net.forward(ctx, x, &frame, None)
    };
    let mut rng = Rng::new(12);
    let x = rng.normal(&[2, p, 3], 0.0, 1.0, Device::Cpu).unwrap();
    let (_, exact) = divergence(&field, &x, 0.6, &mask, &[]).unwrap();
    // the exact trace equals Σ of the Jacobian diagonal by finite differences
    let xs = x.to_vec().unwrap();
    let h = 1e-2f32;
    let v_at = |xv: &[f32]| -> Vec<f32> {
        let ctx = Ctx::new(false, 0);
        let t = Tensor::from_slice(xv, &[2, p, 3], Device::Cpu).unwrap();
        field(&ctx, &ctx.tape.constant(t), 0.6)
            .unwrap()
            .value()
            .to_vec()
            .unwrap()
    };
    for b in 0..2 {
        let mut fd = 0f64;
        for k in 0..p * 3 {
            let i = b * p * 3 + k;
            if mask[i / 3] == 0.0 {
                continue;
            }
            let (mut up, mut dn) = (xs.clone(), xs.clone());
            up[i] += h;
            dn[i] -= h;
            fd += ((v_at(&up)[i] - v_at(&dn)[i]) / (2.0 * h)) as f64;
        }
        assert!(
            (fd - exact[b]).abs() < 2e-2 * (1.0 + exact[b].abs()),
            "jet {b}: {fd} vs {}",
            exact[b]
        );
    }
    let k = 400;
    let mut samples = vec![Vec::new(); 2];
    for s in 0..k {
        let eps = rademacher(&mut Rng::new(100 + s), &mask, Device::Cpu, &[2, p, 3]).unwrap();
        let (_, est) = divergence(&field, &x, 0.6, &mask, &[eps]).unwrap();
        for b in 0..2 {
            samples[b].push(est[b]);
        }
    }
    for b in 0..2 {
        let mean = samples[b].iter().sum::<f64>() / k as f64;
        let var = samples[b].iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
        let se = (var / k as f64).sqrt();
        assert!(
            (mean - exact[b]).abs() < 4.0 * se + 1e-9,
            "jet {b}: Hutchinson mean {mean} ± {se} vs exact {}",
            exact[b]
        );
        assert!(var > 0.0, "a nonlinear field's estimate varies");
    }
}

#[test]
fn few_training_steps_lower_the_loss() {
    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let p = data.n_particles;
    let m = tiny_model(p, FmCondition::None, 2);
    let idx: Vec<usize> = (0..64).filter(|&i| data.multiplicity(i) > 0).collect();
    let batch = FmBatch::of(&data, &idx, &m.standardizer, &m);
    let mut rng = Rng::new(3);
    let x0: Vec<f32> = rng
        .normal(&[batch.x.len()], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let t = rng
        .uniform(&[batch.len], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut opt = Adam::new(m.net.params(), AdamConfig::adamw(1e-2));
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad();
        let ctx = Ctx::new(true, 0);
        let loss = batch_loss(&ctx, &m, &batch, &x0, &t, Device::Cpu).unwrap();
        losses.push(loss.value().item().unwrap());
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    // the loss has an irreducible part (the variance of x₁ − x₀ given x_t): it falls, not to 0
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[55..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.85 * first, "loss {first} → {last} ({losses:?})");
}

fn tiny_settings(out: &std::path::Path) -> FmSettings {
    FmSettings {
        layers: 2,
        hidden: 16,
        global: 4,
        time_embed: 8,
        solver_steps: 3,
        val_steps: 2,
        val_jets: 100,
        coupling: Coupling::Exact,
        ema: 0.9,
        run: RunSettings {
            steps: 6,
            batch: 32,
            val_every: 3,
            generate: 100,
            quick_eval: true,
            plots: false,
            out: Some(out.to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn a_trained_run_samples_and_scores_through_the_registry_and_the_c_api() {
    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let out = std::env::temp_dir().join(format!("jetgen-fm-{}", std::process::id()));
    let s = FmSettings {
        condition: FmCondition::Mass,
        ..tiny_settings(&out)
    };
    let report = train_fm(&data, &s, &mut |_| {}).unwrap();
    assert_eq!(report.steps_run, 6);
    assert!(report.best_score.is_finite() && report.best_score > 0.0);
    for f in [
        "config.json",
        "checkpoint.safetensors",
        "train_log.csv",
        "generated.hdf5",
        "metrics.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let mut g = jetgen::runs::load_generator(&out, Device::Cpu).unwrap();
    assert_eq!(g.name(), "fm/mass");
    assert!(g.conditioning().mass);
    let a = g.generate(40, 7).unwrap();
    assert_eq!((a.n_jets, a.n_particles), (40, 30));
    assert_eq!(g.last_evaluations(), Some(6), "midpoint 3 steps");
    assert_eq!(a, g.generate(40, 7).unwrap(), "seeded");
    // masks come from the drawn multiplicity: the first n particles are real
    for i in 0..a.n_jets {
        let n = a.multiplicity(i);
        assert!(n >= 1 && a.jet(i)[3] as usize == n);
        assert!((0..30).all(|j| (a.particle(i, j)[3] != 0.0) == (j < n)));
    }
    // other solvers through the Generator; Dopri5 reports its own count
    for (solver, nfe) in [
        (SolverSettings::fixed(Method::Euler, 5), Some(5)),
        (SolverSettings::fixed(Method::Rk4, 2), Some(8)),
        (SolverSettings::adaptive(1e-3, 1e-3), None),
    ] {
        g.set_solver(&solver).unwrap();
        let b = g.generate(10, 1).unwrap();
        assert_eq!(b.n_jets, 10);
        let used = g.last_evaluations().unwrap();
        match nfe {
            Some(k) => assert_eq!(used, k),
            None => assert!(used >= 8, "dopri5 used {used}"),
        }
    }
    g.set_solver(&SolverSettings::fixed(Method::Midpoint, 3))
        .unwrap();
    assert!(g
        .set_solver(&SolverSettings::fixed(Method::Euler, 0))
        .is_err());
    // conditional generation at a given mass and multiplicity
    let c = g
        .generate_conditional(
            &Conditions {
                mass: vec![0.1; 5],
                n: vec![12.0; 5],
            },
            3,
        )
        .unwrap();
    assert!((0..5).all(|i| c.multiplicity(i) == 12));
    // log-densities: finite, and the C API gives the same as the Rust API
    let real = data.select(&[0, 1, 2]).unwrap();
    let lp = g.log_prob(&real).unwrap();
    assert!(lp.iter().all(|v| v.is_finite()), "{lp:?}");
    let (mut parts, mut jets) = (vec![0f32; 40 * 30 * 4], vec![0f32; 40 * 4]);
    let mut c_lp = vec![0f64; 3];
    let mut handle = std::ptr::null_mut();
    let path = std::ffi::CString::new(out.to_str().unwrap()).unwrap();
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
                40,
                7,
                parts.as_mut_ptr(),
                parts.len(),
                jets.as_mut_ptr(),
                jets.len()
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        assert_eq!(
            jetgen::ffi::jetgen_model_log_prob(
                handle,
                3,
                real.particles.as_ptr(),
                real.particles.len(),
                c_lp.as_mut_ptr()
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        jetgen::ffi::jetgen_model_free(handle);
    }
    assert_eq!(parts, a.particles, "C API = Rust API");
    for (x, y) in c_lp.iter().zip(&lp) {
        assert!((x - y).abs() < 1e-6 * (1.0 + y.abs()), "{x} vs {y}");
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bad_settings_and_checkpoints_are_refused() {
    let out = std::env::temp_dir().join("jetgen-fm-refused");
    for s in [
        FmSettings {
            ema: 1.0,
            ..tiny_settings(&out)
        },
        FmSettings {
            sigma_min: -0.1,
            ..tiny_settings(&out)
        },
        FmSettings {
            time_embed: 7,
            ..tiny_settings(&out)
        },
        FmSettings {
            solver_steps: 0,
            ..tiny_settings(&out)
        },
        FmSettings {
            val_jets: 0,
            ..tiny_settings(&out)
        },
    ] {
        assert!(s.validate().is_err(), "{s:?}");
    }
    assert!(!out.exists(), "nothing written");
    // a checkpoint round trip keeps the velocity; a damaged one is a clean error
    let dir = std::env::temp_dir().join(format!("jetgen-fm-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let m = tiny_model(5, FmCondition::Mass, 4);
    jetgen::models::fm::save_checkpoint(&path, &m).unwrap();
    let back = jetgen::models::fm::load_checkpoint(&path, Device::Cpu).unwrap();
    let x = Rng::new(1)
        .normal(&[1, 5, 3], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let mask = [1., 1., 1., 0., 0.];
    assert_eq!(
        velocity(&m.net, &x, &mask, 0.5, Some(&[0.2])),
        velocity(&back.net, &x, &mask, 0.5, Some(&[0.2]))
    );
    assert_eq!(back.conditions.n, m.conditions.n);
    assert!(back
        .conditions
        .mass
        .iter()
        .zip(&m.conditions.mass)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    let (mut tensors, mut meta) = jetgen::nn::store::load_tensors(&path).unwrap();
    tensors.insert(
        "conditions.n".into(),
        Tensor::from_slice(&[3.0, 40.0], &[2], Device::Cpu).unwrap(),
    );
    tensors.remove("conditions.mass");
    tensors.insert(
        "conditions.mass".into(),
        Tensor::from_slice(&[0.1, 0.1], &[2], Device::Cpu).unwrap(),
    );
    let bad = dir.join("bad.safetensors");
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    jetgen::nn::store::save_tensors(&bad, &list, &meta).unwrap();
    let e = jetgen::models::fm::load_checkpoint(&bad, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("multiplicity"), "{e}");
    meta.insert("fm_config".into(), "{\"network\": 3}".into());
    jetgen::nn::store::save_tensors(&bad, &list, &meta).unwrap();
    assert!(jetgen::models::fm::load_checkpoint(&bad, Device::Cpu).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unconditional_runs_train_with_independent_and_sinkhorn_couplings() {
    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let root = std::env::temp_dir().join(format!("jetgen-fm-couplings-{}", std::process::id()));
    for (coupling, ema) in [(Coupling::Independent, 0.0), (Coupling::Sinkhorn, 0.99)] {
        let out = root.join(coupling.name());
        let s = FmSettings {
            coupling,
            ema,
            run: RunSettings {
                steps: 3,
                val_every: 3,
                ..tiny_settings(&out).run
            },
            ..tiny_settings(&out)
        };
        let report = train_fm(&data, &s, &mut |_| {}).unwrap();
        assert_eq!(report.steps_run, 3, "{coupling:?}");
        assert!(report.first_loss.is_finite());
        let g = jetgen::runs::load_generator(&out, Device::Cpu).unwrap();
        assert_eq!(g.name(), "fm/none");
        assert!(!g.conditioning().mass);
        assert!(g.generate_conditional(&Conditions::default(), 0).is_err());
        let jets = g.generate(20, 5).unwrap();
        // multiplicities come from the training jets
        let train_max = (0..data.n_jets)
            .map(|i| data.multiplicity(i))
            .max()
            .unwrap();
        assert!((0..20).all(|i| (1..=train_max).contains(&jets.multiplicity(i))));
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_mass_and_pt_conditioned_run_generates_and_scores_given_the_jet_pt() {
    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let out = std::env::temp_dir().join(format!("jetgen-fm-masspt-{}", std::process::id()));
    let s = FmSettings {
        condition: FmCondition::MassPt,
        run: RunSettings {
            steps: 3,
            val_every: 3,
            ..tiny_settings(&out).run
        },
        ..tiny_settings(&out)
    };
    train_fm(&data, &s, &mut |_| {}).unwrap();
    let back =
        jetgen::models::fm::load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu)
            .unwrap();
    assert_eq!(back.net.config.context, 2);
    assert_eq!(back.pt.len(), back.conditions.n.len());
    assert!(back.pt.iter().all(|&v| v > 0.0) && back.pt_scale[1] > 0.0);
    let g = jetgen::runs::load_generator(&out, Device::Cpu).unwrap();
    assert_eq!(g.name(), "fm/mass-pt");
    assert!(g.conditioning().mass);
    assert_eq!(g.generate(15, 2).unwrap().n_jets, 15);
    let c = g
        .generate_conditional(
            &Conditions {
                mass: vec![0.1; 4],
                n: vec![9.0; 4],
            },
            1,
        )
        .unwrap();
    assert!((0..4).all(|i| c.multiplicity(i) == 9));
    // scored given each jet's own mass and pT (the JetNet jet feature) ...
    let real = data.select(&[3, 4]).unwrap();
    assert!(g.log_prob(&real).unwrap().iter().all(|v| v.is_finite()));
    // ... so jets without their jet features are refused, not scored at pT = 0
    let mut bare = real.clone();
    bare.jets.iter_mut().for_each(|v| *v = 0.0);
    let e = g.log_prob(&bare).err().unwrap().to_string();
    assert!(e.contains("pT"), "{e}");
    std::fs::remove_dir_all(&out).ok();
}
