//! MPGAN and its baselines: the fused message-passing ops against their broadcast
//! composition, masks respected (a padded particle never changes a real one, nor the
//! critic), permutation equivariance of the MP generator and invariance of the MP and
//! PointNet-Mix critics, the critics learning to tell two fixed batches apart with RMSprop,
//! few-step training runs of MP-MP, FC-MP and MP-PointNet (and MP-MP with a gradient
//! penalty through the fused ops), and an MPGAN checkpoint sampled through the C API.

mod common;

use common::assert_close;
use jetgen::data::JetNetData;
use jetgen::models::gan::losses::ls_discriminator;
use jetgen::models::gan::mp::{MpConfig, MpCritic, MpGenerator};
use jetgen::models::gan::pointnet::PointNetMix;
use jetgen::models::gan::{train_gan, DiscriminatorArch, GanLoss, GanSettings, GeneratorArch};
use jetgen::nn::{Ctx, Module, Optimizer, RmsProp, RmsPropConfig};
use jetgen::runs::settings::RunSettings;
use jetgen::{Device, Rng, Tape, Tensor, Var};

fn small() -> MpConfig {
    MpConfig {
        node_features: 6,
        edge: vec![7, 5],
        node: vec![9],
        iters: 2,
    }
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// Mask `[B, N]` with `counts[b]` real particles at the positions `real(b)`.
fn mask_of(b: usize, n: usize, real: impl Fn(usize, usize) -> bool) -> Tensor {
    let v: Vec<f32> = (0..b * n)
        .map(|k| real(k / n, k % n) as u8 as f32)
        .collect();
    Tensor::from_slice(&v, &[b, n], Device::Cpu).unwrap()
}

#[test]
fn fused_ops_equal_their_broadcast_composition() {
    let mut rng = Rng::new(1);
    let (b, n, h) = (3, 7, 5);
    let tape = Tape::new();
    let a = tape.var(rng.normal(&[b, n, h], 0.0, 1.0, Device::Cpu).unwrap());
    let c = tape.var(rng.normal(&[b, n, h], 0.0, 1.0, Device::Cpu).unwrap());
    let fused = a.edge_input(&c, 0.2).unwrap();
    let composed = a
        .reshape(&[b, n, 1, h])
        .unwrap()
        .add(&c.reshape(&[b, 1, n, h]).unwrap())
        .unwrap()
        .leaky_relu(0.2)
        .unwrap();
    assert_close(
        &vals(fused.value()),
        &vals(composed.value()),
        1e-6,
        0.0,
        "edge_input",
    );
    let mask = mask_of(b, n, |bb, j| (bb + j) % 3 != 0 && bb != 2); // jet 2 empty
    let agg = fused.aggregate(&mask).unwrap();
    let m4 = tape.constant(mask.reshape(&[b, 1, n, 1]).unwrap());
    let reference = composed.mul(&m4).unwrap().sum(&[2], false).unwrap();
    assert_close(
        &vals(agg.value()),
        &vals(reference.value()),
        1e-5,
        1e-6,
        "aggregate",
    );
    assert!(vals(agg.value())[2 * n * h..].iter().all(|&v| v == 0.0));
    // and the gradients agree
    let w = tape.constant(rng.normal(&[b, n, h], 0.0, 1.0, Device::Cpu).unwrap());
    let g1 = tape
        .grad(
            &agg.mul(&w).unwrap().sum_all().unwrap(),
            &[&a, &c],
            jetgen::autograd::CreateGraph::No,
        )
        .unwrap();
    let g2 = tape
        .grad(
            &reference.mul(&w).unwrap().sum_all().unwrap(),
            &[&a, &c],
            jetgen::autograd::CreateGraph::No,
        )
        .unwrap();
    for (x, y) in g1.iter().zip(&g2) {
        assert_close(&vals(x.value()), &vals(y.value()), 1e-5, 1e-5, "gradients");
    }
}

#[test]
fn fused_ops_refuse_bad_shapes() {
    let t = |s: &[usize]| Tensor::zeros(s, Device::Cpu).unwrap();
    let tape = Tape::new();
    let a = tape.var(t(&[2, 3, 4]));
    assert!(a.edge_input(&tape.var(t(&[2, 4, 4])), 0.2).is_err());
    assert!(a.edge_input(&tape.var(t(&[2, 3, 4])), f64::NAN).is_err());
    assert!(tape.var(t(&[2, 3, 4])).aggregate(&t(&[2, 3])).is_err());
    assert!(tape.var(t(&[2, 3, 3, 4])).aggregate(&t(&[2, 4])).is_err());
    assert!(jetgen::ops::message::aggregate_backward(&t(&[2, 3, 4]), &t(&[2, 5]), 4).is_err());
}

/// The generator's real outputs do not move when a padded particle's noise does (even to
/// ±∞); the critics' outputs do not move when a padded particle's features do.
#[test]
fn padded_particles_never_influence_real_ones() {
    let mut rng = Rng::new(2);
    let (b, n) = (3, 9);
    let c = small();
    let g = MpGenerator::new(&c, &mut rng, Device::Cpu).unwrap();
    let mask = mask_of(b, n, |bb, i| i < 6 - 2 * bb); // 6, 4 and 2 real particles
    let z = rng.normal(&[b, n, 6], 0.0, 0.2, Device::Cpu).unwrap();
    let mut z2 = z.to_vec().unwrap();
    for bb in 0..b {
        for f in 0..6 {
            z2[(bb * n + 7) * 6 + f] = if f == 0 { f32::INFINITY } else { 5.0 };
        }
    }
    let z2 = Tensor::from_slice(&z2, z.shape(), Device::Cpu).unwrap();
    let ctx = Ctx::new(false, 0);
    let out = |z: &Tensor| {
        vals(
            g.forward(&ctx, &ctx.tape.constant(z.clone()), &mask)
                .unwrap()
                .value(),
        )
    };
    let (o1, o2) = (out(&z), out(&z2));
    let m = vals(&mask);
    for (k, (x, y)) in o1.iter().zip(&o2).enumerate() {
        if m[k / 3] != 0.0 {
            assert_eq!(x, y, "generator output {k} moved");
        }
    }
    assert!(o1 != o2, "the padded particle's own output should change");

    let x = rng.normal(&[b, n, 4], 0.0, 0.5, Device::Cpu).unwrap();
    let mut xv = x.to_vec().unwrap();
    let mut xp = xv.clone();
    for bb in 0..b {
        for i in 0..n {
            let real = vals(&mask)[bb * n + i] != 0.0;
            xv[(bb * n + i) * 4 + 3] = if real { 0.5 } else { -0.5 };
            xp[(bb * n + i) * 4 + 3] = xv[(bb * n + i) * 4 + 3];
            if !real {
                xp[(bb * n + i) * 4] = 1e3;
                xp[(bb * n + i) * 4 + 1] = f32::NEG_INFINITY;
            }
        }
    }
    let x = Tensor::from_slice(&xv, &[b, n, 4], Device::Cpu).unwrap();
    let xp = Tensor::from_slice(&xp, &[b, n, 4], Device::Cpu).unwrap();
    let d = MpCritic::new(&c, 2, 0.5, &mut rng, Device::Cpu).unwrap();
    let pn = PointNetMix::new(&[8, 6], &[5], 2, 0.5, &mut rng, Device::Cpu).unwrap();
    for (name, f) in [
        (
            "mp critic",
            Box::new(|x: &Var| d.forward(&ctx, x, &mask)) as Box<dyn Fn(&Var) -> _>,
        ),
        (
            "pointnet critic",
            Box::new(|x: &Var| pn.forward(&ctx, x, &mask)),
        ),
    ] {
        let a = vals(f(&ctx.tape.constant(x.clone())).unwrap().value());
        let p = vals(f(&ctx.tape.constant(xp.clone())).unwrap().value());
        assert_eq!(a, p, "{name}: a padded particle changed the output");
        assert!(a.iter().all(|v| v.is_finite()));
    }
}

fn permute(t: &Tensor, perm: &[usize]) -> Tensor {
    let (b, n) = (t.shape()[0], t.shape()[1]);
    let f = t.numel() / (b * n);
    let v = t.to_vec().unwrap();
    let mut out = vec![0f32; v.len()];
    for bb in 0..b {
        for (i, &src) in perm.iter().enumerate() {
            out[(bb * n + i) * f..(bb * n + i + 1) * f]
                .copy_from_slice(&v[(bb * n + src) * f..(bb * n + src + 1) * f]);
        }
    }
    Tensor::from_slice(&out, t.shape(), Device::Cpu).unwrap()
}

#[test]
fn mp_generator_is_equivariant_and_critics_are_invariant() {
    let mut rng = Rng::new(3);
    let (b, n) = (2, 8);
    let c = small();
    let perm = [3, 0, 7, 1, 6, 2, 5, 4];
    let mask = mask_of(b, n, |bb, i| (i + bb) % 4 != 3);
    let pmask = permute(&mask, &perm);
    let ctx = Ctx::new(false, 0);
    let k = |t: &Tensor| ctx.tape.constant(t.clone());

    let g = MpGenerator::new(&c, &mut rng, Device::Cpu).unwrap();
    let z = rng.normal(&[b, n, 6], 0.0, 0.2, Device::Cpu).unwrap();
    let out = g.forward(&ctx, &k(&z), &mask).unwrap();
    let pout = g.forward(&ctx, &k(&permute(&z, &perm)), &pmask).unwrap();
    assert_close(
        &vals(&permute(out.value(), &perm)),
        &vals(pout.value()),
        1e-6,
        1e-5,
        "G(πz) = πG(z)",
    );

    let x = rng.normal(&[b, n, 4], 0.0, 0.5, Device::Cpu).unwrap();
    let d = MpCritic::new(&c, 1, 0.5, &mut rng, Device::Cpu).unwrap();
    let pn = PointNetMix::new(&[8, 6], &[5], 3, 0.5, &mut rng, Device::Cpu).unwrap();
    let px = permute(&x, &perm);
    let a = vals(d.forward(&ctx, &k(&x), &mask).unwrap().value());
    let p = vals(d.forward(&ctx, &k(&px), &pmask).unwrap().value());
    assert_close(&a, &p, 1e-6, 1e-5, "D_mp(πx) = D_mp(x)");
    let a = vals(pn.forward(&ctx, &k(&x), &mask).unwrap().value());
    let p = vals(pn.forward(&ctx, &k(&px), &pmask).unwrap().value());
    assert_close(&a, &p, 1e-6, 1e-5, "D_pointnet(πx) = D_pointnet(x)");
    // and a permutation that is not one changes something (the test can fail)
    let shifted = permute(&x, &[1, 1, 2, 3, 4, 5, 6, 7]);
    let s = vals(d.forward(&ctx, &k(&shifted), &mask).unwrap().value());
    assert!(s != vals(d.forward(&ctx, &k(&x), &mask).unwrap().value()));
}

/// 30 RMSprop steps of the LSGAN critic loss on two fixed batches (real: pT-like, fake:
/// shifted) lower the loss for both the MP and the PointNet-Mix critic.
#[test]
fn critics_learn_to_separate_two_batches_with_rmsprop() {
    let mut rng = Rng::new(4);
    let (b, n) = (16, 6);
    let mask = mask_of(b, n, |bb, i| i < 2 + bb % 5);
    let feat = |shift: f32, rng: &mut Rng| {
        let mut v = rng
            .normal(&[b, n, 4], 0.0, 0.3, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        let m = mask.to_vec().unwrap();
        for k in 0..b * n {
            v[k * 4] += shift;
            v[k * 4 + 3] = m[k] - 0.5;
        }
        Tensor::from_slice(&v, &[b, n, 4], Device::Cpu).unwrap()
    };
    let (real, fake) = (feat(0.0, &mut rng), feat(0.7, &mut rng));
    let c = small();
    let d = MpCritic::new(&c, 1, 0.0, &mut rng, Device::Cpu).unwrap();
    let pn = PointNetMix::new(&[8, 6], &[5], 1, 0.0, &mut rng, Device::Cpu).unwrap();
    type F<'a> = Box<dyn Fn(&Ctx, &Var) -> jetgen::Result<Var> + 'a>;
    let nets: [(&str, Vec<jetgen::nn::Param>, F); 2] = [
        (
            "mp",
            d.params(),
            Box::new(|ctx, x| d.forward(ctx, x, &mask)),
        ),
        (
            "pointnet",
            pn.params(),
            Box::new(|ctx, x| pn.forward(ctx, x, &mask)),
        ),
    ];
    for (name, params, f) in nets {
        let mut opt = RmsProp::new(
            params,
            RmsPropConfig {
                lr: 3e-3,
                ..Default::default()
            },
        );
        let mut losses = vec![];
        for step in 0..30 {
            opt.zero_grad();
            let ctx = Ctx::new(true, step);
            let loss = ls_discriminator(
                &f(&ctx, &ctx.tape.constant(real.clone())).unwrap(),
                &f(&ctx, &ctx.tape.constant(fake.clone())).unwrap(),
            )
            .unwrap();
            losses.push(loss.value().item().unwrap());
            loss.backward().unwrap();
            opt.step().unwrap();
        }
        assert!(
            losses[29] < 0.7 * losses[0],
            "{name}: LSGAN critic loss {} → {}",
            losses[0],
            losses[29]
        );
    }
}

fn tiny(
    g: GeneratorArch,
    d: DiscriminatorArch,
    loss: GanLoss,
    out: &std::path::Path,
) -> GanSettings {
    GanSettings {
        generator: g,
        discriminator: d,
        loss: Some(loss),
        latent: 8,
        hidden: 16,
        depth: 2,
        cramer_dim: 8,
        node_features: 6,
        edge_mlp: vec![8, 8],
        node_mlp: vec![12],
        pointnet_mlp: vec![8, 8],
        pointnet_head: vec![8],
        lr_g: Some(1e-4),
        lr_d: Some(3e-4),
        val_jets: 60,
        run: RunSettings {
            steps: 4,
            batch: 16,
            val_every: 2,
            generate: 60,
            quick_eval: true,
            plots: false,
            out: Some(out.to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The critic losses written to train_log.csv.
fn logged_losses(dir: &std::path::Path) -> Vec<f64> {
    let log = std::fs::read_to_string(dir.join("train_log.csv")).unwrap();
    let mut lines = log.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "train_d_loss").unwrap();
    lines
        .filter_map(|l| l.split(',').nth(col)?.parse().ok())
        .collect()
}

#[test]
fn few_step_training_of_every_combination_and_the_c_api() {
    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let root = std::env::temp_dir().join(format!("jetgen-mpgan-{}", std::process::id()));
    use DiscriminatorArch as D;
    use GeneratorArch as G;
    for (g, d, loss) in [
        (G::Mp, D::Mp, GanLoss::Ls),
        (G::Fc, D::Mp, GanLoss::Ls),
        (G::Mp, D::Pointnet, GanLoss::Ls),
        (G::Mp, D::Mp, GanLoss::WganGp),
    ] {
        let s = tiny(
            g,
            d,
            loss,
            &root.join(format!("{g:?}-{d:?}-{}", loss.name())),
        );
        let out = s.run.out.clone().unwrap();
        eprintln!("training {}", s.variant());
        let report = train_gan(&data, &s, &mut |_| {}).unwrap();
        let variant = s.variant();
        assert_eq!(report.steps_run, 4, "{variant}");
        assert!(report.best_score.is_finite(), "{variant}");
        let losses = logged_losses(&out);
        assert!(
            !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
            "{variant}: {losses:?}"
        );
        if loss == GanLoss::Ls {
            // the LSGAN critic loss lies in [0, 2] and starts near 0.5 (D ≈ 1/2 everywhere)
            assert!(
                losses.iter().all(|&l| (0.0..=2.0).contains(&l)),
                "{variant}: {losses:?}"
            );
        }
        assert!(
            losses.windows(2).any(|w| w[0] != w[1]),
            "{variant}: the loss never changed {losses:?}"
        );
        let gen = jetgen::runs::load_generator(&out, Device::Cpu).unwrap();
        assert_eq!(gen.name(), format!("gan/{variant}"));
        let a = gen.generate(40, 7).unwrap();
        assert_eq!((a.n_jets, a.n_particles), (40, 30));
        assert_eq!(a, gen.generate(40, 7).unwrap(), "seeded");
        assert!(
            (0..40).any(|i| a.multiplicity(i) > 0),
            "{variant}: every jet empty"
        );
        if (g, d, loss) == (G::Mp, D::Mp, GanLoss::Ls) {
            let (mut parts, mut jets) = (vec![0f32; 40 * 30 * 4], vec![0f32; 40 * 4]);
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
                        40,
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
            assert_eq!(parts, a.particles, "C API = Rust API");
        }
    }
    std::fs::remove_dir_all(&root).ok();
}

/// The drawn mask decides which particles are real: every generated jet has exactly a drawn
/// multiplicity, even when the generator's pT output lies below the padding value (a bias
/// of −20 on the pT output: tanh ≈ −1, (tanh + 0.5)·max < 0, floored at MIN_PT), and the
/// critic sees padded particles exactly as the data's padding [0, 0, −0.5, −0.5].
#[test]
fn generated_multiplicities_are_the_drawn_ones() {
    use jetgen::models::gan::particle_model::{generate_particles, TrainedParticleGan};
    use jetgen::models::gan::particles::{Multiplicity, MIN_PT};
    let mut counts = vec![0f32; 31];
    counts[10] = 1.0;
    counts[20] = 1.0;
    let m = TrainedParticleGan::new(
        &small(),
        None,
        Multiplicity { counts },
        0.2,
        "mp-mp-ls".into(),
        &mut Rng::new(5),
        Device::Cpu,
    )
    .unwrap();
    let check = |m: &TrainedParticleGan, what: &str| {
        let jets = generate_particles(m, 50, 3, Device::Cpu).unwrap();
        let mult: Vec<usize> = (0..50).map(|i| jets.multiplicity(i)).collect();
        assert!(
            mult.iter().all(|&k| k == 10 || k == 20) && mult.contains(&10) && mult.contains(&20),
            "{what}: {mult:?}"
        );
        for i in 0..50 {
            for j in 0..mult[i] {
                let pt = jets.particle(i, j)[2];
                assert!(
                    pt >= MIN_PT && pt.is_finite(),
                    "{what}: jet {i} particle {j} pT {pt}"
                );
            }
        }
        let ctx = Ctx::new(false, 0);
        let batch = m.sample(&ctx, 8, &mut Rng::new(9), Device::Cpu).unwrap();
        let (x, mask) = (
            batch.x.value().to_vec().unwrap(),
            batch.mask.to_vec().unwrap(),
        );
        for (q, &real) in x.chunks(4).zip(&mask) {
            if real == 0.0 {
                assert_eq!(q, [0.0, 0.0, -0.5, -0.5], "{what}: padded critic input");
            } else {
                assert_eq!(q[3], 0.5, "{what}");
            }
        }
    };
    check(&m, "untrained");
    let params = m.params();
    let last = params
        .iter()
        .rfind(|p| p.name().ends_with(".bias") && p.value().shape() == [3])
        .expect("the generator's output bias");
    last.set_value(Tensor::from_slice(&[0.0f32, 0.0, -20.0], &[3], Device::Cpu).unwrap());
    let jets = generate_particles(&m, 5, 1, Device::Cpu).unwrap();
    assert!(
        (0..5).all(|i| (0..jets.multiplicity(i)).all(|j| jets.particle(i, j)[2] == MIN_PT)),
        "the pT output is pushed below the padding: every real particle at the floor"
    );
    check(&m, "pT output below the padding");
}

/// A particle-layout checkpoint loads; one declaring a model far larger than the file, a
/// wrong histogram or a non-finite weight is refused with a message (Rust and C API).
#[test]
fn hostile_mpgan_checkpoints_are_refused() {
    use jetgen::models::gan::particle_model::{save_particle_gan, TrainedParticleGan};
    use jetgen::models::gan::particles::Multiplicity;
    use jetgen::nn::store::{load_tensors, save_tensors};
    let dir = std::env::temp_dir().join(format!("jetgen-mpgan-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.safetensors");
    let mut counts = vec![1f32; 31];
    counts[0] = 0.0;
    let m = TrainedParticleGan::new(
        &small(),
        None,
        Multiplicity { counts },
        0.2,
        "mp-mp-ls".into(),
        &mut Rng::new(5),
        Device::Cpu,
    )
    .unwrap();
    save_particle_gan(&good, &m).unwrap();
    jetgen::runs::load_generator(&good, Device::Cpu).expect("intact checkpoint loads");
    type Edit = Box<
        dyn Fn(
            &mut std::collections::HashMap<String, Tensor>,
            &mut std::collections::HashMap<String, String>,
        ),
    >;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|_, m| {
                m.insert("edge".into(), "4096,4096,4096".into());
            }),
            "declares",
        ),
        (
            Box::new(|_, m| {
                m.insert("iters".into(), "0".into());
            }),
            "iters",
        ),
        (
            Box::new(|_, m| {
                m.insert("generator".into(), "gnn".into());
            }),
            "unknown generator",
        ),
        (
            Box::new(|t, _| {
                t.insert(
                    "multiplicity".into(),
                    Tensor::from_slice(&[1.0; 7], &[7], Device::Cpu).unwrap(),
                );
            }),
            "multiplicity",
        ),
        (
            Box::new(|t, _| {
                let k = "generator.mp.0.node.0.bias".to_string();
                let mut v = t[&k].to_vec().unwrap();
                v[0] = f32::NAN;
                t.insert(k, Tensor::from_slice(&v, &[v.len()], Device::Cpu).unwrap());
            }),
            "NaN",
        ),
    ];
    for (k, (edit, want)) in cases.iter().enumerate() {
        let (mut t, mut meta) = load_tensors(&good).unwrap();
        edit(&mut t, &mut meta);
        let bad = dir.join(format!("bad{k}.safetensors"));
        let mut list: Vec<(String, Tensor)> = t.into_iter().collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        save_tensors(&bad, &list, &meta).unwrap();
        let err = jetgen::runs::load_generator(&bad, Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("case {k} loaded"))
            .to_string();
        assert!(err.contains(want), "case {k}: {err}");
        let mut handle = std::ptr::null_mut();
        let path = std::ffi::CString::new(bad.to_str().unwrap()).unwrap();
        // SAFETY: valid pointers.
        let status = unsafe {
            jetgen::ffi::jetgen_model_load(
                path.as_ptr(),
                jetgen::ffi::JETGEN_DEVICE_CPU,
                &mut handle,
            )
        };
        assert_ne!(
            status,
            jetgen::ffi::JetgenStatus::Ok,
            "case {k} via the C API"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// MPGAN's gluon generator has 361,123 parameters with our layout — the count of the PyTorch
/// peer (benches/peers/torch_mpgan.py) and of the released `G_best_epoch.pt` (1,452,317 bytes
/// ≈ 361k float32 plus pickle framing).
#[test]
fn default_sizes_match_mpgans_generator() {
    let c = GanSettings::default().mp_config();
    assert_eq!((c.node_features, c.iters), (32, 2));
    let g = MpGenerator::new(&c, &mut Rng::new(0), Device::Cpu).unwrap();
    let n: usize = g.params().iter().map(|p| p.value().numel()).sum();
    assert_eq!(n, 361_123);
    assert_eq!(c.generator_params(), 361_123);
    let d = MpCritic::new(&c, 1, 0.5, &mut Rng::new(0), Device::Cpu).unwrap();
    let n: usize = d.params().iter().map(|p| p.value().numel()).sum();
    assert_eq!(n, 356_065, "the peer's discriminator");
}

/// MPGAN's PointNet-Mix (`PointNetMixD` in rkansal47/MPGAN `ext_models/ext_models.py`,
/// `--pointnetd-pointfc 64 128 1024 --pointnetd-fc 512`): 3 → 64 → 128 → 1024 per particle,
/// 2·1024 → 512 → 1 after the pooling: 140,672 + 1,049,601 = 1,190,273 parameters. Our
/// defaults build exactly that network, and it scores a padded slot as the padding particle
/// whatever the slot holds.
#[test]
fn default_pointnet_mix_is_mpgans() {
    let s = GanSettings::default();
    let pn = PointNetMix::new(
        &s.pointnet_mlp,
        &s.pointnet_head,
        1,
        0.0,
        &mut Rng::new(0),
        Device::Cpu,
    )
    .unwrap();
    let shapes: Vec<Vec<usize>> = pn
        .params()
        .iter()
        .map(|p| p.value().shape().to_vec())
        .collect();
    assert_eq!(
        shapes,
        [
            vec![64, 3],
            vec![64],
            vec![128, 64],
            vec![128],
            vec![1024, 128],
            vec![1024],
            vec![512, 2048],
            vec![512],
            vec![1, 512],
            vec![1],
        ]
    );
    let n: usize = pn.params().iter().map(|p| p.value().numel()).sum();
    assert_eq!(n, 1_190_273);
    // a jet of two real particles in 3 slots
    let score = |slots: &[[f32; 4]], mask: &[f32]| {
        let x: Vec<f32> = slots.iter().flatten().copied().collect();
        let ctx = Ctx::new(false, 0);
        let xv = ctx
            .tape
            .constant(Tensor::from_slice(&x, &[1, slots.len(), 4], Device::Cpu).unwrap());
        let mask = Tensor::from_slice(mask, &[1, slots.len()], Device::Cpu).unwrap();
        pn.forward(&ctx, &xv, &mask)
            .unwrap()
            .value()
            .to_vec_f64()
            .unwrap()[0]
    };
    let (p1, p2) = ([0.1f32, -0.2, 0.3, 0.5], [-0.05f32, 0.15, 0.0, 0.5]);
    let padding = [0.0f32, 0.0, -0.5, -0.5];
    let padded = score(&[p1, p2, padding], &[1.0, 1.0, 0.0]);
    // whatever the padded slot holds, it is scored as the padding particle
    assert_eq!(
        score(&[p1, p2, [7.0, -3.0, 9.0, -0.5]], &[1.0, 1.0, 0.0]),
        padded
    );
    assert_eq!(
        score(&[p1, p2, [0.0, 0.0, -0.5, 0.5]], &[1.0, 1.0, 1.0]),
        padded
    );
    // and it takes part in the pooling: the same two particles in 2 slots score differently
    assert_ne!(score(&[p1, p2], &[1.0, 1.0]), padded);
}

#[test]
fn bad_mpgan_settings_are_refused() {
    let out = std::env::temp_dir().join("jetgen-mpgan-refused");
    let base = tiny(GeneratorArch::Mp, DiscriminatorArch::Mp, GanLoss::Ls, &out);
    for s in [
        GanSettings {
            mp_iters: 0,
            ..base.clone()
        },
        GanSettings {
            edge_mlp: vec![],
            ..base.clone()
        },
        GanSettings {
            node_features: 0,
            ..base.clone()
        },
        GanSettings {
            noise_sd: 0.0,
            ..base.clone()
        },
        GanSettings {
            d_dropout: 1.0,
            ..base.clone()
        },
        GanSettings {
            pointnet_mlp: vec![],
            ..base.clone()
        },
    ] {
        assert!(s.validate().is_err(), "{s:?}");
    }
    assert!(base.validate().is_ok());
    assert_eq!(base.critic_steps(), 1);
    assert_eq!(base.optimizer(), jetgen::models::gan::GanOptimizer::Rmsprop);
    let defaults = GanSettings {
        generator: GeneratorArch::Mp,
        discriminator: DiscriminatorArch::Mp,
        ..Default::default()
    };
    assert_eq!(
        defaults.learning_rates(),
        (1e-5, 3e-5),
        "MPGAN gluon args.txt"
    );
    assert_eq!(GanSettings::default().learning_rates(), (1e-4, 1e-4));
    assert_eq!(defaults.loss(), GanLoss::Ls, "MPGAN's loss");
    assert_eq!(defaults.variant(), "mp-mp-ls");
    assert_eq!(GanSettings::default().loss(), GanLoss::WganGp);
    assert!(!out.exists(), "nothing written");
}

/// One message-passing layer against PyTorch in the paper's plain style (pairs built by
/// broadcast + concatenation, the masked sum by multiplication), float64:
/// `tests/vectors/mpgan/make_mpgan.py`. Output, ∂L/∂x and every parameter gradient to 1e-10,
/// with padded particles holding random features and an empty jet.
#[test]
fn mp_layer_matches_pytorch() {
    use jetgen::models::gan::mp::MpLayer;
    let dir = common::vectors_dir().join("mpgan");
    let t = |name: &str| common::npy_tensor_f64(&dir.join(format!("{name}.npy")));
    let v = |name: &str| common::npy(&dir.join(format!("{name}.npy"))).0;
    let c = MpConfig {
        node_features: 5,
        edge: vec![8, 6],
        node: vec![7],
        iters: 1,
    };
    let layer = MpLayer::new("l", 4, 5, &c, 0.0, &mut Rng::new(0), Device::Cpu).unwrap();
    // fe.0 acts on [x_i, x_j]: its first 4 columns are the receiver's, the last 4 the sender's
    let w0 = v("fe.0.weight");
    let cols = |lo: usize| -> Vec<f64> {
        w0.chunks(8)
            .flat_map(|row| row[lo..lo + 4].to_vec())
            .collect()
    };
    let f64t = |d: &[f64], s: &[usize]| Tensor::from_f64(d, s).unwrap();
    layer.receiver.weight.set_value(f64t(&cols(0), &[8, 4]));
    layer.sender.weight.set_value(f64t(&cols(4), &[8, 4]));
    layer
        .receiver
        .bias
        .as_ref()
        .unwrap()
        .set_value(t("fe.0.bias"));
    let pairs = [
        (&layer.edge[0], "fe.2"),
        (&layer.node[0], "fn.0"),
        (&layer.node[1], "fn.2"),
    ];
    for (lin, name) in pairs {
        lin.weight.set_value(t(&format!("{name}.weight")));
        lin.bias
            .as_ref()
            .unwrap()
            .set_value(t(&format!("{name}.bias")));
    }
    let ctx = Ctx::new(true, 0);
    let x = ctx.tape.var(t("x"));
    let out = layer.forward(&ctx, &x, &t("mask")).unwrap();
    assert_close(&vals(out.value()), &v("out"), 1e-10, 1e-10, "layer output");
    let loss = out
        .mul(&ctx.tape.constant(t("w")))
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_close(
        &vals(grads.get(&x).unwrap()),
        &v("grad_x"),
        1e-10,
        1e-10,
        "∂L/∂x",
    );
    let (gr, gs) = (
        vals(&layer.receiver.weight.grad().unwrap()),
        vals(&layer.sender.weight.grad().unwrap()),
    );
    let joint: Vec<f64> = gr
        .chunks(4)
        .zip(gs.chunks(4))
        .flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<_>>())
        .collect();
    assert_close(&joint, &v("grad.fe.0.weight"), 1e-10, 1e-10, "fe.0.weight");
    let g = |p: &jetgen::nn::Param| vals(&p.grad().unwrap());
    assert_close(
        &g(layer.receiver.bias.as_ref().unwrap()),
        &v("grad.fe.0.bias"),
        1e-10,
        1e-10,
        "fe.0.bias",
    );
    for (lin, name) in pairs {
        assert_close(
            &g(&lin.weight),
            &v(&format!("grad.{name}.weight")),
            1e-10,
            1e-10,
            name,
        );
        assert_close(
            &g(lin.bias.as_ref().unwrap()),
            &v(&format!("grad.{name}.bias")),
            1e-10,
            1e-10,
            name,
        );
    }
}

/// `jetgen bench generate`'s MPGAN model: MPGAN's sizes, loads as a GAN and generates full
/// 30-particle jets.
#[test]
fn the_bench_mpgan_checkpoint_loads_and_generates_full_jets() {
    let dir = std::env::temp_dir().join(format!("jetgen-mpgan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    jetgen::models::gan::particle_model::write_bench_checkpoint(&ckpt, Device::Cpu).unwrap();
    let g = jetgen::runs::load_generator(&ckpt, Device::Cpu).unwrap();
    assert_eq!((g.family(), g.variant().as_str()), ("gan", "mp-mp-ls"));
    let jets = g.generate(4, 1).unwrap();
    assert_eq!((jets.n_jets, jets.n_particles), (4, 30));
    assert!((0..4).all(|i| jets.multiplicity(i) == 30));
    std::fs::remove_dir_all(&dir).ok();
}
