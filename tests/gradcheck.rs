//! Gradient checks: every differentiable op's backward against central finite differences
//! of its forward, all in f64 on the CPU. L = Σ w ⊙ f(x) with fixed random w, so every
//! output element's gradient path is exercised.
//!
//! Every basic op is also checked to second order: the recorded gradient G = ∂L/∂x
//! (`CreateGraph::Yes`) equals the fast one, and ∂/∂x ⟨G, v⟩ (a Hessian–vector product, by
//! a second reverse pass through the recorded backward) equals central differences of
//! ⟨G(x), v⟩. The fused ops (RQS, Chamfer) are once-differentiable and checked to first
//! order here (their second derivative is an error: tests/second_order.rs); the fused
//! message-passing ops are differentiable to any order and checked to second order.

mod common;

use jetgen::autograd::CreateGraph;
use jetgen::ops::index::Indices;
use jetgen::{Result, Rng, Tape, Tensor, Var};

/// Random f64 inputs; `positive` shifts them into (0.5, ~3.5) for log/sqrt/pow.
fn input(rng: &mut Rng, shape: &[usize], positive: bool) -> Tensor {
    let t = rng.normal_f64(shape).unwrap();
    if !positive {
        return t;
    }
    let v: Vec<f64> = t
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|x| x.abs() + 0.5)
        .collect();
    Tensor::from_f64(&v, shape).unwrap()
}

/// First- and second-order checks of f (see the module doc).
fn gradcheck(name: &str, inputs: &[Tensor], f: impl Fn(&[Var]) -> Result<Var>) {
    gradcheck_first_order(name, inputs, &f);
    gradcheck_second_order(name, inputs, &f);
}

/// ∂L/∂xₖ of L = Σ w ⊙ f(x) by `Tape::grad`, with the tape it was recorded on.
fn first_grads(
    inputs: &[Tensor],
    w: &Tensor,
    f: &impl Fn(&[Var]) -> Result<Var>,
    graph: CreateGraph,
) -> (Tape, Vec<Var>, Vec<Var>) {
    let tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|x| tape.var(x.clone())).collect();
    let y = f(&vars).unwrap();
    let l = y.mul(&tape.constant(w.clone())).unwrap().sum_all().unwrap();
    let refs: Vec<&Var> = vars.iter().collect();
    let grads = tape.grad(&l, &refs, graph).unwrap();
    (tape, vars, grads)
}

/// S(x) = Σₖ ⟨∂L/∂xₖ, vₖ⟩; checks ∂S/∂x (through the recorded backward) against central
/// differences of S (each evaluated by the fast first-order path).
fn gradcheck_second_order(name: &str, inputs: &[Tensor], f: &impl Fn(&[Var]) -> Result<Var>) {
    let probe = {
        let tape = Tape::new();
        let vars: Vec<Var> = inputs.iter().map(|x| tape.var(x.clone())).collect();
        f(&vars).unwrap().shape().to_vec()
    };
    let w = Rng::new(99).normal_f64(&probe).unwrap();
    let mut rng = Rng::new(98);
    let v: Vec<Tensor> = inputs
        .iter()
        .map(|x| rng.normal_f64(x.shape()).unwrap())
        .collect();
    let dot = |gs: &[Var]| -> f64 {
        gs.iter()
            .zip(&v)
            .map(|(g, v)| {
                let (a, b) = (g.value().to_vec_f64().unwrap(), v.to_vec_f64().unwrap());
                a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>()
            })
            .sum()
    };
    let (tape, vars, recorded) = first_grads(inputs, &w, f, CreateGraph::Yes);
    let (_, _, fast) = first_grads(inputs, &w, f, CreateGraph::No);
    for (k, (r, q)) in recorded.iter().zip(&fast).enumerate() {
        let (r, q) = (
            r.value().to_vec_f64().unwrap(),
            q.value().to_vec_f64().unwrap(),
        );
        for (j, (a, b)) in r.iter().zip(&q).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 + 1e-12 * b.abs(),
                "{name}: recorded vs fast d/dx{k}[{j}]: {a} vs {b}"
            );
        }
    }
    let s = recorded
        .iter()
        .zip(&v)
        .map(|(g, v)| g.mul(&tape.constant(v.clone()))?.sum_all())
        .reduce(|a, b| a?.add(&b?))
        .unwrap()
        .unwrap();
    let refs: Vec<&Var> = vars.iter().collect();
    let hv = tape
        .grad(&s, &refs, CreateGraph::No)
        .unwrap_or_else(|e| panic!("{name}: second-order grad failed: {e}"));
    let h = 1e-6;
    for (k, x) in inputs.iter().enumerate() {
        let analytic = hv[k].value().to_vec_f64().unwrap();
        let base = x.to_vec_f64().unwrap();
        for j in 0..base.len() {
            let eval = |delta: f64| {
                let mut shifted = base.clone();
                shifted[j] += delta;
                let mut xs = inputs.to_vec();
                xs[k] = Tensor::from_f64(&shifted, x.shape()).unwrap();
                dot(&first_grads(&xs, &w, f, CreateGraph::No).2)
            };
            let numeric = (eval(h) - eval(-h)) / (2.0 * h);
            let a = analytic[j];
            assert!(
                (a - numeric).abs() <= 2e-6 + 2e-5 * numeric.abs(),
                "{name}: second order (Hv) d/dx{k}[{j}] analytic {a} vs numeric {numeric}"
            );
        }
    }
}

/// Compare tape gradients of L = Σ w ⊙ f(inputs) with central differences (h = 1e-6).
fn gradcheck_first_order(name: &str, inputs: &[Tensor], f: &impl Fn(&[Var]) -> Result<Var>) {
    let loss = |xs: &[Tensor], w: Option<&Tensor>| -> (f64, Tape, Vec<Var>, Tensor) {
        let tape = Tape::new();
        let vars: Vec<Var> = xs.iter().map(|x| tape.var(x.clone())).collect();
        let y = f(&vars).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
        let w = match w {
            Some(w) => w.clone(),
            None => Rng::new(99).normal_f64(y.shape()).unwrap(),
        };
        let l = y.mul(&tape.constant(w.clone())).unwrap().sum_all().unwrap();
        (l.value().item().unwrap(), tape, vars, w)
    };
    let (_, tape, vars, w) = loss(inputs, None);
    let l = {
        let y = f(&vars).unwrap();
        y.mul(&tape.constant(w.clone())).unwrap().sum_all().unwrap()
    };
    let grads = l
        .backward()
        .unwrap_or_else(|e| panic!("{name}: backward failed: {e}"));
    let h = 1e-6;
    for (k, x) in inputs.iter().enumerate() {
        let analytic = grads
            .get(&vars[k])
            .map(|g| g.to_vec_f64().unwrap())
            .unwrap_or_else(|| vec![0.0; x.numel()]);
        assert_eq!(
            analytic.len(),
            x.numel(),
            "{name}: grad of input {k} has the wrong size"
        );
        let base = x.to_vec_f64().unwrap();
        for j in 0..base.len() {
            let eval = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs = inputs.to_vec();
                xs[k] = Tensor::from_f64(&v, x.shape()).unwrap();
                loss(&xs, Some(&w)).0
            };
            let numeric = (eval(h) - eval(-h)) / (2.0 * h);
            let a = analytic[j];
            assert!(
                (a - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                "{name}: d/dx{k}[{j}] analytic {a} vs numeric {numeric}"
            );
        }
    }
}

fn unary_case(name: &str, positive: bool, f: impl Fn(&Var) -> Result<Var>) {
    let mut rng = Rng::new(name.len() as u64);
    gradcheck(name, &[input(&mut rng, &[3, 5], positive)], |v| f(&v[0]));
}

#[test]
fn unary_ops() {
    unary_case("neg", false, |x| x.neg());
    unary_case("exp", false, |x| x.exp());
    unary_case("log", true, |x| x.log());
    unary_case("sqrt", true, |x| x.sqrt());
    unary_case("square", false, |x| x.square());
    unary_case("pow", true, |x| x.powf(2.5));
    unary_case("abs", false, |x| x.abs());
    unary_case("relu", false, |x| x.relu());
    unary_case("leaky_relu", false, |x| x.leaky_relu(0.2));
    unary_case("elu", false, |x| x.elu(1.3));
    unary_case("tanh", false, |x| x.tanh());
    unary_case("sigmoid", false, |x| x.sigmoid());
    unary_case("softplus", false, |x| x.softplus());
    unary_case("clamp", false, |x| x.clamp(-0.5, 0.7));
    unary_case("add_scalar", false, |x| x.add_scalar(1.5));
    unary_case("mul_scalar", false, |x| x.mul_scalar(-2.0));
    unary_case("recip", true, |x| x.recip());
    unary_case("sin", false, |x| x.sin());
    unary_case("cos", false, |x| x.cos());
    unary_case("sinh", false, |x| x.sinh());
    unary_case("cosh", false, |x| x.cosh());
}

#[test]
fn binary_ops_with_broadcasting() {
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[3, 4], &[3, 4]),
        (&[2, 3, 4], &[4]),
        (&[3, 1, 4], &[2, 1]),
        (&[1], &[2, 3]),
        (&[2, 1, 3], &[2, 4, 1]),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(10 + i as u64);
        let a = input(&mut rng, sa, false);
        let b = input(&mut rng, sb, true);
        gradcheck("add", &[a.clone(), b.clone()], |v| v[0].add(&v[1]));
        gradcheck("sub", &[a.clone(), b.clone()], |v| v[0].sub(&v[1]));
        gradcheck("mul", &[a.clone(), b.clone()], |v| v[0].mul(&v[1]));
        gradcheck("div", &[a.clone(), b.clone()], |v| v[0].div(&v[1]));
        gradcheck("maximum", &[a.clone(), b.clone()], |v| v[0].maximum(&v[1]));
    }
}

#[test]
fn select_masks() {
    let mut rng = Rng::new(3);
    let a = input(&mut rng, &[4, 5], false);
    let b = input(&mut rng, &[5], false);
    let cond = Tensor::from_f64(
        &[
            1., 0., 1., 1., 0., 0., 0., 1., 0., 1., 1., 1., 0., 0., 0., 1., 0., 1., 1., 0.,
        ],
        &[4, 5],
    )
    .unwrap();
    gradcheck("select", &[a, b], |v| Var::select(&cond, &v[0], &v[1]));
}

#[test]
fn matmul_all_transposes_and_batching() {
    let mut rng = Rng::new(4);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let (m, k, n) = (3, 4, 2);
        let sa = |b: Option<usize>| {
            let mut s: Vec<usize> = b.into_iter().collect();
            s.extend(if ta { [k, m] } else { [m, k] });
            s
        };
        let sb = |b: Option<usize>| {
            let mut s: Vec<usize> = b.into_iter().collect();
            s.extend(if tb { [n, k] } else { [k, n] });
            s
        };
        for (ba, bb) in [
            (None, None),
            (Some(2), Some(2)),
            (Some(2), None),
            (None, Some(2)),
        ] {
            let a = input(&mut rng, &sa(ba), false);
            let b = input(&mut rng, &sb(bb), false);
            gradcheck(
                &format!("matmul ta={ta} tb={tb} {ba:?} {bb:?}"),
                &[a, b],
                |v| v[0].matmul_t(&v[1], ta, tb),
            );
        }
    }
}

#[test]
fn reductions() {
    let mut rng = Rng::new(5);
    let x = input(&mut rng, &[2, 3, 4], false);
    for keep in [false, true] {
        gradcheck("sum axis 1", &[x.clone()], |v| v[0].sum(&[1], keep));
        gradcheck("sum axes 0,2", &[x.clone()], |v| v[0].sum(&[0, -1], keep));
        gradcheck("mean axis 2", &[x.clone()], |v| v[0].mean(&[2], keep));
        gradcheck("max axis 1", &[x.clone()], |v| v[0].max(1, keep));
        gradcheck("max axis 2", &[x.clone()], |v| v[0].max(-1, keep));
        gradcheck("logsumexp axis 0", &[x.clone()], |v| {
            v[0].logsumexp(0, keep)
        });
        gradcheck("logsumexp axis 2", &[x.clone()], |v| {
            v[0].logsumexp(2, keep)
        });
    }
    gradcheck("sum_all", &[x.clone()], |v| v[0].sum_all());
    gradcheck("mean_all", &[x.clone()], |v| v[0].mean_all());
    gradcheck("softmax axis 1", &[x.clone()], |v| v[0].softmax(1));
    gradcheck("softmax axis -1", &[x.clone()], |v| v[0].softmax(-1));
    gradcheck("log_softmax axis 0", &[x.clone()], |v| v[0].log_softmax(0));
    gradcheck("log_softmax axis 2", &[x.clone()], |v| v[0].log_softmax(2));
    gradcheck("cumsum axis 1", &[x.clone()], |v| v[0].cumsum(1));
    gradcheck("cumsum axis 2", &[x.clone()], |v| v[0].cumsum(-1));
}

#[test]
fn movement() {
    let mut rng = Rng::new(6);
    let x = input(&mut rng, &[2, 3, 4], false);
    let y = input(&mut rng, &[2, 2, 4], false);
    gradcheck("reshape", &[x.clone()], |v| v[0].reshape(&[6, 4])?.tanh());
    gradcheck("permute", &[x.clone()], |v| v[0].permute(&[2, 0, 1]));
    gradcheck("transpose", &[x.clone()], |v| v[0].transpose(0, -1));
    gradcheck("broadcast_to", &[input(&mut rng, &[3, 1], false)], |v| {
        v[0].broadcast_to(&[2, 3, 5])
    });
    gradcheck("narrow", &[x.clone()], |v| v[0].narrow(1, 1, 2));
    gradcheck("concat", &[x.clone(), y.clone()], |v| {
        Var::concat(&[&v[0], &v[1]], 1)
    });
    gradcheck("concat last", &[x.clone(), x.clone()], |v| {
        Var::concat(&[&v[0], &v[1]], -1)
    });
}

#[test]
fn indexing() {
    let mut rng = Rng::new(7);
    let x = input(&mut rng, &[3, 5, 2], false);
    let idx = Indices::new(vec![4, 0, 4, 2], &[4]).unwrap();
    gradcheck("index_select (repeated indices)", &[x.clone()], |v| {
        v[0].index_select(1, &idx)
    });
    let g = Indices::new(
        (0..3 * 3 * 2).map(|i| (i * 7 % 5) as u32).collect(),
        &[3, 3, 2],
    )
    .unwrap();
    gradcheck("gather", &[x.clone()], |v| v[0].gather(1, &g));
}

#[test]
fn composites_dropout_glu() {
    let mut rng = Rng::new(8);
    let x = input(&mut rng, &[4, 6], false);
    // the same seed in every evaluation gives the same mask, so FD sees a fixed function
    gradcheck("dropout", &[x.clone()], |v| {
        v[0].dropout(0.3, true, &mut Rng::new(5))
    });
    gradcheck("glu", &[x.clone()], |v| jetgen::nn::glu(&v[0], -1));
    gradcheck("x*x reuse", &[x.clone()], |v| {
        v[0].mul(&v[0])?.add(&v[0].exp()?)
    });
}

#[test]
fn errors_are_values() {
    let tape = Tape::new();
    let a = tape.var(Tensor::from_f64(&[1., 2., 3.], &[3]).unwrap());
    let b = tape.var(Tensor::from_f64(&[1., 2.], &[2]).unwrap());
    assert!(matches!(a.add(&b), Err(jetgen::Error::Shape { .. })));
    assert!(matches!(a.backward(), Err(jetgen::Error::NotScalar { .. })));
    let m = tape.var(Tensor::from_f64(&[1.; 6], &[2, 3]).unwrap());
    assert!(matches!(m.matmul(&m), Err(jetgen::Error::Shape { .. })));
    assert!(matches!(
        m.sum(&[5], false),
        Err(jetgen::Error::Shape { .. })
    ));
    let f32t = tape.var(Tensor::from_slice(&[1., 2., 3.], &[3], jetgen::Device::Cpu).unwrap());
    assert!(matches!(a.add(&f32t), Err(jetgen::Error::DType { .. })));
    let nan = Tensor::from_f64(&[1.0, f64::NAN, f64::INFINITY], &[3]).unwrap();
    let err = nan.check_finite("weights").unwrap_err();
    assert!(err.to_string().contains("2 of 3"), "{err}");
    assert!(matches!(
        Tensor::from_f64(&[1.0], &[2]),
        Err(jetgen::Error::Shape { .. })
    ));
    assert!(
        jetgen::Device::Cuda(0).ensure_available().is_err()
            || jetgen::device::cuda::driver_available().is_ok()
    );
    let other = Tape::new();
    let c = other.var(Tensor::from_f64(&[1., 2., 3.], &[3]).unwrap());
    assert!(matches!(a.add(&c), Err(jetgen::Error::InvalidArgument(_))));
}

#[test]
fn rqs_forward_and_inverse() {
    use jetgen::ops::rqs::RqsConfig;
    let cfg = RqsConfig::new(5, 2.0);
    let mut rng = Rng::new(11);
    // inputs inside, near both edges and in the tails
    let x = Tensor::from_f64(&[-1.7, -0.3, 0.0, 0.9, 1.95, -2.5, 3.1, 1.2], &[2, 4]).unwrap();
    let uw = input(&mut rng, &[2, 4, 5], false);
    let uh = input(&mut rng, &[2, 4, 5], false);
    let ud = input(&mut rng, &[2, 4, 4], false);
    for inverse in [false, true] {
        gradcheck_first_order(
            &format!("rqs out inverse={inverse}"),
            &[x.clone(), uw.clone(), uh.clone(), ud.clone()],
            &|v: &[Var]| Ok(v[0].rqs(&v[1], &v[2], &v[3], &cfg, inverse)?.0),
        );
        gradcheck_first_order(
            &format!("rqs logdet inverse={inverse}"),
            &[x.clone(), uw.clone(), uh.clone(), ud.clone()],
            &|v: &[Var]| Ok(v[0].rqs(&v[1], &v[2], &v[3], &cfg, inverse)?.1),
        );
    }
}

#[test]
fn chamfer_both_reductions_with_masks() {
    use jetgen::ops::chamfer::{BatchReduction, PointReduction};
    let mut rng = Rng::new(12);
    let x = input(&mut rng, &[2, 5, 3], false);
    let y = input(&mut rng, &[2, 4, 3], false);
    let mx = Tensor::from_f64(&[1., 0., 1., 1., 1., 1., 1., 1., 1., 1.], &[2, 5]).unwrap();
    let my = Tensor::from_f64(&[1., 1., 0., 1., 1., 1., 1., 1.], &[2, 4]).unwrap();
    for red in [PointReduction::Sum, PointReduction::Mean] {
        gradcheck_first_order("chamfer", &[x.clone(), y.clone()], &|v: &[Var]| {
            v[0].chamfer(&v[1], Some(&mx), Some(&my), red, BatchReduction::None)
        });
        gradcheck_first_order(
            "chamfer mean batch",
            &[x.clone(), y.clone()],
            &|v: &[Var]| v[0].chamfer(&v[1], None, None, red, BatchReduction::Mean),
        );
    }
}

/// The fused message-passing ops (`ops/message.rs`) to second order: their `backward_graph`
/// is differentiable, so ∂⟨G, v⟩/∂x through them matches finite differences. Odd sizes,
/// a padded sender, an empty cloud, N ≠ M for the aggregate, slopes 0.2 and 1.
#[test]
fn message_passing_ops_to_second_order() {
    let mut rng = Rng::new(14);
    let a = input(&mut rng, &[2, 3, 5], false);
    let c = input(&mut rng, &[2, 3, 5], false);
    for alpha in [0.2, 1.0] {
        gradcheck("edge_input", &[a.clone(), c.clone()], |v| {
            v[0].tanh()?.edge_input(&v[1].sin()?, alpha)?.square()
        });
    }
    let m = input(&mut rng, &[3, 2, 4, 3], false);
    let mask =
        Tensor::from_f64(&[1., 0., 1., 1., 0., 0., 0., 0., 1., 1., 1., 1.], &[3, 4]).unwrap();
    gradcheck("aggregate", &[m], |v| {
        v[0].square()?.aggregate(&mask)?.sin()
    });
    // the two composed as in a layer, with the node update
    let x = input(&mut rng, &[2, 4, 3], false);
    let w = input(&mut rng, &[3, 6], false);
    let mask = Tensor::from_f64(&[1., 1., 0., 1., 1., 0., 0., 0.], &[2, 4]).unwrap();
    gradcheck("message passing layer", &[x, w], |v| {
        let a = v[0].matmul(&v[1])?;
        let c = v[0].sin()?.matmul(&v[1])?;
        a.edge_input(&c, 0.2)?.square()?.aggregate(&mask)?.tanh()
    });
}

#[test]
fn adjoint_ops_pad_index_add_scatter_add() {
    let mut rng = Rng::new(13);
    let x = input(&mut rng, &[2, 3, 4], false);
    gradcheck("pad", &[x.clone()], |v| v[0].pad(&[2, 6, 4], 1, 2));
    let idx = Indices::new(vec![1, 4, 1], &[3]).unwrap();
    gradcheck("index_add (repeated indices)", &[x.clone()], |v| {
        v[0].index_add(&[2, 5, 4], 1, &idx)?.tanh()
    });
    let g = Indices::new(
        (0..2 * 3 * 4).map(|i| (i * 5 % 6) as u32).collect(),
        &[2, 3, 4],
    )
    .unwrap();
    gradcheck("scatter_add", &[x.clone()], |v| {
        v[0].scatter_add(&[2, 6, 4], 1, &g)?.sin()
    });
}

#[test]
fn nn_layers_to_second_order() {
    use jetgen::nn::{
        Activation, BatchNorm1d, Ctx, Linear, Mlp, Module, ResidualNet, ResidualNetConfig,
    };
    use jetgen::{DType, Device};
    let to_f64 = |m: &dyn Module| {
        for p in m.params() {
            p.set_value(p.value().to_dtype(DType::F64).unwrap());
        }
    };
    let ctx_of = |v: &Var| Ctx::with_tape(v.tape().clone(), true, Rng::new(0));
    let mut rng = Rng::new(14);
    let x = input(&mut rng, &[5, 4], false);
    let linear = Linear::new("l", 4, 3, true, &mut rng, Device::Cpu).unwrap();
    to_f64(&linear);
    gradcheck("Linear", &[x.clone()], |v| {
        linear.forward(&ctx_of(&v[0]), &v[0])
    });
    let mlp = Mlp::new("m", &[4, 6, 2], Activation::Elu(1.0), &mut rng, Device::Cpu).unwrap();
    to_f64(&mlp);
    gradcheck("Mlp (elu)", &[x.clone()], |v| {
        mlp.forward(&ctx_of(&v[0]), &v[0])
    });
    let cfg = ResidualNetConfig {
        in_features: 4,
        out_features: 3,
        hidden_features: 6,
        context_features: 2,
        num_blocks: 2,
        activation: Activation::Relu,
        dropout: 0.0,
        batch_norm: true,
    };
    let net = ResidualNet::new("r", cfg, &mut rng, Device::Cpu).unwrap();
    to_f64(&net);
    let context = input(&mut rng, &[5, 2], false);
    gradcheck(
        "ResidualNet (batch norm, context gating)",
        &[x.clone(), context],
        |v| net.forward(&ctx_of(&v[0]), &v[0], Some(&v[1])),
    );
    let bn = BatchNorm1d::new("bn", 4, 1e-5, 0.1, Device::Cpu).unwrap();
    to_f64(&bn);
    gradcheck("BatchNorm1d (train)", &[x.clone()], |v| {
        bn.forward(&ctx_of(&v[0]), &v[0])?.square()
    });
}

#[test]
fn public_backward_functions_check_their_shapes() {
    use jetgen::ops::chamfer::{chamfer, chamfer_backward, PointReduction};
    use jetgen::ops::elementwise::{unary_backward, UnaryOp};
    use jetgen::ops::index::{index_add, scatter_add};
    use jetgen::ops::movement::pad_axis;
    use jetgen::ops::rqs::{rqs_backward, RqsConfig};
    use jetgen::ops::sinkhorn::{sinkhorn, sinkhorn_backward, SinkhornConfig};
    let shape_err = |r: jetgen::Result<()>, what: &str| match r {
        Err(jetgen::Error::Shape { .. }) => {}
        other => panic!("{what}: expected a shape error, got {other:?}"),
    };
    let mut rng = Rng::new(15);
    let x = input(&mut rng, &[2, 5, 3], false);
    let y = input(&mut rng, &[2, 4, 3], false);
    let wrong = input(&mut rng, &[3], false);
    shape_err(
        unary_backward(UnaryOp::Tanh, &x, &x, &wrong).map(|_| ()),
        "unary_backward",
    );
    let out = chamfer(&x, &y, None, None, PointReduction::Mean).unwrap();
    shape_err(
        chamfer_backward(&x, &y, &out, PointReduction::Mean, &wrong).map(|_| ()),
        "chamfer g",
    );
    shape_err(
        chamfer_backward(&y, &x, &out, PointReduction::Mean, &wrong.narrow_first()).map(|_| ()),
        "chamfer swapped",
    );
    let (a, b) = (
        Tensor::from_f64(&[0.2; 10], &[2, 5]).unwrap(),
        Tensor::from_f64(&[0.25; 8], &[2, 4]).unwrap(),
    );
    let cfg = SinkhornConfig::new(0.1, 20);
    let s = sinkhorn(&x, &y, &a, &b, &cfg).unwrap();
    let g2 = Tensor::from_f64(&[1.0, 1.0], &[2]).unwrap();
    shape_err(
        sinkhorn_backward(&x, &y, &b, &a, &s, &cfg, false, &g2).map(|_| ()),
        "sinkhorn weights",
    );
    shape_err(
        sinkhorn_backward(&x, &y, &a, &b, &s, &cfg, false, &wrong).map(|_| ()),
        "sinkhorn g",
    );
    let rcfg = RqsConfig::new(4, 3.0);
    let v = input(&mut rng, &[6], false);
    let (uw, ud) = (
        input(&mut rng, &[6, 4], false),
        input(&mut rng, &[6, 3], false),
    );
    shape_err(
        rqs_backward(&v, &uw, &uw, &ud, &rcfg, false, &v).map(|_| ()),
        "rqs g",
    );
    shape_err(
        rqs_backward(&v, &ud, &uw, &ud, &rcfg, false, &v).map(|_| ()),
        "rqs widths",
    );
    let idx = Indices::new(vec![0, 9], &[2]).unwrap();
    shape_err(
        index_add(&x, &[2, 5, 3], 1, &idx).map(|_| ()),
        "index_add shape",
    );
    assert!(
        index_add(&x.narrow_to(2), &[2, 5, 3], 1, &idx).is_err(),
        "index_add out of range index"
    );
    let gidx = Indices::new(vec![0; 30], &[2, 5, 3]).unwrap();
    shape_err(
        scatter_add(&y, &[2, 5, 3], 1, &gidx).map(|_| ()),
        "scatter_add shape",
    );
    shape_err(
        pad_axis(&x, &[2, 6, 3], 1, 2).map(|_| ()),
        "pad past the end",
    );
}

/// Small helpers for the shape test.
trait Cut {
    fn narrow_first(&self) -> Tensor;
    fn narrow_to(&self, k: usize) -> Tensor;
}

impl Cut for Tensor {
    /// The first two elements (a [2] tensor).
    fn narrow_first(&self) -> Tensor {
        let v = self.to_vec_f64().unwrap();
        Tensor::from_f64(&v[..2], &[2]).unwrap()
    }
    /// `[2, k, 3]` from the front of `[2, N, 3]`.
    fn narrow_to(&self, k: usize) -> Tensor {
        jetgen::ops::movement::narrow(self, 1, 0, k).unwrap()
    }
}

#[test]
fn epic_fused_global_and_particle_updates() {
    use jetgen::ops::epic::{epic_global, epic_particle};
    let mut rng = Rng::new(21);
    let (b, p, h, g, e, t, h1) = (2, 4, 3, 2, 3, 2, 5);
    // jet 0 has a padded particle, jet 1 two; the padded rows of h are zero (as in the net)
    let mask = Tensor::from_f64(&[1., 1., 0., 1., 1., 0., 1., 0.], &[b, p]).unwrap();
    let mut hv = input(&mut rng, &[b, p, h], false).to_vec_f64().unwrap();
    let mv = mask.to_vec_f64().unwrap();
    for (k, v) in hv.iter_mut().enumerate() {
        *v *= mv[k / h];
    }
    let hx = Tensor::from_f64(&hv, &[b, p, h]).unwrap();
    let global = [
        hx.clone(),
        input(&mut rng, &[b, g], false),
        input(&mut rng, &[b, e], false),
        input(&mut rng, &[h1, 2 * h + g + e], false),
        input(&mut rng, &[h1], false),
        input(&mut rng, &[g, h1], false),
        input(&mut rng, &[g], false),
    ];
    gradcheck_first_order("epic_global", &global, &|v: &[Var]| {
        epic_global(
            &v[0],
            &v[1],
            &v[2],
            [&v[3], &v[4], &v[5], &v[6]],
            &mask,
            0.3,
            0.01,
        )
    });
    let particle = [
        hx,
        input(&mut rng, &[b, g], false),
        input(&mut rng, &[b, t], false),
        input(&mut rng, &[h1, h + g + t], false),
        input(&mut rng, &[h1], false),
        input(&mut rng, &[h, h1], false),
        input(&mut rng, &[h], false),
    ];
    gradcheck_first_order("epic_particle", &particle, &|v: &[Var]| {
        epic_particle(
            &v[0],
            &v[1],
            &v[2],
            [&v[3], &v[4], &v[5], &v[6]],
            &mask,
            0.2,
        )
    });
    // shapes are checked: a mask of the wrong size, a weight of the wrong width
    let tape = Tape::new();
    let vars: Vec<Var> = particle.iter().map(|x| tape.var(x.clone())).collect();
    let bad_mask = Tensor::from_f64(&[1.0; 6], &[2, 3]).unwrap();
    let w = [&vars[3], &vars[4], &vars[5], &vars[6]];
    assert!(epic_particle(&vars[0], &vars[1], &vars[2], w, &bad_mask, 0.2).is_err());
    let w = [&vars[5], &vars[4], &vars[5], &vars[6]];
    assert!(epic_particle(&vars[0], &vars[1], &vars[2], w, &mask, 0.2).is_err());
    // once-differentiable: a second derivative through it is an error naming the op
    let w = [&vars[3], &vars[4], &vars[5], &vars[6]];
    let y = epic_particle(&vars[0], &vars[1], &vars[2], w, &mask, 0.2).unwrap();
    let l = y.square().unwrap().sum_all().unwrap();
    let gr = tape.grad(&l, &[&vars[0]], CreateGraph::Yes).unwrap();
    let s = gr[0].sum_all().unwrap();
    let e = tape.grad(&s, &[&vars[0]], CreateGraph::No).err().unwrap();
    assert!(e.to_string().contains("epic_particle"), "{e}");
}
