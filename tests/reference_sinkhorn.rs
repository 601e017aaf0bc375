//! Sinkhorn against the float64 references (tests/vectors/sinkhorn: B = 32 pairs of 30-point
//! clouds in [0,1]³, non-uniform weights, cost ‖x − y‖², ε ∈ {0.1, 0.01} absolute): the
//! state after exactly 100 iterations, and converged values, potentials, plan, divergence
//! and gradients; plus invariants and robustness.

mod common;

use common::{assert_close, npy, npy_tensor_f64, vectors_dir};
use jetgen::ops::sinkhorn::{sinkhorn, sinkhorn_backward, sinkhorn_plan, Cost, SinkhornConfig};
use jetgen::{DType, Device, Rng, Tape, Tensor};

fn load(name: &str) -> Tensor {
    npy_tensor_f64(&vectors_dir().join("sinkhorn").join(format!("{name}.npy")))
}

fn want(eps: &str, name: &str) -> Vec<f64> {
    npy(&vectors_dir()
        .join("sinkhorn")
        .join(eps)
        .join(format!("{name}.npy")))
    .0
}

fn inputs(dtype: DType) -> [Tensor; 4] {
    ["x", "y", "a", "b"].map(|n| load(n).to_dtype(dtype).unwrap())
}

/// Shift potentials to the gauge ⟨a, f⟩ = ⟨b, g⟩ used by the reference.
fn gauge(f: &[f64], g: &[f64], a: &[f64], b: &[f64], n: usize, m: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut f2, mut g2) = (f.to_vec(), g.to_vec());
    for p in 0..f.len() / n {
        let af: f64 = (0..n).map(|i| a[p * n + i] * f[p * n + i]).sum();
        let bg: f64 = (0..m).map(|j| b[p * m + j] * g[p * m + j]).sum();
        let c = (bg - af) / 2.0; // Σa = Σb = 1
        (0..n).for_each(|i| f2[p * n + i] += c);
        (0..m).for_each(|j| g2[p * m + j] -= c);
    }
    (f2, g2)
}

#[test]
fn hundred_iterations_match_reference_f64() {
    let [x, y, a, b] = inputs(DType::F64);
    for (eps, e) in [("eps0.1", 0.1), ("eps0.01", 0.01)] {
        let cfg = SinkhornConfig {
            debias: false,
            ..SinkhornConfig::new(e, 100)
        };
        let out = sinkhorn(&x, &y, &a, &b, &cfg).unwrap();
        assert_close(
            &out.f.to_vec_f64().unwrap(),
            &want(eps, "iter100_f"),
            1e-10,
            1e-10,
            &format!("{eps} f after 100"),
        );
        assert_close(
            &out.g.to_vec_f64().unwrap(),
            &want(eps, "iter100_g"),
            1e-10,
            1e-10,
            &format!("{eps} g after 100"),
        );
        assert_close(
            &out.transport_cost.to_vec_f64().unwrap(),
            &want(eps, "iter100_primal"),
            1e-10,
            1e-10,
            &format!("{eps} <P,C> after 100"),
        );
        let plan = sinkhorn_plan(&x, &y, &a, &b, &out, &cfg).unwrap();
        assert_close(
            &plan.to_vec_f64().unwrap(),
            &want(eps, "iter100_P"),
            1e-12,
            1e-9,
            &format!("{eps} P after 100"),
        );
    }
}

/// Converged solve in `dtype`; tolerances per ε are arguments.
/// `tol`: marginal tolerance, or `None` for `iters` fixed iterations (f32 cannot reach the
/// 1e-13 of the reference: its marginal error floors near ε⁻¹·|f|·1e-7 summed over points).
fn converged(
    dtype: DType,
    eps: &str,
    e: f64,
    tol: Option<f64>,
    iters: usize,
    atol: f64,
    rtol: f64,
) {
    let [x, y, a, b] = inputs(dtype);
    let cfg = SinkhornConfig {
        tolerance: tol,
        ..SinkhornConfig::new(e, iters)
    };
    let out = sinkhorn(&x, &y, &a, &b, &cfg).unwrap();
    let what = |s: &str| format!("{dtype:?} {eps} {s}");
    assert_close(
        &out.ot.to_vec_f64().unwrap(),
        &want(eps, "ot_eps"),
        atol,
        rtol,
        &what("OT_eps"),
    );
    assert_close(
        &out.ot_aa.as_ref().unwrap().to_vec_f64().unwrap(),
        &want(eps, "ot_eps_aa"),
        atol,
        rtol,
        &what("OT_eps(a,a)"),
    );
    assert_close(
        &out.ot_bb.as_ref().unwrap().to_vec_f64().unwrap(),
        &want(eps, "ot_eps_bb"),
        atol,
        rtol,
        &what("OT_eps(b,b)"),
    );
    assert_close(
        &out.divergence.as_ref().unwrap().to_vec_f64().unwrap(),
        &want(eps, "divergence"),
        atol,
        rtol,
        &what("divergence"),
    );
    assert_close(
        &out.transport_cost.to_vec_f64().unwrap(),
        &want(eps, "primal"),
        atol,
        rtol,
        &what("<P,C>"),
    );
    let (av, bv) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let (f, g) = gauge(
        &out.f.to_vec_f64().unwrap(),
        &out.g.to_vec_f64().unwrap(),
        &av,
        &bv,
        30,
        30,
    );
    assert_close(
        &f,
        &want(eps, "f"),
        atol * 10.0,
        rtol,
        &what("f (gauge-fixed)"),
    );
    assert_close(
        &g,
        &want(eps, "g"),
        atol * 10.0,
        rtol,
        &what("g (gauge-fixed)"),
    );
    let ones = Tensor::full(&[32], 1.0, Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let [gx, ..] = sinkhorn_backward(&x, &y, &a, &b, &out, &cfg, false, &ones).unwrap();
    assert_close(
        &gx.to_vec_f64().unwrap(),
        &want(eps, "grad_x_ot_eps"),
        atol * 10.0,
        rtol,
        &what("grad_x OT"),
    );
    let [gx, ..] = sinkhorn_backward(&x, &y, &a, &b, &out, &cfg, true, &ones).unwrap();
    assert_close(
        &gx.to_vec_f64().unwrap(),
        &want(eps, "grad_x_divergence"),
        atol * 10.0,
        rtol,
        &what("grad_x divergence"),
    );
}

#[test]
fn converged_matches_reference_f64() {
    converged(DType::F64, "eps0.1", 0.1, Some(1e-13), 200_000, 1e-11, 1e-9);
    converged(
        DType::F64,
        "eps0.01",
        0.01,
        Some(1e-13),
        200_000,
        1e-10,
        1e-8,
    );
}

/// f32, iterated as long as the reference needed (90 / 6,330 iterations): values to 1e-5
/// relative; potentials and gradients to the f32 rounding of (f + g − C)/ε, i.e. ~1e-5 at
/// ε = 0.1 and ~1e-4 at ε = 0.01.
#[test]
fn converged_matches_reference_f32() {
    converged(DType::F32, "eps0.1", 0.1, None, 500, 2e-6, 1e-5);
    converged(DType::F32, "eps0.01", 0.01, None, 7_000, 1e-5, 1e-4);
}

fn random_pair(rng: &mut Rng, b: usize, n: usize, m: usize, d: usize) -> [Tensor; 4] {
    let x = rng
        .uniform(&[b, n, d], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let y = rng
        .uniform(&[b, m, d], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let norm = |w: Tensor, k: usize| {
        let v = w.to_vec_f64().unwrap();
        let out: Vec<f64> = v
            .chunks(k)
            .flat_map(|r| {
                let s: f64 = r.iter().sum();
                r.iter().map(move |x| x / s)
            })
            .collect();
        Tensor::from_f64(&out, w.shape()).unwrap()
    };
    let a = norm(rng.uniform(&[b, n], 0.5, 1.5, Device::Cpu).unwrap(), n);
    let bw = norm(rng.uniform(&[b, m], 0.5, 1.5, Device::Cpu).unwrap(), m);
    [x, y, a, bw]
}

#[test]
fn divergence_properties_and_robustness() {
    let mut rng = Rng::new(4);
    let [x, y, a, b] = random_pair(&mut rng, 3, 9, 7, 2);
    let cfg = SinkhornConfig {
        tolerance: Some(1e-12),
        scaling: Some(0.8),
        ..SinkhornConfig::new(0.05, 10_000)
    };
    let out = sinkhorn(&x, &y, &a, &b, &cfg).unwrap();
    let s = out.divergence.clone().unwrap().to_vec_f64().unwrap();
    assert!(s.iter().all(|&v| v >= -1e-12), "S ≥ 0: {s:?}");
    // identical clouds: S = 0
    let same = sinkhorn(&x, &x, &a, &a, &cfg)
        .unwrap()
        .divergence
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert!(same.iter().all(|v| v.abs() < 1e-10), "{same:?}");
    // permutation of y's points (with their weights) changes nothing
    let perm = [6usize, 2, 0, 5, 1, 3, 4];
    let (yv, bv) = (y.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let mut yp = yv.clone();
    let mut bp = bv.clone();
    for p in 0..3 {
        for (k, &src) in perm.iter().enumerate() {
            yp[(p * 7 + k) * 2..(p * 7 + k) * 2 + 2]
                .copy_from_slice(&yv[(p * 7 + src) * 2..(p * 7 + src) * 2 + 2]);
            bp[p * 7 + k] = bv[p * 7 + src];
        }
    }
    let permuted = sinkhorn(
        &x,
        &Tensor::from_f64(&yp, &[3, 7, 2]).unwrap(),
        &a,
        &Tensor::from_f64(&bp, &[3, 7]).unwrap(),
        &cfg,
    )
    .unwrap();
    assert_close(
        &permuted.divergence.unwrap().to_vec_f64().unwrap(),
        &s,
        1e-10,
        1e-9,
        "permuted",
    );
    // zero-weight padded points with wild coordinates change nothing
    let mut ypad = Vec::new();
    let mut bpad = Vec::new();
    for p in 0..3 {
        ypad.extend_from_slice(&yv[p * 14..(p + 1) * 14]);
        ypad.extend_from_slice(&[50.0, -50.0, 1e3, 1e3]);
        bpad.extend_from_slice(&bv[p * 7..(p + 1) * 7]);
        bpad.extend_from_slice(&[0.0, 0.0]);
    }
    let padded = sinkhorn(
        &x,
        &Tensor::from_f64(&ypad, &[3, 9, 2]).unwrap(),
        &a,
        &Tensor::from_f64(&bpad, &[3, 9]).unwrap(),
        &cfg,
    )
    .unwrap();
    assert_close(
        &padded.divergence.unwrap().to_vec_f64().unwrap(),
        &s,
        1e-10,
        1e-9,
        "padded",
    );
    // far-apart clouds (ε ≪ cost): finite, close to the squared distance of the means' offset
    let far: Vec<f64> = yv.iter().map(|v| v + 100.0).collect();
    let fo = sinkhorn(
        &x,
        &Tensor::from_f64(&far, &[3, 7, 2]).unwrap(),
        &a,
        &b,
        &SinkhornConfig {
            scaling: Some(0.7),
            ..cfg
        },
    )
    .unwrap();
    let fv = fo.ot.to_vec_f64().unwrap();
    assert!(
        fv.iter()
            .all(|v| v.is_finite() && *v > 19_000.0 && *v < 21_000.0),
        "{fv:?}"
    );
    // all-padded pair and single points
    let mut a0 = a.to_vec_f64().unwrap();
    a0[..9].iter_mut().for_each(|w| *w = 0.0);
    let z = sinkhorn(&x, &y, &Tensor::from_f64(&a0, &[3, 9]).unwrap(), &b, &cfg).unwrap();
    assert_eq!(z.ot.to_vec_f64().unwrap()[0], 0.0);
    assert!(z.f.to_vec_f64().unwrap().iter().all(|v| v.is_finite()));
    let one = sinkhorn(
        &x.to_dtype(DType::F64).unwrap(),
        &x,
        &a,
        &a,
        &SinkhornConfig {
            debias: true,
            ..cfg
        },
    )
    .unwrap();
    assert!(one.ot.to_vec_f64().unwrap().iter().all(|v| v.is_finite()));
    // errors: NaN, unequal masses, negative weights, bad ε
    let mut xn = x.to_vec_f64().unwrap();
    xn[3] = f64::NAN;
    assert!(sinkhorn(
        &Tensor::from_f64(&xn, &[3, 9, 2]).unwrap(),
        &y,
        &a,
        &b,
        &cfg
    )
    .unwrap_err()
    .to_string()
    .contains("NaN"));
    let mut a2 = a.to_vec_f64().unwrap();
    a2[0] += 0.5;
    assert!(
        sinkhorn(&x, &y, &Tensor::from_f64(&a2, &[3, 9]).unwrap(), &b, &cfg)
            .unwrap_err()
            .to_string()
            .contains("differ")
    );
    assert!(sinkhorn(
        &x,
        &y,
        &a,
        &b,
        &SinkhornConfig {
            epsilon: 0.0,
            ..cfg
        }
    )
    .is_err());
}

/// Envelope gradients vs central differences of the converged values (f64): positions, and
/// weights along mass-preserving directions (e_i − e_k).
#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(5);
    let [x, y, a, b] = random_pair(&mut rng, 2, 5, 4, 2);
    for cost in [
        Cost::SquaredEuclidean,
        Cost::Euclidean,
        Cost::HalfSquaredEuclidean,
    ] {
        for debias in [false, true] {
            let cfg = SinkhornConfig {
                cost,
                debias,
                tolerance: Some(1e-14),
                ..SinkhornConfig::new(0.1, 100_000)
            };
            let value = |x: &Tensor, y: &Tensor, a: &Tensor, b: &Tensor| -> f64 {
                let o = sinkhorn(x, y, a, b, &cfg).unwrap();
                let v = if debias { o.divergence.unwrap() } else { o.ot };
                v.to_vec_f64().unwrap().iter().sum()
            };
            let tape = Tape::new();
            let (vx, vy, va, vb) = (
                tape.var(x.clone()),
                tape.var(y.clone()),
                tape.var(a.clone()),
                tape.var(b.clone()),
            );
            let l = vx.sinkhorn(&vy, &va, &vb, &cfg).unwrap().sum_all().unwrap();
            let grads = l.backward().unwrap();
            let h = 1e-6;
            let bump = |t: &Tensor, k: usize, dlt: f64| {
                let mut v = t.to_vec_f64().unwrap();
                v[k] += dlt;
                Tensor::from_f64(&v, t.shape()).unwrap()
            };
            let gx = grads.get(&vx).unwrap().to_vec_f64().unwrap();
            for k in 0..x.numel() {
                let fd = (value(&bump(&x, k, h), &y, &a, &b) - value(&bump(&x, k, -h), &y, &a, &b))
                    / (2.0 * h);
                assert!(
                    (gx[k] - fd).abs() < 1e-6 + 1e-5 * fd.abs(),
                    "{cost:?} debias={debias} dx[{k}]: {} vs {fd}",
                    gx[k]
                );
            }
            let gy = grads.get(&vy).unwrap().to_vec_f64().unwrap();
            for k in 0..y.numel() {
                let fd = (value(&x, &bump(&y, k, h), &a, &b) - value(&x, &bump(&y, k, -h), &a, &b))
                    / (2.0 * h);
                assert!(
                    (gy[k] - fd).abs() < 1e-6 + 1e-5 * fd.abs(),
                    "{cost:?} debias={debias} dy[{k}]: {} vs {fd}",
                    gy[k]
                );
            }
            let ga = grads.get(&va).unwrap().to_vec_f64().unwrap();
            for (i, k) in [(0usize, 3usize), (6, 9), (1, 2)] {
                let dir = |s: f64| bump(&bump(&a, i, s), k, -s);
                let fd = (value(&x, &y, &dir(h), &b) - value(&x, &y, &dir(-h), &b)) / (2.0 * h);
                let an = ga[i] - ga[k];
                assert!(
                    (an - fd).abs() < 1e-6 + 1e-5 * fd.abs(),
                    "{cost:?} debias={debias} da[{i}]-da[{k}]: {an} vs {fd}"
                );
            }
        }
    }
}
