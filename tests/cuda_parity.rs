//! CUDA kernels against their CPU twins: every op forward and backward on random inputs
//! with odd sizes (not multiples of the block size), broadcasting, masks and extreme
//! values. Device buffers are poisoned with NaN before kernels write them, so an element a
//! kernel forgets is caught. Every test is `#[ignore]`d so that a machine without a GPU
//! reports them as ignored, never as passed; the GPU bundle and the CUDA-on-CPU stand-in
//! run them with `--include-ignored` (then a missing GPU prints a skip, and fails under
//! REQUIRE_GPU=1).

mod common;

use common::{assert_close, cuda_or_skip};
use jetgen::nn::{glu, Adam, AdamConfig, Param};
use jetgen::ops::index::Indices;
use jetgen::{Device, Result, Rng, Tape, Tensor, Var};

type OpFn = Box<dyn Fn(&[Var]) -> Result<Var>>;

struct Case {
    name: &'static str,
    shapes: Vec<Vec<usize>>,
    positive: bool,
    f: OpFn,
}

fn case(
    name: &'static str,
    shapes: &[&[usize]],
    positive: bool,
    f: impl Fn(&[Var]) -> Result<Var> + 'static,
) -> Case {
    Case {
        name,
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        positive,
        f: Box::new(f),
    }
}

fn inputs(c: &Case, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    c.shapes
        .iter()
        .map(|s| {
            let t = rng.normal(s, 0.0, 1.5, Device::Cpu).unwrap();
            if c.positive {
                let v: Vec<f32> = t.to_vec().unwrap().iter().map(|x| x.abs() + 0.25).collect();
                Tensor::from_slice(&v, s, Device::Cpu).unwrap()
            } else {
                t
            }
        })
        .collect()
}

/// Forward value and input gradients of L = Σ w ⊙ f(x) on `device`.
fn run(c: &Case, xs: &[Tensor], device: Device) -> (Vec<f64>, Vec<Vec<f64>>) {
    let tape = Tape::new();
    let vars: Vec<Var> = xs
        .iter()
        .map(|x| tape.var(x.to_device(device).unwrap()))
        .collect();
    let y = (c.f)(&vars).unwrap_or_else(|e| panic!("{} on {device}: {e}", c.name));
    let w = Rng::new(7)
        .uniform(y.shape(), -1.0, 1.0, Device::Cpu)
        .unwrap()
        .to_device(device)
        .unwrap();
    let l = y.mul(&tape.constant(w)).unwrap().sum_all().unwrap();
    let grads = l.backward().unwrap();
    let g = vars
        .iter()
        .map(|v| {
            grads
                .get(v)
                .map(|g| g.to_vec_f64().unwrap())
                .unwrap_or_default()
        })
        .collect();
    (y.value().to_vec_f64().unwrap(), g)
}

fn cases() -> Vec<Case> {
    let mask: Tensor = {
        let v: Vec<f32> = (0..37 * 31)
            .map(|i| ((i * 7919) % 5 != 0) as u8 as f32)
            .collect();
        Tensor::from_slice(&v, &[37, 31], Device::Cpu).unwrap()
    };
    let idx = Indices::new(vec![3, 0, 29, 3, 17], &[5]).unwrap();
    let gidx = Indices::new(
        (0..37 * 4).map(|i| (i * 13 % 31) as u32).collect(),
        &[37, 4],
    )
    .unwrap();
    vec![
        case("neg", &[&[37, 31]], false, |v| v[0].neg()),
        case("exp", &[&[37, 31]], false, |v| v[0].exp()),
        case("log", &[&[37, 31]], true, |v| v[0].log()),
        case("sqrt", &[&[37, 31]], true, |v| v[0].sqrt()),
        case("square", &[&[37, 31]], false, |v| v[0].square()),
        case("pow", &[&[37, 31]], true, |v| v[0].powf(1.7)),
        case("abs", &[&[37, 31]], false, |v| v[0].abs()),
        case("relu", &[&[37, 31]], false, |v| v[0].relu()),
        case("leaky_relu", &[&[37, 31]], false, |v| v[0].leaky_relu(0.1)),
        case("elu", &[&[37, 31]], false, |v| v[0].elu(1.0)),
        case("tanh", &[&[37, 31]], false, |v| v[0].tanh()),
        case("sigmoid", &[&[37, 31]], false, |v| v[0].sigmoid()),
        case("softplus", &[&[37, 31]], false, |v| v[0].softplus()),
        case("clamp", &[&[37, 31]], false, |v| v[0].clamp(-1.0, 0.5)),
        case("add_scalar", &[&[37, 31]], false, |v| v[0].add_scalar(0.3)),
        case("mul_scalar", &[&[37, 31]], false, |v| v[0].mul_scalar(-1.7)),
        case("recip", &[&[37, 31]], true, |v| v[0].recip()),
        case("sin", &[&[37, 31]], false, |v| v[0].sin()),
        case("cos", &[&[37, 31]], false, |v| v[0].cos()),
        case("sinh", &[&[37, 31]], false, |v| v[0].sinh()),
        case("cosh", &[&[37, 31]], false, |v| v[0].cosh()),
        case("add bcast", &[&[5, 37, 31], &[31]], false, |v| {
            v[0].add(&v[1])
        }),
        case("sub bcast", &[&[5, 1, 31], &[37, 1]], false, |v| {
            v[0].sub(&v[1])
        }),
        case("mul bcast", &[&[5, 37, 31], &[5, 37, 1]], false, |v| {
            v[0].mul(&v[1])
        }),
        case("div bcast", &[&[37, 31], &[1, 31]], true, |v| {
            v[0].div(&v[1])
        }),
        case("maximum", &[&[37, 31], &[37, 31]], false, |v| {
            v[0].maximum(&v[1])
        }),
        case("mask multiply", &[&[37, 31]], false, move |v| {
            v[0].mul(&v[0].constant(mask.to_device(v[0].value().device())?))
        }),
        case("select (where)", &[&[37, 31], &[31]], false, |v| {
            let m: Vec<f32> = (0..37 * 31).map(|i| (i % 3 == 0) as u8 as f32).collect();
            Var::select(
                &Tensor::from_slice(&m, &[37, 31], v[0].value().device())?,
                &v[0],
                &v[1],
            )
        }),
        case("matmul", &[&[67, 45], &[45, 33]], false, |v| {
            v[0].matmul(&v[1])
        }),
        case("matmul tn", &[&[45, 67], &[45, 33]], false, |v| {
            v[0].matmul_t(&v[1], true, false)
        }),
        case("matmul nt", &[&[67, 45], &[33, 45]], false, |v| {
            v[0].matmul_t(&v[1], false, true)
        }),
        case("matmul tt", &[&[45, 67], &[33, 45]], false, |v| {
            v[0].matmul_t(&v[1], true, true)
        }),
        case("matmul batched", &[&[3, 17, 9], &[3, 9, 5]], false, |v| {
            v[0].matmul(&v[1])
        }),
        case("linear on 3-d", &[&[3, 17, 9], &[5, 9]], false, |v| {
            v[0].matmul_t(&v[1], false, true)
        }),
        case("shared lhs", &[&[17, 9], &[3, 9, 5]], false, |v| {
            v[0].matmul(&v[1])
        }),
        case("sum rows", &[&[37, 1031]], false, |v| v[0].sum(&[1], false)),
        case("sum cols", &[&[1031, 37]], false, |v| v[0].sum(&[0], true)),
        case("sum middle", &[&[3, 257, 5]], false, |v| {
            v[0].sum(&[1], false)
        }),
        case("mean all", &[&[3, 257, 5]], false, |v| v[0].mean_all()),
        case("max rows", &[&[37, 1031]], false, |v| v[0].max(1, false)),
        case("max middle", &[&[3, 257, 5]], false, |v| v[0].max(1, true)),
        case("logsumexp rows", &[&[37, 1031]], false, |v| {
            v[0].logsumexp(-1, false)
        }),
        case("logsumexp middle", &[&[3, 257, 5]], false, |v| {
            v[0].logsumexp(1, true)
        }),
        case("softmax rows", &[&[37, 1031]], false, |v| v[0].softmax(-1)),
        case("softmax middle", &[&[3, 257, 5]], false, |v| {
            v[0].softmax(1)
        }),
        case("log_softmax", &[&[37, 33]], false, |v| v[0].log_softmax(-1)),
        case("cumsum rows", &[&[37, 129]], false, |v| v[0].cumsum(-1)),
        case("cumsum middle", &[&[3, 129, 5]], false, |v| v[0].cumsum(1)),
        case("permute", &[&[3, 17, 9, 2]], false, |v| {
            v[0].permute(&[2, 0, 3, 1])
        }),
        case("broadcast_to", &[&[17, 1]], false, |v| {
            v[0].broadcast_to(&[3, 17, 9])
        }),
        case("narrow", &[&[3, 17, 9]], false, |v| v[0].narrow(1, 5, 7)),
        case("concat", &[&[3, 17, 9], &[3, 4, 9]], false, |v| {
            Var::concat(&[&v[0], &v[1]], 1)
        }),
        case("index_select", &[&[37, 31]], false, move |v| {
            v[0].index_select(1, &idx)
        }),
        case("gather", &[&[37, 31]], false, move |v| {
            v[0].gather(1, &gidx)
        }),
        case("glu", &[&[37, 32]], false, |v| glu(&v[0], -1)),
        case("dropout", &[&[37, 31]], false, |v| {
            v[0].dropout(0.25, true, &mut Rng::new(3))
        }),
        case(
            "rqs K=8",
            &[&[37, 5], &[37, 5, 8], &[37, 5, 8], &[37, 5, 7]],
            false,
            |v| rqs_case(v, 8, false),
        ),
        case(
            "rqs inverse K=8",
            &[&[37, 5], &[37, 5, 8], &[37, 5, 8], &[37, 5, 7]],
            false,
            |v| rqs_case(v, 8, true),
        ),
        case(
            "rqs K=5",
            &[&[67], &[67, 5], &[67, 5], &[67, 4]],
            false,
            |v| rqs_case(v, 5, false),
        ),
        case(
            "rqs K=7 (run-time K)",
            &[&[67], &[67, 7], &[67, 7], &[67, 6]],
            false,
            |v| rqs_case(v, 7, true),
        ),
        case(
            "rqs K=16",
            &[&[3, 41], &[3, 41, 16], &[3, 41, 16], &[3, 41, 15]],
            false,
            |v| rqs_case(v, 16, false),
        ),
    ]
}

/// out and logdet of the spline with tail bound 2 (inputs ~N(0, 1.5²): some in the tails).
fn rqs_case(v: &[Var], bins: usize, inverse: bool) -> Result<Var> {
    let (y, ld) = v[0].rqs(
        &v[1],
        &v[2],
        &v[3],
        &jetgen::ops::rqs::RqsConfig::new(bins, 2.0),
        inverse,
    )?;
    Var::concat(&[&y, &ld], 0)
}

#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn every_op_matches_cpu_twin() {
    let Some(gpu) = cuda_or_skip("every_op_matches_cpu_twin") else {
        return;
    };
    jetgen::device::cuda::set_poison_allocations(true);
    for (k, c) in cases().iter().enumerate() {
        let xs = inputs(c, 100 + k as u64);
        let (y_cpu, g_cpu) = run(c, &xs, Device::Cpu);
        let (y_gpu, g_gpu) = run(c, &xs, gpu);
        assert_close(&y_gpu, &y_cpu, 1e-4, 1e-4, &format!("{} forward", c.name));
        for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
            assert_close(a, b, 1e-4, 1e-4, &format!("{} grad of input {i}", c.name));
        }
    }
    jetgen::device::cuda::set_poison_allocations(false);
}

#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn extreme_values_match() {
    let Some(gpu) = cuda_or_skip("extreme_values_match") else {
        return;
    };
    let v = [
        f32::NEG_INFINITY,
        -1e30,
        -88.0,
        -20.0,
        0.0,
        20.0,
        88.0,
        1e30,
        f32::INFINITY,
        f32::NAN,
        1e-30,
        -0.0,
    ];
    let x = Tensor::from_slice(&v, &[12], Device::Cpu).unwrap();
    for c in cases()
        .iter()
        .filter(|c| c.shapes.len() == 1 && c.shapes[0].len() == 2 && c.shapes[0] == [37, 31])
    {
        if matches!(
            c.name,
            "mask multiply"
                | "index_select"
                | "gather"
                | "dropout"
                | "select (where)"
                | "sin"
                | "cos" // CUDA sin/cos reduce arguments in f32 (exact only for |x| ≲ 1e4)
        ) {
            continue;
        }
        let tape = Tape::new();
        let cpu = (c.f)(&[tape.constant(x.clone())])
            .unwrap()
            .value()
            .to_vec_f64()
            .unwrap();
        let gv = (c.f)(&[tape.constant(x.to_device(gpu).unwrap())])
            .unwrap()
            .value()
            .to_vec_f64()
            .unwrap();
        assert_close(
            &gv,
            &cpu,
            1e-5,
            1e-5,
            &format!("{} on extreme values", c.name),
        );
    }
    // a line of all -inf: logsumexp = -inf, no NaN
    let nan = Tensor::from_slice(
        &[1.0, f32::NAN, f32::INFINITY, 2.0, f32::NEG_INFINITY],
        &[5],
        gpu,
    )
    .unwrap();
    assert_eq!(nan.count_non_finite().unwrap(), 3);
    // several inputs, one read-back: the error names the first bad one, in order
    let fine = Tensor::full(&[7], 1.0, gpu).unwrap();
    let empty = Tensor::full(&[0], 1.0, gpu).unwrap();
    Tensor::check_all_finite(&[("a", &fine), ("e", &empty), ("b", &fine)]).unwrap();
    let err = Tensor::check_all_finite(&[("a", &fine), ("e", &empty), ("b", &nan), ("c", &nan)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("in b: 3 of 5"), "{err}");
    let t = Tensor::full(&[2, 5], f32::NEG_INFINITY, gpu).unwrap();
    let lse = jetgen::ops::reduce::logsumexp_axis(&t, 1, false)
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(lse.iter().all(|&v| v == f32::NEG_INFINITY), "{lse:?}");
}

#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn random_numbers_match_cpu() {
    let Some(gpu) = cuda_or_skip("random_numbers_match_cpu") else {
        return;
    };
    let u_cpu = Rng::new(42)
        .uniform(&[1001, 3], -2.0, 3.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let u_gpu = Rng::new(42)
        .uniform(&[1001, 3], -2.0, 3.0, gpu)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(u_cpu, u_gpu, "uniforms must be bit-identical");
    let n_cpu = Rng::new(42)
        .normal(&[100_003], 0.5, 2.0, Device::Cpu)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let n_gpu = Rng::new(42)
        .normal(&[100_003], 0.5, 2.0, gpu)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert_close(&n_gpu, &n_cpu, 1e-6, 1e-6, "normals");
}

#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn adam_step_matches_cpu() {
    let Some(gpu) = cuda_or_skip("adam_step_matches_cpu") else {
        return;
    };
    for decoupled in [false, true] {
        let mut results = Vec::new();
        for dev in [Device::Cpu, gpu] {
            let p = Param::new("w", Rng::new(1).normal(&[1000, 7], 0.0, 1.0, dev).unwrap());
            let cfg = AdamConfig {
                lr: 0.01,
                weight_decay: 0.1,
                decoupled,
                ..Default::default()
            };
            let mut opt = Adam::new(vec![p.clone()], cfg);
            for s in 0..5 {
                p.set_grad(Some(
                    Rng::new(10 + s).normal(&[1000, 7], 0.0, 1.0, dev).unwrap(),
                ));
                opt.step().unwrap();
            }
            results.push(p.value().to_vec_f64().unwrap());
        }
        assert_close(
            &results[1],
            &results[0],
            1e-6,
            1e-5,
            &format!("adam decoupled={decoupled}"),
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn mixing_devices_is_an_error() {
    let Some(gpu) = cuda_or_skip("mixing_devices_is_an_error") else {
        return;
    };
    let a = Tensor::zeros(&[3], Device::Cpu).unwrap();
    let b = Tensor::zeros(&[3], gpu).unwrap();
    let err = jetgen::ops::elementwise::binary(jetgen::ops::elementwise::BinaryOp::Add, &a, &b)
        .unwrap_err();
    assert!(matches!(err, jetgen::Error::DeviceMismatch { .. }), "{err}");
}

/// Three full MLP training steps (BatchNorm, dropout off) from the same initial weights on
/// CPU and CUDA end at the same parameters.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn mlp_training_steps_match_cpu() {
    use jetgen::nn::{Activation, Ctx, Mlp, Module};
    let Some(gpu) = cuda_or_skip("mlp_training_steps_match_cpu") else {
        return;
    };
    let mut finals = Vec::new();
    for dev in [Device::Cpu, gpu] {
        let mlp = Mlp::new(
            "m",
            &[90, 129, 65, 90],
            Activation::Elu(1.0),
            &mut Rng::new(5),
            dev,
        )
        .unwrap();
        let mut opt = Adam::new(
            mlp.params(),
            AdamConfig {
                lr: 1e-3,
                ..Default::default()
            },
        );
        let x = Rng::new(6).normal(&[77, 90], 0.0, 1.0, dev).unwrap();
        for step in 0..3 {
            opt.zero_grad();
            let ctx = Ctx::new(true, step);
            let out = mlp.forward(&ctx, &ctx.tape.constant(x.clone())).unwrap();
            let loss = out
                .softmax(-1)
                .unwrap()
                .log()
                .unwrap()
                .neg()
                .unwrap()
                .mean_all()
                .unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
        }
        finals.push(
            mlp.params()
                .iter()
                .flat_map(|p| p.value().to_vec_f64().unwrap())
                .collect::<Vec<_>>(),
        );
    }
    assert_close(
        &finals[1],
        &finals[0],
        1e-5,
        1e-4,
        "MLP parameters after 3 steps",
    );
}

/// Chamfer on CUDA vs CPU: values, neighbour indices and gradients, with masks (including an
/// empty cloud and single points), odd sizes, clouds larger than one shared-memory tile.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn chamfer_matches_cpu() {
    use jetgen::ops::chamfer::{chamfer, chamfer_backward, PointReduction};
    let Some(gpu) = cuda_or_skip("chamfer_matches_cpu") else {
        return;
    };
    jetgen::device::cuda::set_poison_allocations(true);
    for (b, n, m, d) in [
        (5, 37, 150, 3),
        (3, 300, 513, 2),
        (4, 1, 7, 8),
        (2, 30, 30, 1),
    ] {
        let mut rng = Rng::new((b * n + m) as u64);
        let x = rng.normal(&[b, n, d], 0.0, 1.0, Device::Cpu).unwrap();
        let y = rng.normal(&[b, m, d], 0.0, 1.0, Device::Cpu).unwrap();
        let mut mxv: Vec<f32> = (0..b * n)
            .map(|_| (rng.below(4) != 0) as u8 as f32)
            .collect();
        mxv[..n].iter_mut().for_each(|v| *v = 0.0); // pair 0: empty x cloud
        let myv: Vec<f32> = (0..b * m).map(|k| (k % 3 != 1) as u8 as f32).collect();
        let mx = Tensor::from_slice(&mxv, &[b, n], Device::Cpu).unwrap();
        let my = Tensor::from_slice(&myv, &[b, m], Device::Cpu).unwrap();
        let g = rng.uniform(&[b], 0.5, 1.5, Device::Cpu).unwrap();
        for red in [PointReduction::Sum, PointReduction::Mean] {
            for masked in [false, true] {
                let (mxc, myc) = if masked {
                    (Some(&mx), Some(&my))
                } else {
                    (None, None)
                };
                let cpu = chamfer(&x, &y, mxc, myc, red).unwrap();
                let (gxc, gyc) = chamfer_backward(&x, &y, &cpu, red, &g).unwrap();
                let (xg, yg, gg) = (
                    x.to_device(gpu).unwrap(),
                    y.to_device(gpu).unwrap(),
                    g.to_device(gpu).unwrap(),
                );
                let (mxg, myg) = (mx.to_device(gpu).unwrap(), my.to_device(gpu).unwrap());
                let (mxd, myd) = if masked {
                    (Some(&mxg), Some(&myg))
                } else {
                    (None, None)
                };
                let dev = chamfer(&xg, &yg, mxd, myd, red).unwrap();
                let (gxd, gyd) = chamfer_backward(&xg, &yg, &dev, red, &gg).unwrap();
                let what = format!("chamfer b{b} n{n} m{m} d{d} {red:?} masked={masked}");
                assert_close(
                    &dev.distance.to_vec_f64().unwrap(),
                    &cpu.distance.to_vec_f64().unwrap(),
                    1e-4,
                    1e-5,
                    &what,
                );
                assert_eq!(
                    dev.nn_xy.to_vec().unwrap(),
                    cpu.nn_xy.to_vec().unwrap(),
                    "{what} nn_xy"
                );
                assert_eq!(
                    dev.nn_yx.to_vec().unwrap(),
                    cpu.nn_yx.to_vec().unwrap(),
                    "{what} nn_yx"
                );
                assert_close(
                    &gxd.to_vec_f64().unwrap(),
                    &gxc.to_vec_f64().unwrap(),
                    1e-5,
                    1e-4,
                    &format!("{what} grad x"),
                );
                assert_close(
                    &gyd.to_vec_f64().unwrap(),
                    &gyc.to_vec_f64().unwrap(),
                    1e-5,
                    1e-4,
                    &format!("{what} grad y"),
                );
            }
        }
    }
    jetgen::device::cuda::set_poison_allocations(false);
}

/// Sinkhorn on CUDA vs the CPU twin (f32): 100 fixed iterations and a tolerance solve with
/// ε-scaling, debiased, padded points (zero weights), an empty pair, N ≠ M, all three costs;
/// values, potentials and gradients.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn sinkhorn_matches_cpu() {
    use jetgen::ops::sinkhorn::{sinkhorn, sinkhorn_backward, Cost, SinkhornConfig};
    let Some(gpu) = cuda_or_skip("sinkhorn_matches_cpu") else {
        return;
    };
    jetgen::device::cuda::set_poison_allocations(true);
    for (bs, n, m, d) in [(5, 30, 30, 3), (3, 37, 150, 2), (2, 1, 9, 4)] {
        let mut rng = Rng::new((n * m) as u64);
        let x = rng.uniform(&[bs, n, d], 0.0, 1.0, Device::Cpu).unwrap();
        let y = rng.uniform(&[bs, m, d], 0.0, 1.0, Device::Cpu).unwrap();
        let weights = |rng: &mut Rng, k: usize, pad_every: usize, empty_first: bool| {
            let mut w: Vec<f32> = (0..bs * k)
                .map(|_| {
                    rng.uniform(&[1], 0.5, 1.5, Device::Cpu)
                        .unwrap()
                        .to_vec()
                        .unwrap()[0]
                })
                .collect();
            for (i, v) in w.iter_mut().enumerate() {
                if (pad_every > 0 && i % pad_every == 1 && k > 1) || (empty_first && i < k) {
                    *v = 0.0;
                }
            }
            for row in w.chunks_mut(k) {
                let s: f32 = row.iter().sum();
                if s > 0.0 {
                    row.iter_mut().for_each(|v| *v /= s);
                }
            }
            Tensor::from_slice(&w, &[bs, k], Device::Cpu).unwrap()
        };
        let a = weights(&mut rng, n, 5, bs > 2);
        let b = weights(&mut rng, m, 4, bs > 2);
        let g = rng.uniform(&[bs], 0.5, 1.5, Device::Cpu).unwrap();
        for cost in [
            Cost::SquaredEuclidean,
            Cost::Euclidean,
            Cost::HalfSquaredEuclidean,
        ] {
            for cfg in [
                SinkhornConfig {
                    cost,
                    ..SinkhornConfig::new(0.05, 100)
                },
                SinkhornConfig {
                    cost,
                    tolerance: Some(1e-4),
                    scaling: Some(0.8),
                    ..SinkhornConfig::new(0.02, 2000)
                },
            ] {
                let cpu = sinkhorn(&x, &y, &a, &b, &cfg).unwrap();
                let dev_in: Vec<Tensor> = [&x, &y, &a, &b, &g]
                    .iter()
                    .map(|t| t.to_device(gpu).unwrap())
                    .collect();
                let dev = sinkhorn(&dev_in[0], &dev_in[1], &dev_in[2], &dev_in[3], &cfg).unwrap();
                let what = format!(
                    "sinkhorn b{bs} n{n} m{m} d{d} {cost:?} tol={:?}",
                    cfg.tolerance
                );
                for (name, c, gv) in [
                    ("ot", &cpu.ot, &dev.ot),
                    (
                        "divergence",
                        cpu.divergence.as_ref().unwrap(),
                        dev.divergence.as_ref().unwrap(),
                    ),
                    ("transport cost", &cpu.transport_cost, &dev.transport_cost),
                    ("f", &cpu.f, &dev.f),
                    ("g", &cpu.g, &dev.g),
                    (
                        "f_aa",
                        cpu.f_aa.as_ref().unwrap(),
                        dev.f_aa.as_ref().unwrap(),
                    ),
                ] {
                    assert_close(
                        &gv.to_vec_f64().unwrap(),
                        &c.to_vec_f64().unwrap(),
                        1e-4,
                        1e-3,
                        &format!("{what} {name}"),
                    );
                }
                if cfg.tolerance.is_none() {
                    assert_eq!(dev.iterations, cpu.iterations, "{what} iterations");
                }
                for debiased in [false, true] {
                    let gc = sinkhorn_backward(&x, &y, &a, &b, &cpu, &cfg, debiased, &g).unwrap();
                    let gd = sinkhorn_backward(
                        &dev_in[0], &dev_in[1], &dev_in[2], &dev_in[3], &dev, &cfg, debiased,
                        &dev_in[4],
                    )
                    .unwrap();
                    for (k, (c, gv)) in gc.iter().zip(&gd).enumerate() {
                        assert_close(
                            &gv.to_vec_f64().unwrap(),
                            &c.to_vec_f64().unwrap(),
                            1e-4,
                            1e-3,
                            &format!("{what} debiased={debiased} grad {k}"),
                        );
                    }
                }
            }
        }
    }
    jetgen::device::cuda::set_poison_allocations(false);
}

/// The C API's device-pointer kernels: inputs in CUDA memory we allocate here, raw pointers
/// through `jetgen_chamfer_device` / `jetgen_sinkhorn_device`, results equal the host-buffer
/// calls on a CPU context.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn c_api_device_pointers_match_host_calls() {
    use jetgen::ffi::*;
    let Some(Device::Cuda(ordinal)) =
        common::cuda_or_skip("c_api_device_pointers_match_host_calls")
    else {
        return;
    };
    let be = jetgen::device::cuda::backend(ordinal).unwrap();
    let (b, n, m, d) = (5usize, 17usize, 23usize, 3usize);
    let mut rng = jetgen::Rng::new(9);
    let x = rng
        .normal(&[b, n, d], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let y = rng
        .normal(&[b, m, d], 0.3, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let wa = vec![1.0 / n as f32; b * n];
    let wb = vec![1.0 / m as f32; b * m];
    let ptr =
        |s: &cudarc::driver::CudaSlice<f32>| cudarc::driver::DevicePtr::device_ptr(s, &be.stream).0;
    let (dx, dy, da, db) = (
        be.htod(&x).unwrap(),
        be.htod(&y).unwrap(),
        be.htod(&wa).unwrap(),
        be.htod(&wb).unwrap(),
    );
    let out = be.alloc::<f32>(b).unwrap();
    let (mut cpu, mut gpu) = (std::ptr::null_mut(), std::ptr::null_mut());
    let mut host = vec![0f32; b];
    // the device call's output (in `out`) against the host call's
    let compare = |host: &[f32], atol: f64, rtol: f64, what: &str| {
        let dev: Vec<f64> = be
            .dtoh(&out, b)
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let want: Vec<f64> = host.iter().map(|&v| v as f64).collect();
        common::assert_close(&dev, &want, atol, rtol, what);
    };
    // SAFETY: valid pointers and sizes throughout.
    unsafe {
        assert_eq!(
            jetgen_context_create(JETGEN_DEVICE_CPU, 0, &mut cpu),
            JetgenStatus::Ok
        );
        assert_eq!(
            jetgen_context_create(ordinal as i32, 0, &mut gpu),
            JetgenStatus::Ok
        );
        assert_eq!(
            jetgen_chamfer(
                cpu,
                x.as_ptr(),
                y.as_ptr(),
                b,
                n,
                m,
                d,
                std::ptr::null(),
                std::ptr::null(),
                0,
                host.as_mut_ptr()
            ),
            JetgenStatus::Ok
        );
        assert_eq!(
            jetgen_chamfer_device(
                gpu,
                ptr(&dx) as *const f32,
                ptr(&dy) as *const f32,
                b,
                n,
                m,
                d,
                std::ptr::null(),
                std::ptr::null(),
                0,
                ptr(&out) as *mut f32
            ),
            JetgenStatus::Ok
        );
    }
    compare(&host, 1e-5, 1e-5, "chamfer device vs host");
    let mut opts = JetgenSinkhornOptions {
        cost: 0,
        epsilon: 0.0,
        max_iters: 0,
        tolerance: 0.0,
        scaling: 0.0,
        debias: 0,
    };
    let mut host_div = vec![0f32; b];
    // SAFETY: as above.
    unsafe {
        jetgen_sinkhorn_default_options(&mut opts);
        assert_eq!(
            jetgen_sinkhorn(
                cpu,
                x.as_ptr(),
                y.as_ptr(),
                wa.as_ptr(),
                wb.as_ptr(),
                b,
                n,
                m,
                d,
                &opts,
                host_div.as_mut_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            JetgenStatus::Ok
        );
        assert_eq!(
            jetgen_sinkhorn_device(
                gpu,
                ptr(&dx) as *const f32,
                ptr(&dy) as *const f32,
                ptr(&da) as *const f32,
                ptr(&db) as *const f32,
                b,
                n,
                m,
                d,
                &opts,
                ptr(&out) as *mut f32,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            JetgenStatus::Ok
        );
        jetgen_context_free(cpu);
        jetgen_context_free(gpu);
    }
    compare(&host_div, 1e-4, 1e-3, "sinkhorn divergence device vs host");
}

/// WGAN-GP on CUDA: the penalty's double backward (input gradient recorded on the tape,
/// differentiated again into the critic's parameters) equals PyTorch's and the CPU's.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn wgan_gp_second_order_parity() {
    let Some(dev) = cuda_or_skip("wgan_gp_second_order_parity") else {
        return;
    };
    use common::critic::check_wgan_gp;
    let gpu = check_wgan_gp(jetgen::DType::F32, dev, 2e-5, 2e-4);
    let cpu = check_wgan_gp(jetgen::DType::F32, Device::Cpu, 2e-5, 2e-4);
    for (k, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        assert_close(
            g,
            c,
            1e-5,
            1e-4,
            &format!("WGAN-GP ∂loss/∂θ[{k}] CUDA vs CPU"),
        );
    }
}

/// A flow-matching model (fused EPiC layers) on CUDA vs CPU from one checkpoint: three
/// training steps end at the same weights, generation gives the same jets, and the exact
/// log-densities agree.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn flow_matching_matches_cpu() {
    use jetgen::models::conditions::Conditions;
    use jetgen::models::flow_data::Standardizer;
    use jetgen::models::fm::sampling::FmGenerator;
    use jetgen::models::fm::training::{batch_loss, FmBatch};
    use jetgen::models::fm::{
        load_checkpoint, save_checkpoint, EpicConfig, EpicNet, FmCondition, TrainedFm,
    };
    use jetgen::nn::{Ctx, Module};
    use jetgen::ode::{Method, SolverSettings};
    use jetgen::runs::Generator;
    let Some(gpu) = cuda_or_skip("flow_matching_matches_cpu") else {
        return;
    };
    let p = 30;
    let config = EpicConfig {
        particles: p,
        layers: 2,
        hidden: 24,
        global: 5,
        time_embed: 8,
        context: 1,
        sum_scale: 1e-2,
    };
    let model = TrainedFm {
        net: EpicNet::new(config, &mut Rng::new(3), Device::Cpu).unwrap(),
        standardizer: Standardizer {
            mean: vec![0.0, 0.0, 0.03],
            std: vec![0.1, 0.1, 0.03],
        },
        condition: FmCondition::Mass,
        conditions: Conditions {
            mass: (0..20).map(|k| 0.05 + 0.005 * k as f64).collect(),
            n: (0..20).map(|k| (5 + k) as f64).collect(),
        },
        scale: [0.1, 0.03, 15.0, 6.0],
        pt: vec![],
        pt_scale: [0.0, 1.0],
        sigma_min: 1e-4,
        sampler: SolverSettings::fixed(Method::Midpoint, 3),
    };
    let dir = std::env::temp_dir().join(format!("jetgen-fm-cuda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    save_checkpoint(&path, &model).unwrap();
    // training steps
    let b = 9;
    let mut rng = Rng::new(4);
    let counts: Vec<usize> = (0..b).map(|k| [0, 1, 7, 30, 12][k % 5]).collect();
    let mask = jetgen::models::fm::sampling::masks_of(&counts, p);
    let mut x = rng
        .normal(&[b * p * 3], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    for (k, v) in x.iter_mut().enumerate() {
        *v *= mask[k / 3];
    }
    let batch = FmBatch {
        x,
        mask,
        context: (0..b).map(|k| k as f32 * 0.1).collect(),
        len: b,
    };
    let x0 = rng
        .normal(&[b * p * 3], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let t = rng
        .uniform(&[b], 0.0, 1.0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut finals = Vec::new();
    for dev in [Device::Cpu, gpu] {
        let m = load_checkpoint(&path, dev).unwrap();
        let mut opt = Adam::new(m.net.params(), AdamConfig::adamw(1e-3));
        for _ in 0..3 {
            opt.zero_grad();
            let ctx = Ctx::new(true, 0);
            batch_loss(&ctx, &m, &batch, &x0, &t, dev)
                .unwrap()
                .backward()
                .unwrap();
            opt.step().unwrap();
        }
        finals.push(
            m.net
                .params()
                .iter()
                .flat_map(|q| q.value().to_vec_f64().unwrap())
                .collect::<Vec<_>>(),
        );
    }
    assert_close(
        &finals[1],
        &finals[0],
        1e-5,
        1e-4,
        "EPiC weights after 3 steps",
    );
    // generation and log-densities through the Generator
    let cpu = FmGenerator::load(&path, Device::Cpu).unwrap();
    let dev = FmGenerator::load(&path, gpu).unwrap();
    let (a, c) = (cpu.generate(6, 2).unwrap(), dev.generate(6, 2).unwrap());
    assert_close(
        &a.particles.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &c.particles.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-5,
        1e-4,
        "generated particles",
    );
    let few = a.select(&[0, 1]).unwrap();
    let (la, lc) = (cpu.log_prob(&few).unwrap(), dev.log_prob(&few).unwrap());
    assert_close(&lc, &la, 1e-3, 1e-4, "log-densities");
    std::fs::remove_dir_all(&dir).ok();
}

/// MPGAN's networks on CUDA vs CPU (the fused message-passing kernels inside whole layers):
/// the MP generator's output and the MP critic's output and parameter gradients, with padded
/// particles, an empty jet and odd sizes; the recorded (second-order) gradient of the
/// critic's input-gradient norm too.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn mpgan_networks_match_cpu() {
    use jetgen::autograd::CreateGraph;
    use jetgen::models::gan::mp::{MpConfig, MpCritic, MpGenerator};
    use jetgen::nn::{Ctx, Module};
    let Some(gpu) = cuda_or_skip("mpgan_networks_match_cpu") else {
        return;
    };
    jetgen::device::cuda::set_poison_allocations(true);
    let c = MpConfig {
        node_features: 5,
        edge: vec![7, 9],
        node: vec![11],
        iters: 2,
    };
    let (b, n) = (3, 13);
    let mut rng = Rng::new(21);
    let g = MpGenerator::new(&c, &mut rng, Device::Cpu).unwrap();
    let d = MpCritic::new(&c, 2, 0.0, &mut rng, Device::Cpu).unwrap();
    let mv: Vec<f32> = (0..b * n)
        .map(|k| {
            if k < n {
                0.0
            } else {
                (k % 4 != 0) as u8 as f32
            }
        })
        .collect();
    let mask = Tensor::from_slice(&mv, &[b, n], Device::Cpu).unwrap();
    let z = rng.normal(&[b, n, 5], 0.0, 0.2, Device::Cpu).unwrap();
    let x = rng.normal(&[b, n, 4], 0.0, 0.5, Device::Cpu).unwrap();
    let run = |device: Device| {
        for p in g.params().iter().chain(d.params().iter()) {
            p.to_device(device).unwrap();
            p.zero_grad();
        }
        let ctx = Ctx::new(false, 0);
        let mk = mask.to_device(device).unwrap();
        let out = g
            .forward(&ctx, &ctx.tape.constant(z.to_device(device).unwrap()), &mk)
            .unwrap();
        let xv = ctx.tape.var(x.to_device(device).unwrap());
        let y = d.forward(&ctx, &xv, &mk).unwrap();
        let gx = ctx
            .tape
            .grad(&y.sum_all().unwrap(), &[&xv], CreateGraph::Yes)
            .unwrap()
            .remove(0);
        let loss = y
            .square()
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&gx.square().unwrap().sum_all().unwrap())
            .unwrap();
        loss.backward().unwrap();
        let grads: Vec<Vec<f64>> = d
            .params()
            .iter()
            .map(|p| p.grad().unwrap().to_vec_f64().unwrap())
            .collect();
        (
            out.value().to_vec_f64().unwrap(),
            y.value().to_vec_f64().unwrap(),
            gx.value().to_vec_f64().unwrap(),
            grads,
        )
    };
    let cpu = run(Device::Cpu);
    let dev = run(gpu);
    for p in g.params().iter().chain(d.params().iter()) {
        p.to_device(Device::Cpu).unwrap();
    }
    jetgen::device::cuda::set_poison_allocations(false);
    assert_close(&dev.0, &cpu.0, 1e-5, 1e-4, "MP generator output");
    assert_close(&dev.1, &cpu.1, 1e-5, 1e-4, "MP critic output");
    assert_close(&dev.2, &cpu.2, 1e-5, 1e-4, "MP critic input gradient");
    for (k, (a, b)) in dev.3.iter().zip(&cpu.3).enumerate() {
        assert_close(
            a,
            b,
            1e-4,
            1e-3,
            &format!("MP critic parameter gradient {k}"),
        );
    }
}

/// A few MP-MP training steps on CUDA (LSGAN, RMSprop; and WGAN-GP, whose penalty runs the
/// fused ops' recorded backward on the device): the run completes and its checkpoint samples
/// jets on the GPU.
#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn mpgan_trains_on_cuda() {
    use jetgen::models::gan::{train_gan, DiscriminatorArch, GanLoss, GanSettings, GeneratorArch};
    use jetgen::runs::settings::RunSettings;
    let Some(gpu) = cuda_or_skip("mpgan_trains_on_cuda") else {
        return;
    };
    let data = jetgen::data::JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let root = std::env::temp_dir().join(format!("jetgen-mpgan-cuda-{}", std::process::id()));
    for loss in [GanLoss::Ls, GanLoss::WganGp] {
        let out = root.join(loss.name());
        let s = GanSettings {
            generator: GeneratorArch::Mp,
            discriminator: DiscriminatorArch::Mp,
            loss: Some(loss),
            node_features: 6,
            edge_mlp: vec![8, 8],
            node_mlp: vec![12],
            lr_g: Some(1e-4),
            lr_d: Some(3e-4),
            val_jets: 40,
            run: RunSettings {
                steps: 2,
                batch: 8,
                val_every: 2,
                generate: 40,
                quick_eval: true,
                plots: false,
                device: "cuda".into(),
                out: Some(out.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let report = train_gan(&data, &s, &mut |_| {}).unwrap();
        assert_eq!(report.steps_run, 2, "{loss:?}");
        let g = jetgen::runs::load_generator(&out, gpu).unwrap();
        let jets = g.generate(20, 3).unwrap();
        assert_eq!((jets.n_jets, jets.n_particles), (20, 30));
    }
    std::fs::remove_dir_all(&root).ok();
}
