//! The critic MLPs of `tests/vectors/second_order` (PyTorch, float64) and the WGAN-GP check,
//! shared by tests/second_order.rs (CPU, f64 and f32) and tests/cuda_parity.rs (CUDA vs CPU).
#![allow(dead_code)]

use super::{assert_close, npy, vectors_dir};
use jetgen::autograd::CreateGraph;
use jetgen::nn::{Ctx, Linear, Param};
use jetgen::{DType, Device, Rng, Tape, Tensor, Var};

pub fn dir() -> std::path::PathBuf {
    vectors_dir().join("second_order")
}

pub fn load(name: &str, dtype: DType) -> Tensor {
    let (v, shape) = npy(&dir().join(format!("{name}.npy")));
    match dtype {
        DType::F64 => Tensor::from_f64(&v, &shape).unwrap(),
        _ => {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::from_slice(&f, &shape, Device::Cpu).unwrap()
        }
    }
}

pub fn reference(name: &str) -> Vec<f64> {
    npy(&dir().join(format!("{name}.npy"))).0
}

/// The shared critic: Linear(6,32) LeakyReLU(0.2) Linear(32,32) Tanh Linear(32,16)
/// Softplus Linear(16,out), with PyTorch's weights (`prefix.{0,2,4,6}.{weight,bias}`).
pub struct Critic {
    pub layers: Vec<Linear>,
}

const LAYER_IDS: [usize; 4] = [0, 2, 4, 6];

impl Critic {
    pub fn load(prefix: &str, dtype: DType, device: Device) -> Critic {
        let mut rng = Rng::new(0);
        let layers = LAYER_IDS
            .iter()
            .map(|&i| {
                let w = load(&format!("{prefix}.{i}.weight"), dtype);
                let (out, inp) = (w.shape()[0], w.shape()[1]);
                let l = Linear::new(&i.to_string(), inp, out, true, &mut rng, device).unwrap();
                l.weight.set_value(w.to_device(device).unwrap());
                let b = load(&format!("{prefix}.{i}.bias"), dtype);
                l.bias
                    .as_ref()
                    .unwrap()
                    .set_value(b.to_device(device).unwrap());
                l
            })
            .collect();
        Critic { layers }
    }

    pub fn forward(&self, ctx: &Ctx, x: &Var) -> Var {
        let l = &self.layers;
        let h = l[0].forward(ctx, x).unwrap().leaky_relu(0.2).unwrap();
        let h = l[1].forward(ctx, &h).unwrap().tanh().unwrap();
        let h = l[2].forward(ctx, &h).unwrap().softplus().unwrap();
        l[3].forward(ctx, &h).unwrap()
    }

    /// (name, param) in PyTorch's order.
    pub fn params(&self) -> Vec<(String, Param)> {
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

    pub fn zero_grad(&self) {
        for (_, p) in self.params() {
            p.zero_grad();
        }
    }
}

/// mean_b (‖∂Σf/∂x̂_b‖₂ − 1)² with the input gradient kept on the tape.
pub fn gradient_penalty(tape: &Tape, f: impl Fn(&Var) -> Var, x_hat: &Var) -> (Var, Var) {
    let out = f(x_hat).sum_all().unwrap();
    let g = tape
        .grad(&out, &[x_hat], CreateGraph::Yes)
        .unwrap()
        .remove(0);
    let norm = g
        .square()
        .unwrap()
        .sum(&[1], false)
        .unwrap()
        .sqrt()
        .unwrap();
    let gp = norm
        .add_scalar(-1.0)
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap();
    (gp, g)
}

/// Row norms ‖x_b‖₂ of `[B, D]`.
pub fn row_norm(x: &Var) -> Var {
    x.square()
        .unwrap()
        .sum(&[1], false)
        .unwrap()
        .sqrt()
        .unwrap()
}

pub struct Inputs {
    pub x_real: Tensor,
    pub x_fake: Tensor,
    pub x_fake2: Tensor,
    pub x_hat: Tensor,
}

pub fn inputs(dtype: DType, device: Device) -> Inputs {
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

pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

pub fn grad_of(p: &Param) -> Vec<f64> {
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
    assert_close(
        &values(g.value()),
        &reference("wgan_gp.grad_x_hat"),
        atol,
        rtol,
        &format!("{tag}: ∂D/∂x̂"),
    );
    assert_close(
        &values(gp.value()),
        &reference("wgan_gp.gp"),
        atol,
        rtol,
        &format!("{tag}: gp"),
    );
    assert_close(
        &values(loss.value()),
        &reference("wgan_gp.loss"),
        atol,
        rtol,
        &format!("{tag}: loss"),
    );
    // input-only gradients left the parameters alone
    for (name, p) in d.params() {
        assert!(p.grad().is_none(), "{tag}: grad() touched {name}.grad");
    }
    loss.backward().unwrap();
    let mut grads = vec![];
    for (name, p) in d.params() {
        let got = grad_of(&p);
        assert_close(
            &got,
            &reference(&format!("wgan_gp.grad.{name}")),
            atol,
            rtol,
            &format!("{tag}: ∂loss/∂{name}"),
        );
        grads.push(got);
    }
    // ∂gp/∂θ alone (the last bias does not reach the input gradient: exactly zero).
    d.zero_grad();
    let ctx = Ctx::new(true, 0);
    let x_hat = ctx.tape.var(x.x_hat.clone());
    let (gp, _) = gradient_penalty(&ctx.tape, |v| d.forward(&ctx, v), &x_hat);
    gp.backward().unwrap();
    for (name, p) in d.params() {
        assert_close(
            &grad_of(&p),
            &reference(&format!("wgan_gp.grad_gp.{name}")),
            atol,
            rtol,
            &format!("{tag}: ∂gp/∂{name}"),
        );
    }
    grads
}
