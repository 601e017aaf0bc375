//! PyTorch reference (tests/vectors/mlp_adam, from ../shared/peers/vectors_engine.py):
//! Sequential(Linear(7,16), Tanh, Linear(16,16), ReLU, BatchNorm1d(16), Linear(16,5)),
//! MSE loss, 3 steps of Adam and of AdamW. We load the PyTorch safetensors checkpoint and
//! reproduce outputs, gradients, parameters and BatchNorm running stats after every step.

mod common;

use common::{assert_close, npy, npy_tensor_f64, vectors_dir};
use jetgen::nn::{store, Activation, Adam, AdamConfig, BatchNorm1d, Ctx, Linear, Module, Param};
use jetgen::{DType, Device, Result, Rng, Tensor, Var};

struct Net {
    l0: Linear,
    l2: Linear,
    bn4: BatchNorm1d,
    l5: Linear,
}

impl Net {
    fn new() -> Net {
        let mut rng = Rng::new(0);
        Net {
            l0: Linear::new("0", 7, 16, true, &mut rng, Device::Cpu).unwrap(),
            l2: Linear::new("2", 16, 16, true, &mut rng, Device::Cpu).unwrap(),
            bn4: BatchNorm1d::new("4", 16, 1e-5, 0.1, Device::Cpu).unwrap(),
            l5: Linear::new("5", 16, 5, true, &mut rng, Device::Cpu).unwrap(),
        }
    }
    fn forward(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        let h = Activation::Tanh.apply(&self.l0.forward(ctx, x)?)?;
        let h = self.l2.forward(ctx, &h)?.relu()?;
        let h = self.bn4.forward(ctx, &h)?;
        self.l5.forward(ctx, &h)
    }
}

impl Module for Net {
    fn params(&self) -> Vec<Param> {
        [
            self.l0.params(),
            self.l2.params(),
            self.bn4.params(),
            self.l5.params(),
        ]
        .concat()
    }
}

fn file(name: &str) -> std::path::PathBuf {
    vectors_dir().join("mlp_adam").join(format!("{name}.npy"))
}

fn losses(case: &str) -> Vec<f64> {
    let layout: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors_dir().join("mlp_adam/layout.json")).unwrap(),
    )
    .unwrap();
    layout["cases"][case]["losses_before_each_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Run the reference case `case` ("adam"/"adamw") in `dtype`, comparing with tolerance `rtol`.
fn run_case(case: &str, dtype: DType, atol: f64, rtol: f64) {
    let net = Net::new();
    let params = net.params();
    match dtype {
        DType::F32 => {
            store::load_params(
                &vectors_dir().join("mlp_adam/init.safetensors"),
                &params,
                true,
            )
            .unwrap();
        }
        DType::F64 => {
            for p in &params {
                p.set_value(npy_tensor_f64(&file(&format!("init.{}", p.name()))));
            }
        }
    }
    let x = npy_tensor_f64(&file("x")).to_dtype(dtype).unwrap();
    let target = npy_tensor_f64(&file("target")).to_dtype(dtype).unwrap();
    let config = match case {
        "adam" => AdamConfig {
            lr: 0.01,
            ..Default::default()
        },
        _ => AdamConfig {
            lr: 0.01,
            weight_decay: 0.05,
            decoupled: true,
            ..Default::default()
        },
    };
    let mut opt = Adam::new(params.clone(), config);
    let expected_losses = losses(case);
    for step in 0..3 {
        let ctx = Ctx::new(true, 0);
        let out = net.forward(&ctx, &ctx.tape.constant(x.clone())).unwrap();
        let loss = out
            .sub(&ctx.tape.constant(target.clone()))
            .unwrap()
            .square()
            .unwrap()
            .mean_all()
            .unwrap();
        let what = format!("{case} {dtype:?} step {step}");
        assert_close(
            &[loss.value().item().unwrap()],
            &[expected_losses[step]],
            atol,
            rtol,
            &format!("{what} loss"),
        );
        opt.zero_grad();
        loss.backward().unwrap();
        if step == 0 {
            let (want, _) = npy(&file(&format!("{case}.step0.out")));
            assert_close(
                &out.value().to_vec_f64().unwrap(),
                &want,
                atol,
                rtol,
                &format!("{what} output"),
            );
            for p in params.iter().filter(|p| p.requires_grad()) {
                let (want, _) = npy(&file(&format!("{case}.step0.grad.{}", p.name())));
                let got = p.grad().expect("gradient").to_vec_f64().unwrap();
                assert_close(
                    &got,
                    &want,
                    atol,
                    rtol,
                    &format!("{what} grad {}", p.name()),
                );
            }
        }
        opt.step().unwrap();
        for p in &params {
            let (want, _) = npy(&file(&format!(
                "{case}.after_step{}.{}",
                step + 1,
                p.name()
            )));
            assert_close(
                &p.value().to_vec_f64().unwrap(),
                &want,
                atol,
                rtol,
                &format!("{what} {} after step", p.name()),
            );
        }
    }
    let ctx = Ctx::new(false, 0);
    let out = net.forward(&ctx, &ctx.tape.constant(x.clone())).unwrap();
    let (want, _) = npy(&file(&format!("{case}.eval_out_after3")));
    assert_close(
        &out.value().to_vec_f64().unwrap(),
        &want,
        atol,
        rtol,
        &format!("{case} {dtype:?} eval output"),
    );
}

#[test]
fn adam_f64_matches_pytorch() {
    run_case("adam", DType::F64, 1e-12, 1e-9);
}

#[test]
fn adamw_f64_matches_pytorch() {
    run_case("adamw", DType::F64, 1e-12, 1e-9);
}

#[test]
fn adam_f32_from_safetensors_matches_pytorch() {
    run_case("adam", DType::F32, 1e-6, 1e-5);
}

#[test]
fn adamw_f32_from_safetensors_matches_pytorch() {
    run_case("adamw", DType::F32, 1e-6, 1e-5);
}

#[test]
fn checkpoint_round_trip_and_bad_files() {
    let net = Net::new();
    let dir = std::env::temp_dir().join(format!("jetgen-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    let meta = [("model".to_string(), "test".to_string())]
        .into_iter()
        .collect();
    store::save_params(&path, &net.params(), &meta).unwrap();
    let other = Net::new();
    for p in other.params() {
        p.set_value(p.value().zeros_like().unwrap());
    }
    let got_meta = store::load_params(&path, &other.params(), true).unwrap();
    assert_eq!(got_meta.get("model").map(String::as_str), Some("test"));
    for (a, b) in net.params().iter().zip(other.params()) {
        assert_eq!(
            a.value().to_vec().unwrap(),
            b.value().to_vec().unwrap(),
            "{}",
            a.name()
        );
    }
    // truncated file, garbage, missing file, shape mismatch: errors naming the file
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(dir.join("trunc.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join("garbage.safetensors"), b"not a checkpoint").unwrap();
    for bad in [
        "trunc.safetensors",
        "garbage.safetensors",
        "missing.safetensors",
    ] {
        let err = store::load_params(&dir.join(bad), &other.params(), true).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    let wrong = Linear::new("0", 3, 3, true, &mut Rng::new(1), Device::Cpu).unwrap();
    let err = store::load_params(&path, &wrong.params(), false).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
    let err = store::load_params(&path, &wrong.params()[..0], true).unwrap_err();
    assert!(err.to_string().contains("unexpected"), "{err}");
    let _ = Tensor::zeros(&[1], Device::Cpu);
    std::fs::remove_dir_all(&dir).ok();
}
