//! The nflows reference flow (tests/vectors/coupling_flow): two RQS coupling layers (K = 8,
//! linear tails, B = 3, ResidualNet 16 hidden, 1 block) on 6 dims with a standard normal base.
//! Loading nflows' state dict by name, we reproduce the first layer's output, z, log_prob,
//! its gradient w.r.t. every parameter, and sampling from given base noise.

mod common;

use common::{assert_close, npy, npy_tensor_f64, vectors_dir};
use jetgen::nn::{alternating_mask, CouplingKind, CouplingTransform, Ctx, Module};
use jetgen::ops::rqs::RqsConfig;
use jetgen::{DType, Device, Rng, Tensor, Var};

fn file(name: &str) -> std::path::PathBuf {
    vectors_dir()
        .join("coupling_flow")
        .join(format!("{name}.npy"))
}

fn flow(dtype: DType) -> Vec<CouplingTransform> {
    (0..2)
        .map(|i| {
            let layer = CouplingTransform::new(
                &format!("_transform._transforms.{i}"),
                alternating_mask(6, i == 0),
                CouplingKind::Rqs(RqsConfig::new(8, 3.0)),
                16,
                1,
                0,
                0.0,
                false,
                &mut Rng::new(i as u64),
                Device::Cpu,
            )
            .unwrap();
            for p in layer.params() {
                let t = npy_tensor_f64(
                    &vectors_dir()
                        .join("coupling_flow/params")
                        .join(format!("{}.npy", p.name())),
                );
                assert_eq!(t.shape(), p.value().shape(), "{}", p.name());
                if p.name().ends_with("_features") {
                    assert_eq!(
                        t.to_vec().unwrap(),
                        p.value().to_vec().unwrap(),
                        "{}: our mask differs from nflows'",
                        p.name()
                    );
                }
                p.set_value(t.to_dtype(dtype).unwrap());
            }
            layer
        })
        .collect()
}

/// log N(z; 0, I) per row.
fn log_normal(z: &Var) -> Var {
    let d = z.shape()[1] as f64;
    z.square()
        .unwrap()
        .sum(&[1], false)
        .unwrap()
        .mul_scalar(-0.5)
        .unwrap()
        .add_scalar(-0.5 * d * (2.0 * std::f64::consts::PI).ln())
        .unwrap()
}

/// `inv_tol`: tolerance for the sampling direction, whose f32 accuracy is limited by the
/// conditioning of inverting flat spline regions (see tests/reference_rqs.rs).
fn run(dtype: DType, atol: f64, rtol: f64, inv_tol: f64) {
    let layers = flow(dtype);
    let ctx = Ctx::new(false, 0);
    let x = ctx
        .tape
        .constant(npy_tensor_f64(&file("x")).to_dtype(dtype).unwrap());
    let (h, ld0) = layers[0].forward(&ctx, &x, None).unwrap();
    let what = |s: &str| format!("{dtype:?} {s}");
    assert_close(
        &h.value().to_vec_f64().unwrap(),
        &npy(&file("fwd_layer0_out")).0,
        atol,
        rtol,
        &what("layer 0 output"),
    );
    assert_close(
        &ld0.value().to_vec_f64().unwrap(),
        &npy(&file("fwd_layer0_logabsdet")).0,
        atol,
        rtol,
        &what("layer 0 logabsdet"),
    );
    let (z, ld1) = layers[1].forward(&ctx, &h, None).unwrap();
    let logdet = ld0.add(&ld1).unwrap();
    assert_close(
        &z.value().to_vec_f64().unwrap(),
        &npy(&file("fwd_z")).0,
        atol,
        rtol,
        &what("z"),
    );
    assert_close(
        &logdet.value().to_vec_f64().unwrap(),
        &npy(&file("fwd_logabsdet")).0,
        atol,
        rtol,
        &what("logabsdet"),
    );
    let log_prob = log_normal(&z).add(&logdet).unwrap();
    assert_close(
        &log_prob.value().to_vec_f64().unwrap(),
        &npy(&file("log_prob")).0,
        atol,
        rtol,
        &what("log_prob"),
    );

    log_prob.sum_all().unwrap().backward().unwrap();
    for layer in &layers {
        for p in layer.params().iter().filter(|p| p.requires_grad()) {
            let (want, _) = npy(&vectors_dir()
                .join("coupling_flow/grads")
                .join(format!("{}.npy", p.name())));
            let got = p.grad().expect("gradient").to_vec_f64().unwrap();
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert_close(
                &got,
                &want,
                atol * scale.max(1.0),
                rtol,
                &what(&format!("grad {}", p.name())),
            );
        }
    }

    // sampling: z → T1⁻¹ → T0⁻¹
    let ctx = Ctx::new(false, 0);
    let noise = ctx
        .tape
        .constant(npy_tensor_f64(&file("base_noise")).to_dtype(dtype).unwrap());
    let (h, l1) = layers[1].inverse(&ctx, &noise, None).unwrap();
    let (samples, l0) = layers[0].inverse(&ctx, &h, None).unwrap();
    let inv_logdet = l0.add(&l1).unwrap();
    assert_close(
        &samples.value().to_vec_f64().unwrap(),
        &npy(&file("samples")).0,
        inv_tol,
        inv_tol,
        &what("samples"),
    );
    assert_close(
        &inv_logdet.value().to_vec_f64().unwrap(),
        &npy(&file("samples_inverse_logabsdet")).0,
        inv_tol,
        inv_tol,
        &what("inverse logabsdet"),
    );
    let slp = log_normal(&noise).sub(&inv_logdet).unwrap();
    assert_close(
        &slp.value().to_vec_f64().unwrap(),
        &npy(&file("samples_log_prob")).0,
        inv_tol,
        inv_tol,
        &what("samples log_prob"),
    );
}

#[test]
fn nflows_flow_f64() {
    run(DType::F64, 1e-9, 1e-9, 1e-9);
}

#[test]
fn nflows_flow_f32() {
    run(DType::F32, 1e-5, 1e-5, 1e-4);
}

#[test]
fn affine_coupling_inverts_and_logdets_cancel() {
    let layer = CouplingTransform::new(
        "t",
        alternating_mask(5, false),
        CouplingKind::Affine,
        8,
        2,
        2,
        0.0,
        false,
        &mut Rng::new(3),
        Device::Cpu,
    )
    .unwrap();
    for b in &layer.net.blocks {
        b.linear[1].init_uniform(0.3, &mut Rng::new(4)).unwrap();
    }
    let ctx = Ctx::new(false, 0);
    let x = ctx
        .tape
        .constant(Rng::new(5).normal(&[7, 5], 0.0, 1.0, Device::Cpu).unwrap());
    let c = ctx
        .tape
        .constant(Rng::new(6).normal(&[7, 2], 0.0, 1.0, Device::Cpu).unwrap());
    let (z, ld) = layer.forward(&ctx, &x, Some(&c)).unwrap();
    let (back, ld_inv) = layer.inverse(&ctx, &z, Some(&c)).unwrap();
    assert_close(
        &back.value().to_vec_f64().unwrap(),
        &x.value().to_vec_f64().unwrap(),
        1e-5,
        1e-5,
        "affine round trip",
    );
    let sum: Vec<f64> = ld
        .value()
        .to_vec_f64()
        .unwrap()
        .iter()
        .zip(ld_inv.value().to_vec_f64().unwrap())
        .map(|(a, b)| a + b)
        .collect();
    assert_close(&sum, &[0.0; 7], 1e-5, 0.0, "affine logdets");
    // kept features pass through unchanged
    let (xv, zv) = (x.value().to_vec().unwrap(), z.value().to_vec().unwrap());
    for r in 0..7 {
        for f in [0, 2, 4] {
            assert_eq!(xv[r * 5 + f], zv[r * 5 + f]);
        }
    }
    let _ = Tensor::zeros(&[1], Device::Cpu);
}
