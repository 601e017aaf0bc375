//! Second-order autodiff against PyTorch (float64; `tests/vectors/second_order`, made by
//! `../shared/peers/vectors_second_order.py`): the WGAN-GP gradient penalty and its
//! parameter gradients (a gradient of a gradient), the CramerGAN critic loss, and a
//! Hessian–vector product — in f64 to 1e-10 and in f32 to single-precision tolerance. Also:
//! the once-differentiable fused ops refuse a second derivative with an error naming them.

mod common;

use common::{assert_close, npy, vectors_dir};
use jetgen::autograd::CreateGraph;
use jetgen::nn::{Ctx, Linear, Param};
use jetgen::ops::chamfer::{BatchReduction, PointReduction};
use jetgen::{DType, Device, Error, Rng, Tape, Tensor, Var};

fn dir() -> std::path::PathBuf {
    vectors_dir().join("second_order")
}

fn load(name: &str, dtype: DType) -> Tensor {
    let (v, shape) = npy(&dir().join(format!("{name}.npy")));
    match dtype {
        DType::F64 => Tensor::from_f64(&v, &shape).unwrap(),
        _ => {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::from_slice(&f, &shape, Device::Cpu).unwrap()
        }
    }
}

fn reference(name: &str) -> Vec<f64> {
    npy(&dir().join(format!("{name}.npy"))).0
}

/// The shared critic: Linear(6,32) LeakyReLU(0.2) Linear(32,32) Tanh Linear(32,16)
/// Softplus Linear(16,out), with PyTorch's weights (`prefix.{0,2,4,6}.{weight,bias}`).
struct Critic {
    layers: Vec<Linear>,
}

const LAYER_IDS: [usize; 4] = [0, 2, 4, 6];

impl Critic {
    fn load(prefix: &str, dtype: DType, device: Device) -> Critic {
        let mut rng = Rng::new(0);
        let layers = LAYER_IDS
            .iter()
            .map(|&i| {
                let w = load(&format!("{prefix}.{i}.weight"), dtype);
                let (out, inp) = (w.shape()[0], w.shape()[1]);
                let l = Linear::new(&i.to_string(), inp, out, true, &mut rng, device).unwrap();
                l.weight.set_value(w.to_device(device).unwrap());
                let b = load(&format!("{prefix}.{i}.bias"), dtype);
                l.bias.as_ref().unwrap().set_value(b.to_device(device).unwrap());
                l
            })
            .collect();
        Critic { layers }
    }

    fn forward(&self, ctx: &Ctx, x: &Var) -> Var {
        let l = &self.layers;
        let h = l[0].forward(ctx, x).unwrap().leaky_relu(0.2).unwrap();
        let h = l[1].forward(ctx, &h).unwrap().tanh().unwrap();
        let h = l[2].forward(ctx, &h).unwrap().softplus().unwrap();
        l[3].forward(ctx, &h).unwrap()
    }

    /// (name, param) in PyTorch's order.
    fn params(&self) -> Vec<(String, Param)> {
        LAYER_IDS
            .iter()
            .zip(&self.layers)
            .flat_map(|(i, l)| {
                [
                    (format!("{i}.weight"), l.weight.clone()),
                    (format!("{i}.bias"), l.bias.clone().unwrap()),
                ]
            })
            .collect()
    }

    fn zero_grad(&self) {
        for (_, p) in self.params() {
            p.zero_grad();
        }
    }
}

/// mean_b (‖∂Σf/∂x̂_b‖₂ − 1)² with the input gradient kept on the tape.
fn gradient_penalty(tape: &Tape, f: impl Fn(&Var) -> Var, x_hat: &Var) -> (Var, Var) {
    let out = f(x_hat).sum_all().unwrap();
    let g = tape.grad(&out, &[x_hat], CreateGraph::Yes).unwrap().remove(0);
    let norm = g.square().unwrap().sum(&[1], false).unwrap().sqrt().unwrap();
    let gp = norm.add_scalar(-1.0).unwrap().square().unwrap().mean_all().unwrap();
    (gp, g)
}

/// Row norms ‖x_b‖₂ of `[B, D]`.
fn row_norm(x: &Var) -> Var {
    x.square().unwrap().sum(&[1], false).unwrap().sqrt().unwrap()
}

struct Inputs {
    x_real: Tensor,
    x_fake: Tensor,
    x_fake2: Tensor,
    x_hat: Tensor,
}

fn inputs(dtype: DType, device: Device) -> Inputs {
    let get = |n: &str| load(n, dtype);
    let (x_real, x_fake, alpha) = (get("x_real"), get("x_fake"), get("alpha"));
    // x̂ = α·x_real + (1 − α)·x_fake, formed on the host in the reference's precision.
    let (r, f, a) = (
        x_real.to_vec_f64().unwrap(),
        x_fake.to_vec_f64().unwrap(),
        alpha.to_vec_f64().unwrap(),
    );
    let hat: Vec<f64> = (0..r.len())
        .map(|i| a[i / 6] * r[i] + (1.0 - a[i / 6]) * f[i])
        .collect();
    let x_hat = match dtype {
        DType::F64 => Tensor::from_f64(&hat, &[64, 6]).unwrap(),
        _ => Tensor::from_slice(
            &hat.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            &[64, 6],
            Device::Cpu,
        )
        .unwrap(),
    };
    let dev = |t: Tensor| t.to_device(device).unwrap();
    Inputs {
        x_real: dev(x_real),
        x_fake: dev(x_fake),
        x_fake2: dev(get("x_fake2")),
        x_hat: dev(x_hat),
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

fn grad_of(p: &Param) -> Vec<f64> {
    match p.grad() {
        Some(g) => values(&g),
        None => vec![0.0; p.value().numel()],
    }
}

/// WGAN-GP: gp, loss, ∂x̂, ∂loss/∂θ and ∂gp/∂θ against PyTorch; returns ∂loss/∂θ.
pub fn check_wgan_gp(dtype: DType, device: Device, atol: f64, rtol: f64) -> Vec<Vec<f64>> {
    let d = Critic::load("critic", dtype, device);
    let x = inputs(dtype, device);
    let ctx = Ctx::new(true, 0);
    let tape = &ctx.tape;
    let x_hat = tape.var(x.x_hat.clone());
    let (gp, g) = gradient_penalty(tape, |v| d.forward(&ctx, v), &x_hat);
    let fake = d.forward(&ctx, &tape.constant(x.x_fake.clone()));
    let real = d.forward(&ctx, &tape.constant(x.x_real.clone()));
    let loss = fake
        .mean_all()
        .unwrap()
        .sub(&real.mean_all().unwrap())
        .unwrap()
        .add(&gp.mul_scalar(10.0).unwrap())
        .unwrap();
    let tag = format!("wgan_gp {dtype:?} on {device}");
    assert_close(&values(g.value()), &reference("wgan_gp.grad_x_hat"), atol, rtol, &format!("{tag}: ∂D/∂x̂"));
    assert_close(&values(gp.value()), &reference("wgan_gp.gp"), atol, rtol, &format!("{tag}: gp"));
    assert_close(&values(loss.value()), &reference("wgan_gp.loss"), atol, rtol, &format!("{tag}: loss"));
    // input-only gradients left the parameters alone
    for (name, p) in d.params() {
        assert!(p.grad().is_none(), "{tag}: grad() touched {name}.grad");
    }
    loss.backward().unwrap();
    let mut grads = vec![];
    for (name, p) in d.params() {
        let got = grad_of(&p);
        assert_close(&got, &reference(&format!("wgan_gp.grad.{name}")), atol, rtol, &format!("{tag}: ∂loss/∂{name}"));
        grads.push(got);
    }
    // ∂gp/∂θ alone (the last bias does not reach the input gradient: exactly zero).
    d.zero_grad();
    let ctx = Ctx::new(true, 0);
    let x_hat = ctx.tape.var(x.x_hat.clone());
    let (gp, _) = gradient_penalty(&ctx.tape, |v| d.forward(&ctx, v), &x_hat);
    gp.backward().unwrap();
    for (name, p) in d.params() {
        assert_close(&grad_of(&p), &reference(&format!("wgan_gp.grad_gp.{name}")), atol, rtol, &format!("{tag}: ∂gp/∂{name}"));
    }
    grads
}

#[test]
fn wgan_gp_f64_matches_pytorch() {
    check_wgan_gp(DType::F64, Device::Cpu, 1e-10, 1e-10);
}

#[test]
fn wgan_gp_f32_matches_pytorch() {
    check_wgan_gp(DType::F32, Device::Cpu, 2e-5, 2e-4);
}

fn check_cramer(dtype: DType, atol: f64, rtol: f64) {
    let h = Critic::load("cramer_critic", dtype, Device::Cpu);
    let x = inputs(dtype, Device::Cpu);
    let ctx = Ctx::new(true, 0);
    let tape = &ctx.tape;
    let h2 = h.forward(&ctx, &tape.constant(x.x_fake2.clone()));
    // f(x) = ‖h(x) − h(x′_g)‖ − ‖h(x)‖
    let f = |v: &Var| {
        let hx = h.forward(&ctx, v);
        row_norm(&hx.sub(&h2).unwrap()).sub(&row_norm(&hx)).unwrap()
    };
    let surrogate = f(&tape.constant(x.x_real.clone()))
        .mean_all()
        .unwrap()
        .sub(&f(&tape.constant(x.x_fake.clone())).mean_all().unwrap())
        .unwrap();
    let x_hat = tape.var(x.x_hat.clone());
    let (gp, _) = gradient_penalty(tape, f, &x_hat);
    let loss = surrogate.neg().unwrap().add(&gp.mul_scalar(10.0).unwrap()).unwrap();
    let tag = format!("cramer {dtype:?}");
    assert_close(&values(surrogate.value()), &reference("cramer.generator_surrogate"), atol, rtol, &format!("{tag}: surrogate"));
    assert_close(&values(gp.value()), &reference("cramer.gp"), atol, rtol, &format!("{tag}: gp"));
    assert_close(&values(loss.value()), &reference("cramer.loss"), atol, rtol, &format!("{tag}: loss"));
    loss.backward().unwrap();
    for (name, p) in h.params() {
        assert_close(&grad_of(&p), &reference(&format!("cramer.grad.{name}")), atol, rtol, &format!("{tag}: ∂loss/∂{name}"));
    }
}

#[test]
fn cramer_gan_critic_matches_pytorch() {
    check_cramer(DType::F64, 1e-10, 1e-10);
    check_cramer(DType::F32, 2e-5, 2e-4);
}

fn check_hvp(dtype: DType, atol: f64, rtol: f64) {
    let d = Critic::load("critic", dtype, Device::Cpu);
    let x = inputs(dtype, Device::Cpu);
    let ctx = Ctx::new(true, 0);
    let tape = &ctx.tape;
    let xv = tape.var(x.x_real.clone());
    let s = d.forward(&ctx, &xv).sum_all().unwrap();
    let gx = tape.grad(&s, &[&xv], CreateGraph::Yes).unwrap().remove(0);
    let v = tape.constant(load("v", dtype));
    let gv = gx.mul(&v).unwrap().sum_all().unwrap();
    // the Hessian–vector product by a second grad, and by vjp with the same direction
    let hvp = tape.grad(&gv, &[&xv], CreateGraph::No).unwrap().remove(0);
    let hvp_vjp = tape.vjp(&gx, &v, &[&xv], CreateGraph::Yes).unwrap();
    let hvp_vjp = tape.vjp(&hvp_vjp[0], &v, &[&xv], CreateGraph::No);
    let tag = format!("hvp {dtype:?}");
    assert_close(&values(gx.value()), &reference("hvp.grad_x"), atol, rtol, &format!("{tag}: ∂s/∂x"));
    assert_close(&values(hvp.value()), &reference("hvp.hvp"), atol, rtol, &format!("{tag}: H·v"));
    // a third derivative through the same tape works too (here: it simply runs)
    assert!(hvp_vjp.is_ok(), "{tag}: third-order vjp failed: {:?}", hvp_vjp.err());
    for (name, p) in d.params() {
        assert!(p.grad().is_none(), "{tag}: grad() touched {name}.grad");
    }
}

#[test]
fn hessian_vector_product_matches_pytorch() {
    check_hvp(DType::F64, 1e-10, 1e-10);
    check_hvp(DType::F32, 2e-5, 2e-4);
}

#[test]
fn fast_path_equals_recorded_first_order_gradient() {
    let d = Critic::load("critic", DType::F64, Device::Cpu);
    let x = inputs(DType::F64, Device::Cpu);
    let ctx = Ctx::new(true, 0);
    let xv = ctx.tape.var(x.x_hat.clone());
    let s = d.forward(&ctx, &xv).sum_all().unwrap();
    let fast = ctx.tape.grad(&s, &[&xv], CreateGraph::No).unwrap();
    let recorded = ctx.tape.grad(&s, &[&xv], CreateGraph::Yes).unwrap();
    assert_close(&values(fast[0].value()), &values(recorded[0].value()), 1e-14, 1e-13, "∂s/∂x fast vs recorded");
    assert_close(&values(fast[0].value()), &reference("wgan_gp.grad_x_hat"), 1e-10, 1e-10, "∂s/∂x̂ fast");
}

/// Assert that differentiating the recorded gradient fails with NotDifferentiable{op}.
fn assert_once_differentiable(op: &str, loss_of: impl Fn(&Var) -> Var, x: Tensor) {
    let tape = Tape::new();
    let xv = tape.var(x);
    let l = loss_of(&xv);
    // first order, recorded: works
    let g = tape.grad(&l, &[&xv], CreateGraph::Yes).unwrap().remove(0);
    let first = values(g.value());
    assert!(first.iter().any(|v| *v != 0.0), "{op}: first-order gradient is all zero");
    // the fast first-order gradient is the same
    let fast = tape.grad(&l, &[&xv], CreateGraph::No).unwrap().remove(0);
    assert_close(&first, &values(fast.value()), 0.0, 0.0, op);
    // second order: an error that names the op, from grad and from backward alike
    let gg = g.square().unwrap().sum_all().unwrap();
    for result in [
        tape.grad(&gg, &[&xv], CreateGraph::No).map(|_| ()),
        tape.grad(&gg, &[&xv], CreateGraph::Yes).map(|_| ()),
        gg.backward().map(|_| ()),
    ] {
        match result {
            Err(Error::NotDifferentiable { op: named }) => assert_eq!(named, op),
            other => panic!("{op}: expected NotDifferentiable, got {:?}", other.err()),
        }
    }
    let msg = Error::NotDifferentiable { op: "chamfer" }.to_string();
    assert!(msg.contains("chamfer") && msg.contains("once-differentiable"), "{msg}");
}

#[test]
fn second_derivative_through_fused_ops_is_an_error() {
    let mut rng = Rng::new(3);
    let cloud = |rng: &mut Rng, n: usize| rng.normal_f64(&[2, n, 3]).unwrap();
    let y = cloud(&mut rng, 4);
    assert_once_differentiable(
        "chamfer",
        |x| {
            let yv = x.constant(y.clone());
            x.chamfer(&yv, None, None, PointReduction::Mean, BatchReduction::Sum).unwrap()
        },
        cloud(&mut rng, 5),
    );
    let cfg = jetgen::ops::sinkhorn::SinkhornConfig::new(0.1, 50);
    let (a, b) = (
        Tensor::from_f64(&[0.2; 10], &[2, 5]).unwrap(),
        Tensor::from_f64(&[0.25; 8], &[2, 4]).unwrap(),
    );
    assert_once_differentiable(
        "sinkhorn",
        |x| {
            let (yv, av, bv) = (x.constant(y.clone()), x.constant(a.clone()), x.constant(b.clone()));
            x.sinkhorn(&yv, &av, &bv, &cfg).unwrap().sum_all().unwrap()
        },
        cloud(&mut rng, 5),
    );
    let rcfg = jetgen::ops::rqs::RqsConfig::new(8, 3.0);
    let k = rcfg.bins;
    let (uw, uh, ud) = (
        rng.normal_f64(&[6, k]).unwrap(),
        rng.normal_f64(&[6, k]).unwrap(),
        rng.normal_f64(&[6, k - 1]).unwrap(),
    );
    assert_once_differentiable(
        "rqs",
        |x| {
            let c = |t: &Tensor| x.constant(t.clone());
            let (out, logdet) = x.rqs(&c(&uw), &c(&uh), &c(&ud), &rcfg, false).unwrap();
            out.square().unwrap().add(&logdet).unwrap().sum_all().unwrap()
        },
        rng.normal_f64(&[6]).unwrap(),
    );
}
