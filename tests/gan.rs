//! GANs: the models' gradient penalties against PyTorch (`tests/vectors/second_order`),
//! a few training steps for every loss (with EMA and periodic checkpoints), and the
//! checkpoints loading and sampling through the registry and the C API.

mod common;

use common::assert_close;
use common::critic::{grad_of, inputs, reference, values, Critic};
use jetgen::data::JetNetData;
use jetgen::models::gan::losses::{cramer_critic, gradient_penalty};
use jetgen::models::gan::{train_gan, GanLoss, GanSettings};
use jetgen::nn::Ctx;
use jetgen::runs::settings::RunSettings;
use jetgen::{DType, Device, Var};

#[test]
fn the_models_penalties_match_pytorch() {
    let dtype = DType::F64;
    let x = inputs(dtype, Device::Cpu);
    // WGAN-GP: E D(x_g) − E D(x_r) + 10·GP
    let d = Critic::load("critic", dtype, Device::Cpu);
    let ctx = Ctx::new(true, 0);
    let tape = &ctx.tape;
    let x_hat = tape.var(x.x_hat.clone());
    let gp = gradient_penalty(tape, |v| Ok(d.forward(&ctx, v)), &x_hat).unwrap();
    let loss = d
        .forward(&ctx, &tape.constant(x.x_fake.clone()))
        .mean_all()
        .unwrap()
        .sub(
            &d.forward(&ctx, &tape.constant(x.x_real.clone()))
                .mean_all()
                .unwrap(),
        )
        .unwrap()
        .add(&gp.mul_scalar(10.0).unwrap())
        .unwrap();
    assert_close(
        &values(gp.value()),
        &reference("wgan_gp.gp"),
        1e-10,
        1e-10,
        "wgan gp",
    );
    assert_close(
        &values(loss.value()),
        &reference("wgan_gp.loss"),
        1e-10,
        1e-10,
        "wgan loss",
    );
    loss.backward().unwrap();
    for (name, p) in d.params() {
        assert_close(
            &grad_of(&p),
            &reference(&format!("wgan_gp.grad.{name}")),
            1e-10,
            1e-10,
            &name,
        );
    }
    // CramerGAN: −(E f(x_r) − E f(x_g)) + 10·GP(f)
    let h = Critic::load("cramer_critic", dtype, Device::Cpu);
    let ctx = Ctx::new(true, 0);
    let tape = &ctx.tape;
    let h2 = h.forward(&ctx, &tape.constant(x.x_fake2.clone()));
    let f = |v: &Var| cramer_critic(&h.forward(&ctx, v), &h2);
    let surrogate = f(&tape.constant(x.x_real.clone()))
        .unwrap()
        .mean_all()
        .unwrap()
        .sub(
            &f(&tape.constant(x.x_fake.clone()))
                .unwrap()
                .mean_all()
                .unwrap(),
        )
        .unwrap();
    let gp = gradient_penalty(tape, f, &tape.var(x.x_hat.clone())).unwrap();
    let loss = surrogate
        .neg()
        .unwrap()
        .add(&gp.mul_scalar(10.0).unwrap())
        .unwrap();
    assert_close(
        &values(gp.value()),
        &reference("cramer.gp"),
        1e-10,
        1e-10,
        "cramer gp",
    );
    assert_close(
        &values(loss.value()),
        &reference("cramer.loss"),
        1e-10,
        1e-10,
        "cramer loss",
    );
    loss.backward().unwrap();
    for (name, p) in h.params() {
        assert_close(
            &grad_of(&p),
            &reference(&format!("cramer.grad.{name}")),
            1e-10,
            1e-10,
            &name,
        );
    }
}

fn tiny(loss: GanLoss, out: &std::path::Path) -> GanSettings {
    GanSettings {
        loss: Some(loss),
        latent: 16,
        hidden: 32,
        depth: 2,
        cramer_dim: 16,
        critic_steps: Some(2),
        val_jets: 100,
        run: RunSettings {
            steps: 6,
            batch: 32,
            val_every: 3,
            generate: 100,
            quick_eval: true,
            plots: false,
            out: Some(out.to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn few_step_training_for_every_loss_and_checkpoints_through_the_c_api() {
    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let root = std::env::temp_dir().join(format!("jetgen-gan-{}", std::process::id()));
    for (k, loss) in [GanLoss::Ls, GanLoss::WganGp, GanLoss::Cramer]
        .into_iter()
        .enumerate()
    {
        let out = root.join(loss.name());
        let mut s = tiny(loss, &out);
        if k == 1 {
            s.ema = 0.9;
            s.save_every = 3;
        }
        let mut reports = 0;
        let report = train_gan(&data, &s, &mut |_| reports += 1).unwrap();
        assert!(reports > 0);
        assert_eq!(report.steps_run, 6, "{loss:?}");
        assert!(
            report.best_score.is_finite() && report.best_score > 0.0,
            "{loss:?} FPD {}",
            report.best_score
        );
        for f in [
            "config.json",
            "checkpoint.safetensors",
            "train_log.csv",
            "generated.hdf5",
            "metrics.json",
        ] {
            assert!(out.join(f).exists(), "{loss:?}: {f} missing");
        }
        if k == 1 {
            for step in [3, 6] {
                assert!(out
                    .join(format!("checkpoint-step{step}.safetensors"))
                    .exists());
            }
        }
        let g = jetgen::runs::load_generator(&out, Device::Cpu).unwrap();
        assert_eq!(g.name(), format!("gan/fc-fc-{}", loss.name()));
        let a = g.generate(64, 7).unwrap();
        assert_eq!((a.n_jets, a.n_particles), (64, 30));
        assert_eq!(a, g.generate(64, 7).unwrap(), "seeded");
        // the C API loads the run and gives the Rust API's jets
        let (mut parts, mut jets) = (vec![0f32; 64 * 30 * 4], vec![0f32; 64 * 4]);
        let mut handle = std::ptr::null_mut();
        let path = std::ffi::CString::new(out.to_str().unwrap()).unwrap();
        // SAFETY: valid pointers and sizes.
        unsafe {
            assert_eq!(
                jetgen::ffi::jetgen_model_load(
                    path.as_ptr(),
                    jetgen::ffi::JETGEN_DEVICE_CPU,
                    &mut handle
                ),
                jetgen::ffi::JetgenStatus::Ok
            );
            assert_eq!(
                jetgen::ffi::jetgen_model_generate(
                    handle,
                    64,
                    7,
                    parts.as_mut_ptr(),
                    parts.len(),
                    jets.as_mut_ptr(),
                    jets.len()
                ),
                jetgen::ffi::JetgenStatus::Ok
            );
            jetgen::ffi::jetgen_model_free(handle);
        }
        assert_eq!(parts, a.particles, "{loss:?}: C API = Rust API");
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn unsupported_or_bad_settings_are_refused() {
    let out = std::env::temp_dir().join("jetgen-gan-refused");
    for s in [
        GanSettings {
            critic_steps: Some(0),
            ..tiny(GanLoss::Ls, &out)
        },
        GanSettings {
            ema: 1.0,
            ..tiny(GanLoss::Ls, &out)
        },
        GanSettings {
            lr_d: Some(-1.0),
            ..tiny(GanLoss::Ls, &out)
        },
    ] {
        assert!(s.validate().is_err(), "{s:?}");
    }
    assert!(!out.exists(), "nothing written");
}
