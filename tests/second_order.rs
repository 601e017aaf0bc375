//! Second-order autodiff against PyTorch (float64; `tests/vectors/second_order`, made by
//! `../shared/peers/vectors_second_order.py`): the WGAN-GP gradient penalty and its
//! parameter gradients (a gradient of a gradient), the CramerGAN critic loss, and a
//! Hessian–vector product — in f64 to 1e-10 and in f32 to single-precision tolerance. Also:
//! the once-differentiable fused ops refuse a second derivative with an error naming them.

mod common;

use common::assert_close;
use common::critic::{
    check_wgan_gp, grad_of, gradient_penalty, inputs, load, reference, row_norm, values, Critic,
};
use jetgen::autograd::CreateGraph;
use jetgen::nn::Ctx;
use jetgen::ops::chamfer::{BatchReduction, PointReduction};
use jetgen::{DType, Device, Error, Rng, Tape, Tensor, Var};

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
    let loss = surrogate
        .neg()
        .unwrap()
        .add(&gp.mul_scalar(10.0).unwrap())
        .unwrap();
    let tag = format!("cramer {dtype:?}");
    assert_close(
        &values(surrogate.value()),
        &reference("cramer.generator_surrogate"),
        atol,
        rtol,
        &format!("{tag}: surrogate"),
    );
    assert_close(
        &values(gp.value()),
        &reference("cramer.gp"),
        atol,
        rtol,
        &format!("{tag}: gp"),
    );
    assert_close(
        &values(loss.value()),
        &reference("cramer.loss"),
        atol,
        rtol,
        &format!("{tag}: loss"),
    );
    loss.backward().unwrap();
    for (name, p) in h.params() {
        assert_close(
            &grad_of(&p),
            &reference(&format!("cramer.grad.{name}")),
            atol,
            rtol,
            &format!("{tag}: ∂loss/∂{name}"),
        );
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
    assert_close(
        &values(gx.value()),
        &reference("hvp.grad_x"),
        atol,
        rtol,
        &format!("{tag}: ∂s/∂x"),
    );
    assert_close(
        &values(hvp.value()),
        &reference("hvp.hvp"),
        atol,
        rtol,
        &format!("{tag}: H·v"),
    );
    // a third derivative through the same tape works too (here: it simply runs)
    assert!(
        hvp_vjp.is_ok(),
        "{tag}: third-order vjp failed: {:?}",
        hvp_vjp.err()
    );
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
    assert_close(
        &values(fast[0].value()),
        &values(recorded[0].value()),
        1e-14,
        1e-13,
        "∂s/∂x fast vs recorded",
    );
    assert_close(
        &values(fast[0].value()),
        &reference("wgan_gp.grad_x_hat"),
        1e-10,
        1e-10,
        "∂s/∂x̂ fast",
    );
}

/// Assert that differentiating the recorded gradient fails with NotDifferentiable{op}.
fn assert_once_differentiable(op: &str, loss_of: impl Fn(&Var) -> Var, x: Tensor) {
    let tape = Tape::new();
    let xv = tape.var(x);
    let l = loss_of(&xv);
    // first order, recorded: works
    let g = tape.grad(&l, &[&xv], CreateGraph::Yes).unwrap().remove(0);
    let first = values(g.value());
    assert!(
        first.iter().any(|v| *v != 0.0),
        "{op}: first-order gradient is all zero"
    );
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
    assert!(
        msg.contains("chamfer") && msg.contains("once-differentiable"),
        "{msg}"
    );
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
            x.chamfer(&yv, None, None, PointReduction::Mean, BatchReduction::Sum)
                .unwrap()
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
            let (yv, av, bv) = (
                x.constant(y.clone()),
                x.constant(a.clone()),
                x.constant(b.clone()),
            );
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
            out.square()
                .unwrap()
                .add(&logdet)
                .unwrap()
                .sum_all()
                .unwrap()
        },
        rng.normal_f64(&[6]).unwrap(),
    );
}
