//! Layers, optimizers and checkpoints beyond the PyTorch reference test: training actually
//! learns, nflows ResidualNet state dicts load by name, context gating conditions the
//! output, BatchNorm modes, gradient clipping, PyTorch-default initialisation.

mod common;

use common::{npy_tensor, vectors_dir};
use jetgen::nn::{
    clip_grad_norm, store, Activation, Adam, AdamConfig, BatchNorm1d, Ctx, Linear, Mlp, Module,
    Param, ResidualNet, ResidualNetConfig,
};
use jetgen::{Device, Rng, Tensor};

/// The README example: an MLP regression that must cut its loss by 10× on the CPU.
#[test]
fn mlp_training_reduces_loss_and_round_trips() {
    let device = Device::Cpu;
    let mut rng = Rng::new(0);
    let mlp = Mlp::new("mlp", &[4, 32, 32, 2], Activation::Tanh, &mut rng, device).unwrap();
    let mut opt = Adam::new(
        mlp.params(),
        AdamConfig {
            lr: 1e-2,
            ..Default::default()
        },
    );
    let x = rng.normal(&[128, 4], 0.0, 1.0, device).unwrap();
    // target: a smooth function of x
    let xv = x.to_vec().unwrap();
    let yv: Vec<f32> = xv
        .chunks(4)
        .flat_map(|r| [r[0] * r[1], (r[2] - r[3]).sin()])
        .collect();
    let y = Tensor::from_slice(&yv, &[128, 2], device).unwrap();
    let mut losses = Vec::new();
    for step in 0..300 {
        opt.zero_grad();
        let ctx = Ctx::new(true, step);
        let out = mlp.forward(&ctx, &ctx.tape.constant(x.clone())).unwrap();
        let loss = out
            .sub(&ctx.tape.constant(y.clone()))
            .unwrap()
            .square()
            .unwrap()
            .mean_all()
            .unwrap();
        losses.push(loss.value().item().unwrap());
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    assert!(
        losses[299] < losses[0] / 10.0,
        "loss {} -> {}",
        losses[0],
        losses[299]
    );

    let path = std::env::temp_dir().join(format!("jetgen-mlp-{}.safetensors", std::process::id()));
    store::save_params(&path, &mlp.params(), &Default::default()).unwrap();
    let copy = Mlp::new(
        "mlp",
        &[4, 32, 32, 2],
        Activation::Tanh,
        &mut Rng::new(9),
        device,
    )
    .unwrap();
    store::load_params(&path, &copy.params(), true).unwrap();
    let run = |m: &Mlp| {
        let ctx = Ctx::new(false, 0);
        m.forward(&ctx, &ctx.tape.constant(x.clone()))
            .unwrap()
            .value()
            .to_vec()
            .unwrap()
    };
    assert_eq!(run(&mlp), run(&copy));
    std::fs::remove_file(&path).ok();
}

fn coupling_config(context: usize) -> ResidualNetConfig {
    ResidualNetConfig {
        in_features: 3,
        out_features: 69,
        hidden_features: 16,
        context_features: context,
        num_blocks: 1,
        activation: Activation::Relu,
        dropout: 0.0,
        batch_norm: false,
    }
}

/// nflows' state-dict names and shapes (tests/vectors/coupling_flow/params) load one to one.
#[test]
fn residual_net_loads_nflows_state_dict() {
    for layer in 0..2 {
        let prefix = format!("_transform._transforms.{layer}.transform_net");
        let net =
            ResidualNet::new(&prefix, coupling_config(0), &mut Rng::new(0), Device::Cpu).unwrap();
        for p in net.params() {
            let file = vectors_dir()
                .join("coupling_flow/params")
                .join(format!("{}.npy", p.name()));
            assert!(file.exists(), "nflows has no tensor named {}", p.name());
            let t = npy_tensor(&file, Device::Cpu);
            assert_eq!(t.shape(), p.value().shape(), "{}", p.name());
            p.set_value(t);
        }
        // every nflows transform_net tensor is one of ours
        let ours: Vec<String> = net.params().iter().map(|p| p.name()).collect();
        let theirs = std::fs::read_dir(vectors_dir().join("coupling_flow/params"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".npy")
                    .to_string()
            })
            .filter(|n| n.starts_with(&prefix))
            .count();
        assert_eq!(ours.len(), theirs);
        // the output has nflows' 3 × (3K − 1) parameters per example
        let ctx = Ctx::new(false, 0);
        let x = ctx
            .tape
            .constant(Rng::new(1).normal(&[5, 3], 0.0, 1.0, Device::Cpu).unwrap());
        assert_eq!(net.forward(&ctx, &x, None).unwrap().shape(), &[5, 69]);
    }
}

/// With context, every block is gated by σ(context_layer(c)): changing c changes the output,
/// and a missing context is a shape error.
#[test]
fn residual_net_context_gating() {
    let mut rng = Rng::new(2);
    let net = ResidualNet::new(
        "net",
        ResidualNetConfig {
            num_blocks: 2,
            ..coupling_config(2)
        },
        &mut rng,
        Device::Cpu,
    )
    .unwrap();
    // make the residual branch large enough to matter
    for b in &net.blocks {
        b.linear[1].init_uniform(0.5, &mut rng).unwrap();
    }
    let names: Vec<String> = net.params().iter().map(|p| p.name()).collect();
    assert!(
        names.contains(&"net.blocks.1.context_layer.weight".to_string()),
        "{names:?}"
    );
    let ctx = Ctx::new(false, 0);
    let x = ctx
        .tape
        .constant(rng.normal(&[4, 3], 0.0, 1.0, Device::Cpu).unwrap());
    let c1 = ctx
        .tape
        .constant(Tensor::from_slice(&[0.0; 8], &[4, 2], Device::Cpu).unwrap());
    let c2 = ctx
        .tape
        .constant(Tensor::from_slice(&[3.0; 8], &[4, 2], Device::Cpu).unwrap());
    let y1 = net
        .forward(&ctx, &x, Some(&c1))
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let y2 = net
        .forward(&ctx, &x, Some(&c2))
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let diff: f32 = y1.iter().zip(&y2).map(|(a, b)| (a - b).abs()).sum();
    assert!(diff > 1e-3, "context has no effect");
    assert!(matches!(
        net.forward(&ctx, &x, None),
        Err(jetgen::Error::Shape { .. })
    ));
}

#[test]
fn batch_norm_train_and_eval() {
    let bn = BatchNorm1d::new("bn", 3, 1e-5, 0.1, Device::Cpu).unwrap();
    let x = Tensor::from_slice(&[1., 2., 3., 3., 6., 9.], &[2, 3], Device::Cpu).unwrap();
    let ctx = Ctx::new(true, 0);
    let y = bn
        .forward(&ctx, &ctx.tape.constant(x.clone()))
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    // batch statistics: each column becomes (−1, +1)
    for (a, b) in y.iter().zip([-1., -1., -1., 1., 1., 1.]) {
        assert!((a - b).abs() < 1e-3, "{y:?}");
    }
    // running stats after one step: mean 0.1·μ, var 0.9 + 0.1·(unbiased var)
    let rm = bn.running_mean.value().to_vec().unwrap();
    let rv = bn.running_var.value().to_vec().unwrap();
    assert!(
        (rm[1] - 0.4).abs() < 1e-6 && (rv[1] - (0.9 + 0.1 * 8.0)).abs() < 1e-5,
        "{rm:?} {rv:?}"
    );
    let ctx = Ctx::new(false, 0);
    let e = bn
        .forward(&ctx, &ctx.tape.constant(x))
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    assert!((e[1] - 1.6 / (1.7f32 + 1e-5).sqrt()).abs() < 1e-5, "{e:?}");
    let bad = ctx
        .tape
        .constant(Tensor::zeros(&[2, 4], Device::Cpu).unwrap());
    assert!(bn.forward(&ctx, &bad).is_err());
}

#[test]
fn clip_grad_norm_scales_like_pytorch() {
    let a = Param::new("a", Tensor::zeros(&[2], Device::Cpu).unwrap());
    let b = Param::new("b", Tensor::zeros(&[1], Device::Cpu).unwrap());
    a.set_grad(Some(
        Tensor::from_slice(&[3.0, 0.0], &[2], Device::Cpu).unwrap(),
    ));
    b.set_grad(Some(Tensor::from_slice(&[4.0], &[1], Device::Cpu).unwrap()));
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-9);
    let ga = a.grad().unwrap().to_vec().unwrap();
    assert!((ga[0] - 3.0 / (5.0 + 1e-6) as f32).abs() < 1e-6, "{ga:?}");
    // below the limit nothing changes; a NaN norm is reported, not applied
    let n2 = clip_grad_norm(&[a.clone()], 10.0).unwrap();
    assert!(n2 < 1.0);
    a.set_grad(Some(
        Tensor::from_slice(&[f32::NAN, 1.0], &[2], Device::Cpu).unwrap(),
    ));
    assert!(clip_grad_norm(&[a.clone()], 1.0).unwrap().is_nan());
}

#[test]
fn linear_init_matches_pytorch_bounds() {
    let l = Linear::new("l", 400, 300, true, &mut Rng::new(3), Device::Cpu).unwrap();
    let w = l.weight.value().to_vec().unwrap();
    let bound = 1.0 / 20.0;
    assert!(w.iter().all(|v| v.abs() <= bound));
    let var = w.iter().map(|v| (v * v) as f64).sum::<f64>() / w.len() as f64;
    assert!((var - (bound as f64).powi(2) / 3.0).abs() < 1e-4, "{var}");
    assert_eq!(l.params().len(), 2);
}
