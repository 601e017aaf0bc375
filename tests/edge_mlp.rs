//! The fused edge network of MPGAN's message passing (`ops/edge_mlp/`) against the composed
//! chain `edge_input → (× dropout) → (Linear → LeakyReLU → × dropout)* → aggregate` it
//! replaces on the CPU: values, first- and second-order gradients, finite differences,
//! several chunks, empty and one-particle jets, thread-count independence, dropout
//! statistics, padded senders holding NaN, and bad inputs.

mod common;

use common::assert_close;
use jetgen::autograd::CreateGraph;
use jetgen::ops::edge_mlp::{dropout_scales, EdgeDropout, CHUNK_ROWS};
use jetgen::{DType, Device, Rng, Tape, Tensor, Var};

const ALPHA: f64 = 0.2;

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// Inputs of one application: a, c `[B, N, H₀]`, layers (W_k, b_k), the mask.
struct Case {
    b: usize,
    n: usize,
    widths: Vec<usize>,
    a: Tensor,
    c: Tensor,
    layers: Vec<(Tensor, Tensor)>,
    mask: Tensor,
}

/// Jet 0 full, jet 1 empty, jet 2 one particle, the others ~2/3 real.
fn case(b: usize, n: usize, widths: &[usize], dtype: DType, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let normal = |rng: &mut Rng, s: &[usize], sd: f32| {
        rng.normal(s, 0.0, sd, Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let a = normal(&mut rng, &[b, n, widths[0]], 1.0);
    let c = normal(&mut rng, &[b, n, widths[0]], 1.0);
    let layers = widths
        .windows(2)
        .map(|w| {
            let sd = 1.0 / (w[0] as f32).sqrt();
            (
                normal(&mut rng, &[w[1], w[0]], sd),
                normal(&mut rng, &[w[1]], 0.3),
            )
        })
        .collect();
    let mask: Vec<f32> = (0..b * n)
        .map(|k| {
            let (jet, j) = (k / n, k % n);
            let real = match jet {
                0 => true,
                1 => false,
                2 => j == n / 2,
                _ => rng.below(3) != 0,
            };
            real as u8 as f32
        })
        .collect();
    let mask = Tensor::from_slice(&mask, &[b, n], Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    Case {
        b,
        n,
        widths: widths.to_vec(),
        a,
        c,
        layers,
        mask,
    }
}

/// The case's inputs on `tape`: [a, c, W₁, b₁, …].
fn vars(tape: &Tape, k: &Case) -> Vec<Var> {
    let mut v = vec![tape.var(k.a.clone()), tape.var(k.c.clone())];
    for (w, b) in &k.layers {
        v.push(tape.var(w.clone()));
        v.push(tape.var(b.clone()));
    }
    v
}

fn fused(k: &Case, v: &[Var], drop: Option<EdgeDropout>) -> Var {
    let layers: Vec<(Var, Var)> = v[2..]
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    v[0].edge_mlp(&v[1], &layers, &k.mask, ALPHA, drop).unwrap()
}

/// The composed reference chain with the fused op's dropout multipliers.
fn composed(k: &Case, v: &[Var], drop: Option<EdgeDropout>) -> Var {
    let dtype = k.a.dtype();
    let dropped = |x: Var, layer: usize, h: usize| match &drop {
        None => x,
        Some(d) => {
            let s = dropout_scales(d, layer, k.b, k.n, h);
            let t = Tensor::from_slice(&s, &[k.b, k.n, k.n, h], Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            x.mul(&x.constant(t)).unwrap()
        }
    };
    let mut e = dropped(v[0].edge_input(&v[1], ALPHA).unwrap(), 0, k.widths[0]);
    for (l, p) in v[2..].chunks(2).enumerate() {
        let z = e
            .matmul_t(&p[0], false, true)
            .unwrap()
            .add(&p[1])
            .unwrap()
            .leaky_relu(ALPHA)
            .unwrap();
        e = dropped(z, l + 1, k.widths[l + 1]);
    }
    e.aggregate(&k.mask).unwrap()
}

/// Σ out ⊙ w for a fixed random w (a scalar with every output entry's gradient distinct).
fn weighted(out: &Var, seed: u64) -> Var {
    let w = Rng::new(seed)
        .normal(out.shape(), 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_dtype(out.value().dtype())
        .unwrap();
    out.mul(&out.constant(w)).unwrap().sum_all().unwrap()
}

fn values_and_grads(k: &Case, drop: Option<EdgeDropout>, use_fused: bool) -> Vec<Vec<f64>> {
    let tape = Tape::new();
    let v = vars(&tape, k);
    let out = if use_fused {
        fused(k, &v, drop)
    } else {
        composed(k, &v, drop)
    };
    let refs: Vec<&Var> = v.iter().collect();
    let grads = tape
        .grad(&weighted(&out, 99), &refs, CreateGraph::No)
        .unwrap();
    std::iter::once(vals(out.value()))
        .chain(grads.iter().map(|g| vals(g.value())))
        .collect()
}

#[test]
fn fused_edge_network_equals_the_composed_chain() {
    // 5 jets of 30: jet 0 alone is 900 pair rows, so the batch spans several chunks
    let k = case(5, 30, &[7, 9, 5], DType::F64, 1);
    const { assert!(30 * 30 * 3 > CHUNK_ROWS) };
    let names = ["value", "∂a", "∂c", "∂W1", "∂b1", "∂W2", "∂b2"];
    for drop in [
        None,
        Some(EdgeDropout { p: 0.5, seed: 7 }),
        Some(EdgeDropout { p: 0.1, seed: 8 }),
    ] {
        let f = values_and_grads(&k, drop, true);
        let r = values_and_grads(&k, drop, false);
        for ((x, y), name) in f.iter().zip(&r).zip(names) {
            assert_close(x, y, 1e-11, 1e-11, &format!("{name} with {drop:?}"));
        }
        let hl = k.widths[2];
        let empty = &f[0][k.n * hl..2 * k.n * hl];
        assert!(
            empty.iter().all(|&v| v == 0.0),
            "the empty jet gets no messages"
        );
    }
}

#[test]
fn fused_edge_network_matches_finite_differences() {
    let k = case(4, 5, &[3, 4, 2], DType::F64, 2);
    let drop = Some(EdgeDropout { p: 0.25, seed: 3 });
    let analytic = values_and_grads(&k, drop, true);
    let loss = |inputs: &[Tensor]| -> f64 {
        let tape = Tape::new();
        let v: Vec<Var> = inputs.iter().map(|t| tape.var(t.clone())).collect();
        vals(weighted(&fused(&k, &v, drop), 99).value())[0]
    };
    let mut inputs = vec![k.a.clone(), k.c.clone()];
    for (w, b) in &k.layers {
        inputs.extend([w.clone(), b.clone()]);
    }
    for (which, t) in inputs.clone().iter().enumerate() {
        let base = vals(t);
        for e in (0..base.len()).step_by(3) {
            let h = 1e-6;
            let mut plus = inputs.clone();
            let mut minus = inputs.clone();
            let mut p = base.clone();
            p[e] += h;
            plus[which] = Tensor::from_f64(&p, t.shape()).unwrap();
            p[e] -= 2.0 * h;
            minus[which] = Tensor::from_f64(&p, t.shape()).unwrap();
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
            let got = analytic[1 + which][e];
            assert!(
                (numeric - got).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "input {which} entry {e}: analytic {got}, finite differences {numeric}"
            );
        }
    }
}

#[test]
fn second_order_through_the_fused_edge_network_equals_the_composed_chain() {
    // a gradient penalty: P = Σ (∂(Σ out ⊙ w)/∂a)², then ∂P/∂(every input)
    let k = case(3, 6, &[4, 5, 3], DType::F64, 4);
    let drop = Some(EdgeDropout { p: 0.3, seed: 5 });
    let penalty_grads = |use_fused: bool| -> Vec<Vec<f64>> {
        let tape = Tape::new();
        let v = vars(&tape, &k);
        let out = if use_fused {
            fused(&k, &v, drop)
        } else {
            composed(&k, &v, drop)
        };
        let ga = tape
            .grad(&weighted(&out, 11), &[&v[0]], CreateGraph::Yes)
            .unwrap();
        let penalty = ga[0].mul(&ga[0]).unwrap().sum_all().unwrap();
        let refs: Vec<&Var> = v.iter().collect();
        tape.grad(&penalty, &refs, CreateGraph::No)
            .unwrap()
            .iter()
            .map(|g| vals(g.value()))
            .collect()
    };
    let (f, r) = (penalty_grads(true), penalty_grads(false));
    for (i, (x, y)) in f.iter().zip(&r).enumerate() {
        assert_close(x, y, 1e-10, 1e-10, &format!("∂penalty/∂input {i}"));
    }
    assert!(f[2].iter().any(|&v| v != 0.0), "the penalty reaches W1");
}

#[test]
fn fused_edge_network_does_not_depend_on_the_thread_count() {
    let k = case(6, 30, &[16, 24, 8], DType::F32, 6);
    let drop = Some(EdgeDropout { p: 0.5, seed: 1 });
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| values_and_grads(&k, drop, true))
    };
    assert_eq!(run(1), run(2), "bit-identical on 1 and 2 threads");
}

#[test]
fn dropout_multipliers_keep_one_minus_p_and_differ_by_layer_and_seed() {
    let d = EdgeDropout { p: 0.3, seed: 42 };
    let s = dropout_scales(&d, 0, 8, 30, 64);
    let scale = 1.0 / 0.7f32;
    assert!(s.iter().all(|&v| v == 0.0 || v == scale));
    let dropped = s.iter().filter(|&&v| v == 0.0).count() as f64 / s.len() as f64;
    assert!((dropped - 0.3).abs() < 0.005, "dropped fraction {dropped}");
    assert_ne!(s, dropout_scales(&d, 1, 8, 30, 64), "layers differ");
    let other = EdgeDropout { p: 0.3, seed: 43 };
    assert_ne!(s, dropout_scales(&other, 0, 8, 30, 64), "seeds differ");
    assert_eq!(s, dropout_scales(&d, 0, 8, 30, 64), "seeded");
}

#[test]
fn padded_senders_holding_nan_never_reach_the_output() {
    let k = case(4, 6, &[3, 4, 2], DType::F32, 9);
    let mut c = vals(&k.c);
    let mask = vals(&k.mask);
    let mut poisoned = 0;
    for (row, &m) in mask.iter().enumerate() {
        if m == 0.0 {
            c[row * 3..row * 3 + 3].fill(f64::NAN);
            poisoned += 1;
        }
    }
    assert!(poisoned > 0);
    let bad = Case {
        c: Tensor::from_f64(&c, k.c.shape())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap(),
        ..case(4, 6, &[3, 4, 2], DType::F32, 9)
    };
    let clean = values_and_grads(&k, None, true);
    let poisoned = values_and_grads(&bad, None, true);
    assert_eq!(clean, poisoned, "values and every gradient");
}

#[test]
fn bad_edge_network_inputs_are_refused() {
    let k = case(2, 3, &[4, 5], DType::F32, 3);
    let tape = Tape::new();
    let v = vars(&tape, &k);
    let layers = vec![(v[2].clone(), v[3].clone())];
    let err = |r: jetgen::Result<Var>| r.map(|_| ()).unwrap_err().to_string();
    let wrong_c = tape.var(Tensor::zeros(&[2, 3, 5], Device::Cpu).unwrap());
    assert!(err(v[0].edge_mlp(&wrong_c, &layers, &k.mask, ALPHA, None)).contains("edge_mlp"));
    let wrong_w = vec![(v[3].clone(), v[3].clone())];
    assert!(err(v[0].edge_mlp(&v[1], &wrong_w, &k.mask, ALPHA, None)).contains("layer 1"));
    let wrong_mask = Tensor::zeros(&[2, 4], Device::Cpu).unwrap();
    assert!(v[0]
        .edge_mlp(&v[1], &layers, &wrong_mask, ALPHA, None)
        .is_err());
    assert!(err(v[0].edge_mlp(&v[1], &layers, &k.mask, -0.1, None)).contains("slope"));
    let p1 = Some(EdgeDropout { p: 1.0, seed: 0 });
    assert!(err(v[0].edge_mlp(&v[1], &layers, &k.mask, ALPHA, p1)).contains("dropout"));
}

/// The tensor-level forward and backward (what `jetgen bench kernels --only edge_mlp` times)
/// equal the tape op's value and gradients.
#[test]
fn tensor_level_functions_equal_the_tape_op() {
    use jetgen::ops::edge_mlp::{edge_mlp_backward, edge_mlp_forward};
    let k = case(3, 7, &[4, 6, 3], DType::F64, 12);
    let drop = Some(EdgeDropout { p: 0.2, seed: 2 });
    let layers: Vec<(&Tensor, &Tensor)> = k.layers.iter().map(|(w, b)| (w, b)).collect();
    let value = edge_mlp_forward(&k.a, &k.c, &layers, &k.mask, ALPHA, drop).unwrap();
    let tape = Tape::new();
    let v = vars(&tape, &k);
    let out = fused(&k, &v, drop);
    assert_eq!(vals(&value), vals(out.value()));
    let g = Rng::new(99)
        .normal(out.shape(), 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let grads = edge_mlp_backward(&k.a, &k.c, &layers, &k.mask, ALPHA, drop, &g).unwrap();
    let expected = values_and_grads(&k, drop, true);
    assert_eq!(grads.len(), 6);
    for (i, t) in grads.iter().enumerate() {
        assert_eq!(vals(t), expected[i + 1], "gradient {i}");
    }
    let wrong_g = Tensor::zeros(&[3, 7, 4], Device::Cpu).unwrap();
    assert!(edge_mlp_backward(&k.a, &k.c, &layers, &k.mask, ALPHA, drop, &wrong_g).is_err());
}
