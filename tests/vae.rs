//! The VAE/AE families: the permutation (in)variance of the reconstruction losses, the KL
//! term against numerical integration, the reparameterisation gradient, the jet pT/mass
//! terms against `physics.rs`, few-step training lowering every loss, checkpoints through
//! the registry and the C API.

use jetgen::autograd::CreateGraph;
use jetgen::data::JetNetData;
use jetgen::models::flow_data::Standardizer;
use jetgen::models::vae::anomaly::ScoreBy;
use jetgen::models::vae::data::{read_clouds, relative_clouds, Clouds, Representation};
use jetgen::models::vae::loss::{jet_pt_mass, recon_per_jet, LossBatch, LossSpec};
use jetgen::models::vae::network::{kl_per_dim, reparameterize};
use jetgen::models::vae::sampling::{encode, latent_scores};
use jetgen::models::vae::settings::{ReconLoss, VaeSettings};
use jetgen::models::vae::{load_checkpoint, train_vae};
use jetgen::nn::Ctx;
use jetgen::runs::load_generator;
use jetgen::{Device, Rng, Tensor};

const SAMPLE: &str = "data/sample/g.hdf5";

fn sample_clouds(n: usize, p: usize) -> (Clouds, JetNetData) {
    let (c, j) = read_clouds(std::path::Path::new(SAMPLE), p).unwrap();
    let idx: Vec<usize> = (0..n).collect();
    (c.select(&idx), j.select(&idx).unwrap())
}

/// The sample's jets as Cartesian momenta (jet pT and η from the file, φ_jet = 0).
fn cartesian_sample(n: usize, p: usize) -> (Clouds, JetNetData) {
    let (_, jets) = sample_clouds(n, p);
    let mut momenta = Vec::new();
    for i in 0..n {
        let jf = jets.jet(i);
        let rows: Vec<f32> = (0..p).flat_map(|j| jets.particle(i, j).to_vec()).collect();
        for (q, r) in jetgen::physics::to_cartesian(&rows, jf[0] as f64, jf[1] as f64, 0.0)
            .iter()
            .zip(rows.chunks_exact(4))
        {
            let real = r[3] != 0.0;
            momenta.extend(q.iter().map(|&v| if real { v as f32 } else { 0.0 }));
        }
    }
    let cart = jetgen::data::CartesianJets {
        momenta,
        n_jets: n,
        n_particles: p,
    };
    jetgen::models::vae::data::cartesian_clouds(&cart, p, std::path::Path::new("test")).unwrap()
}

fn spec(loss: ReconLoss, c: &Clouds) -> LossSpec {
    let settings = VaeSettings {
        loss,
        ..Default::default()
    };
    let st = jetgen::models::vae::data::fit_standardizer(c).unwrap();
    LossSpec::new(&settings, c.representation, c.n_particles, st, (0.1, 0.05)).unwrap()
}

/// Reverse the particle order of every jet (features and mask).
fn permuted(c: &Clouds) -> Clouds {
    let p = c.n_particles;
    let mut out = c.clone();
    for i in 0..c.n_jets {
        for j in 0..p {
            let k = p - 1 - j;
            out.features[(i * p + j) * 3..(i * p + j + 1) * 3]
                .copy_from_slice(&c.features[(i * p + k) * 3..(i * p + k + 1) * 3]);
            out.mask[i * p + j] = c.mask[i * p + k];
        }
    }
    out
}

fn recon_values(s: &LossSpec, c: &Clouds, xhat: &Tensor) -> Vec<f64> {
    let batch = LossBatch::new(
        c.features.clone(),
        c.mask.clone(),
        c.n_particles,
        s,
        Device::Cpu,
    )
    .unwrap();
    let ctx = Ctx::new(false, 0);
    let x = ctx.tape.constant(xhat.clone());
    recon_per_jet(&ctx, s, &batch, &x)
        .unwrap()
        .value()
        .to_vec_f64()
        .unwrap()
}

#[test]
fn chamfer_losses_are_permutation_invariant_and_mse_is_not() {
    let (c, _) = sample_clouds(8, 30);
    let pc = permuted(&c);
    // a fixed "decoder output": the standardised input plus noise
    let s0 = spec(ReconLoss::Mse, &c);
    let mut x = c.features.clone();
    s0.standardizer.apply(&mut x);
    let noise = Rng::new(3)
        .normal(&[x.len()], 0.0, 0.3, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let out: Vec<f32> = x.iter().zip(&noise).map(|(a, b)| a + b).collect();
    let xhat = Tensor::from_slice(&out, &[8, 90], Device::Cpu).unwrap();
    for loss in [
        ReconLoss::Chamfer,
        ReconLoss::ChamferPhysics,
        ReconLoss::Sinkhorn,
    ] {
        let s = spec(loss, &c);
        let (a, b) = (recon_values(&s, &c, &xhat), recon_values(&s, &pc, &xhat));
        for (u, v) in a.iter().zip(&b) {
            assert!(
                (u - v).abs() <= 1e-4 * (1.0 + u.abs()),
                "{loss:?}: {u} vs {v}"
            );
        }
        assert!(a.iter().all(|v| *v > 0.0), "{loss:?}: {a:?}");
    }
    let s = spec(ReconLoss::Mse, &c);
    let (a, b) = (recon_values(&s, &c, &xhat), recon_values(&s, &pc, &xhat));
    for (u, v) in a.iter().zip(&b) {
        assert!(
            *v > 2.0 * u,
            "MSE must change under the permutation: {u} vs {v}"
        );
    }
}

#[test]
fn kl_matches_numerical_integration() {
    let (mu, logvar) = ([0.0f32, 1.3, -0.7, 2.0], [0.0f32, -1.0, 0.8, -3.0]);
    let ctx = Ctx::new(false, 0);
    let m = ctx
        .tape
        .constant(Tensor::from_slice(&mu, &[1, 4], Device::Cpu).unwrap());
    let l = ctx
        .tape
        .constant(Tensor::from_slice(&logvar, &[1, 4], Device::Cpu).unwrap());
    let kl = kl_per_dim(&m, &l).unwrap().value().to_vec_f64().unwrap();
    for k in 0..4 {
        // ∫ q log(q/p) dz by the midpoint rule over μ ± 12σ
        let (u, s) = (mu[k] as f64, (0.5 * logvar[k] as f64).exp());
        let n = 200_000;
        let (lo, hi) = (u - 12.0 * s, u + 12.0 * s);
        let h = (hi - lo) / n as f64;
        let mut sum = 0.0;
        for i in 0..n {
            let z = lo + (i as f64 + 0.5) * h;
            let log_q =
                -0.5 * ((z - u) / s).powi(2) - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
            let log_p = -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln();
            sum += log_q.exp() * (log_q - log_p) * h;
        }
        assert!(
            (kl[k] - sum).abs() < 1e-5 * (1.0 + sum),
            "dim {k}: {} vs {sum}",
            kl[k]
        );
    }
}

#[test]
fn reparameterisation_gradient_matches_the_analytic_one() {
    // f(z) = Σ c·z²: ∂f/∂μ = 2cz, ∂f/∂logσ² = 2cz·½σε; and E[∂f/∂μ] = 2cμ, E[∂f/∂logσ²] = cσ²
    let (b, l) = (20_000usize, 3usize);
    let mu0 = [0.5f32, -1.0, 0.2];
    let lv0 = [0.3f32, -0.6, 0.0];
    let c = [1.0f64, 2.0, 0.5];
    let ctx = Ctx::new(false, 0);
    let mu_t = Tensor::from_slice(&mu0.repeat(b), &[b, l], Device::Cpu).unwrap();
    let lv_t = Tensor::from_slice(&lv0.repeat(b), &[b, l], Device::Cpu).unwrap();
    let (mu, lv) = (ctx.tape.var(mu_t), ctx.tape.var(lv_t));
    let eps_t = Rng::new(7).normal(&[b, l], 0.0, 1.0, Device::Cpu).unwrap();
    let eps_v = eps_t.to_vec_f64().unwrap();
    let eps = ctx.tape.constant(eps_t);
    let z = reparameterize(&mu, &lv, &eps).unwrap();
    let cw: Vec<f32> = (0..b * l).map(|k| c[k % l] as f32).collect();
    let cv = ctx
        .tape
        .constant(Tensor::from_slice(&cw, &[b, l], Device::Cpu).unwrap());
    let f = z.square().unwrap().mul(&cv).unwrap().sum_all().unwrap();
    let g = ctx.tape.grad(&f, &[&mu, &lv], CreateGraph::No).unwrap();
    let (gm, gl) = (
        g[0].value().to_vec_f64().unwrap(),
        g[1].value().to_vec_f64().unwrap(),
    );
    let zv = z.value().to_vec_f64().unwrap();
    let (mut mean_gm, mut mean_gl) = ([0f64; 3], [0f64; 3]);
    for k in 0..b * l {
        let d = k % l;
        let s = (0.5 * lv0[d] as f64).exp();
        // per sample: exact chain rule
        assert!((gm[k] - 2.0 * c[d] * zv[k]).abs() < 1e-4 * (1.0 + gm[k].abs()));
        assert!((gl[k] - c[d] * zv[k] * s * eps_v[k]).abs() < 1e-4 * (1.0 + gl[k].abs()));
        mean_gm[d] += gm[k] / b as f64;
        mean_gl[d] += gl[k] / b as f64;
    }
    for d in 0..l {
        let s2 = (lv0[d] as f64).exp();
        // the estimator is unbiased: within 5 standard errors of the exact gradient
        let se_m = 2.0 * c[d] * s2.sqrt() / (b as f64).sqrt();
        assert!(
            (mean_gm[d] - 2.0 * c[d] * mu0[d] as f64).abs() < 5.0 * se_m,
            "μ {d}"
        );
        assert!(
            (mean_gl[d] - c[d] * s2).abs() < 0.05 * c[d] * s2 + 5.0 * se_m,
            "logσ² {d}: {} vs {}",
            mean_gl[d],
            c[d] * s2
        );
    }
}

#[test]
fn physics_terms_match_physics_rs() {
    let (rel, jets) = sample_clouds(16, 30);
    let (cart, _) = cartesian_sample(16, 30);
    for c in [&rel, &cart] {
        let ctx = Ctx::new(false, 0);
        let parts = ctx
            .tape
            .constant(Tensor::from_slice(&c.features, &[16, 30, 3], Device::Cpu).unwrap());
        let delta = jetgen::models::vae::loss::physics_delta(c.representation);
        let (pt, m) = jet_pt_mass(&parts, c.representation, delta).unwrap();
        let (pt, m) = (
            pt.value().to_vec_f64().unwrap(),
            m.value().to_vec_f64().unwrap(),
        );
        for (i, want) in c.jet_pt_mass().iter().enumerate() {
            assert!(
                (pt[i] - want.0).abs() < 1e-4 * want.0,
                "{:?} pT {i}: {} vs {}",
                c.representation,
                pt[i],
                want.0
            );
            assert!(
                (m[i] - want.1).abs() < 2e-3 * want.1 + 1e-3,
                "{:?} m {i}: {} vs {}",
                c.representation,
                m[i],
                want.1
            );
        }
    }
    // the relative masses are jetnet's m/pT (physics::relative_masses)
    let ctx = Ctx::new(false, 0);
    let parts = ctx
        .tape
        .constant(Tensor::from_slice(&rel.features, &[16, 30, 3], Device::Cpu).unwrap());
    let (_, m) = jet_pt_mass(&parts, Representation::Relative, 1e-12).unwrap();
    let want = jetgen::physics::relative_masses(&jets);
    for (a, b) in m.value().to_vec_f64().unwrap().iter().zip(&want) {
        assert!((a - b).abs() < 1e-4 * b + 1e-6, "{a} vs {b}");
    }
}

fn quick_settings(loss: ReconLoss, out: &std::path::Path) -> VaeSettings {
    let mut s = VaeSettings {
        loss,
        hidden: vec![64, 32],
        latent: 8,
        beta: if loss == ReconLoss::Sinkhorn {
            0.01
        } else {
            0.1
        },
        val_jets: 200,
        ..Default::default()
    };
    s.run.steps = 40;
    s.run.batch = 64;
    s.run.val_every = 10;
    s.run.patience = 10;
    s.run.generate = 100;
    s.run.quick_eval = true;
    s.run.plots = false;
    s.run.out = Some(out.to_path_buf());
    s.run.overwrite = true;
    s
}

/// The validation loss (fixed jets: no batch noise) at every validation of a run.
fn train_losses(out: &std::path::Path) -> Vec<f64> {
    let log = std::fs::read_to_string(out.join("train_log.csv")).unwrap();
    let mut lines = log.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|&h| h == "val_loss").unwrap();
    lines
        .filter_map(|l| l.split(',').nth(col).and_then(|v| v.parse().ok()))
        .collect()
}

#[test]
fn few_steps_lower_every_loss_and_checkpoints_reload() {
    let dir = std::env::temp_dir().join(format!("jetgen-vae-{}", std::process::id()));
    let (rel, rel_jets) = sample_clouds(600, 30);
    let (full, full_jets) = sample_clouds(2000, 30);
    let (cart, cart_jets) = cartesian_sample(600, 30);
    let cases = [
        (ReconLoss::Mse, true, &full, &full_jets),
        (ReconLoss::Chamfer, true, &cart, &cart_jets),
        (ReconLoss::ChamferPhysics, true, &cart, &cart_jets),
        (ReconLoss::ChamferPhysics, true, &rel, &rel_jets),
        (ReconLoss::Sinkhorn, true, &rel, &rel_jets),
        (ReconLoss::Chamfer, false, &full, &full_jets),
    ];
    for (k, (loss, variational, clouds, jets)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("run{k}"));
        let s = quick_settings(loss, &out);
        let report = train_vae(clouds, jets, &s, variational, &mut |_| {}).unwrap();
        let l = train_losses(&out);
        assert!(
            l.last().unwrap() < &l[0],
            "{loss:?} ({}): loss did not fall: {l:?}",
            clouds.representation.name()
        );
        assert!(report.metrics.w1m.value.is_finite());
        // the checkpoint reloads through the registry as its family and generates JetNet jets
        let g = load_generator(&out, Device::Cpu).unwrap();
        assert_eq!(g.family(), if variational { "vae" } else { "ae" });
        assert_eq!(g.variant(), loss.name());
        let jets = g.generate(5, 1).unwrap();
        assert_eq!((jets.n_jets, jets.n_particles), (5, 30));
        assert_eq!(jets, g.generate(5, 1).unwrap());
        let m = load_checkpoint(&out.join("checkpoint.safetensors"), Device::Cpu).unwrap();
        assert_eq!(m.spec.representation, clouds.representation);
        // the EMD trains only pT fractions: its jets take the training jets' mean Σ pT_rel,
        // which the run recorded (a particle the rescaling takes under the cut joins the padding)
        match (loss, m.pt_sum) {
            (ReconLoss::Sinkhorn, Some(target)) => {
                let want = (0..clouds.n_jets)
                    .map(|i| {
                        let jet = &clouds.features[i * 90..(i + 1) * 90];
                        let mask = &clouds.mask[i * 30..(i + 1) * 30];
                        let real = jet.chunks_exact(3).zip(mask).filter(|(_, &v)| v != 0.0);
                        real.map(|(r, _)| r[2] as f64).sum::<f64>()
                    })
                    .sum::<f64>()
                    / clouds.n_jets as f64;
                // (measured on the calibration subset of the training jets: a few % apart)
                assert!(
                    (target as f64 - want).abs() < 0.03 * want,
                    "{target} vs {want}"
                );
                let gen = g.generate(50, 3).unwrap();
                for i in 0..gen.n_jets {
                    let sum: f32 = (0..30)
                        .map(|j| gen.particle(i, j))
                        .filter(|p| p[3] != 0.0)
                        .map(|p| p[2])
                        .sum();
                    assert!(sum <= target * 1.001, "jet {i}: Σ pT_rel {sum} > {target}");
                    assert!(sum >= target * 0.9, "jet {i}: Σ pT_rel {sum} ≪ {target}");
                }
            }
            (ReconLoss::Sinkhorn, None) => panic!("an EMD model without its pT scale"),
            (_, s) => assert_eq!(s, None, "{loss:?}"),
        }
        if k == 0 {
            learned_prior(&out);
        }
        if k == 5 {
            anomaly(&out, &dir);
        }
    }
    // the Sinkhorn loss refuses Cartesian momenta, with a message saying why
    let s = quick_settings(ReconLoss::Sinkhorn, &dir.join("bad"));
    let e = train_vae(&cart, &cart_jets, &s, true, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("relative"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn relative_clouds_refuse_more_particles_than_the_file_has() {
    let (_, jets) = sample_clouds(4, 30);
    let e = relative_clouds(&jets, 31, std::path::Path::new("x.hdf5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--particles 31"), "{e}");
    let _ = Standardizer {
        mean: vec![],
        std: vec![],
    };
}

#[test]
fn vae_checkpoint_generates_through_the_c_api() {
    let dir = std::env::temp_dir().join(format!("jetgen-vae-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    jetgen::models::vae::write_bench_checkpoint(&ckpt, Device::Cpu).unwrap();
    let rust = load_generator(&dir, Device::Cpu)
        .unwrap()
        .generate(16, 9)
        .unwrap();
    let mut parts = vec![0f32; 16 * 30 * 4];
    let mut jets = vec![0f32; 16 * 4];
    let mut handle = std::ptr::null_mut();
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
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
        let fam = std::ffi::CStr::from_ptr(jetgen::ffi::jetgen_model_family(handle));
        assert_eq!(fam.to_str().unwrap(), "vae");
        assert_eq!(
            jetgen::ffi::jetgen_model_generate(
                handle,
                16,
                9,
                parts.as_mut_ptr(),
                parts.len(),
                jets.as_mut_ptr(),
                jets.len()
            ),
            jetgen::ffi::JetgenStatus::Ok
        );
        jetgen::ffi::jetgen_model_free(handle);
    }
    assert_eq!(parts, rust.particles);
    assert_eq!(jets, rust.jets);
    std::fs::remove_dir_all(&dir).ok();
}

/// `jetgen latent` on a trained run: a checkpoint with the flow prior that loads as the same
/// family, generates differently from the Gaussian prior, and a comparison file.
fn learned_prior(run: &std::path::Path) {
    use jetgen::models::vae::prior::{run as latent, LatentArgs};
    let args = LatentArgs {
        model: run.to_path_buf(),
        data: None,
        steps: 30,
        layers: 2,
        hidden: 16,
        batch: 128,
        lr: 1e-3,
        generate: 100,
        out: None,
        device: "cpu".into(),
    };
    latent(&args).unwrap();
    let with = run.join("checkpoint_flow_prior.safetensors");
    let g = load_generator(&with, Device::Cpu).unwrap();
    assert_eq!(
        (g.family(), g.variant().as_str()),
        ("vae", "mse+flow-prior")
    );
    let plain = load_generator(run, Device::Cpu).unwrap();
    assert_ne!(g.generate(4, 2).unwrap(), plain.generate(4, 2).unwrap());
    // the latent anomaly score takes the flow's density when the checkpoint has one
    let (clouds, _) = sample_clouds(20, 30);
    let by_flow = latent_scores(
        &load_checkpoint(&with, Device::Cpu).unwrap(),
        &clouds,
        Device::Cpu,
    );
    let by_gauss = latent_scores(
        &load_checkpoint(&run.join("checkpoint.safetensors"), Device::Cpu).unwrap(),
        &clouds,
        Device::Cpu,
    );
    let (by_flow, by_gauss) = (by_flow.unwrap(), by_gauss.unwrap());
    assert!(by_flow.iter().all(|v| v.is_finite()) && by_flow != by_gauss);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("latent_prior.json")).unwrap())
            .unwrap();
    assert!(
        j["flow_prior"].is_object() && j["gaussian_prior"].is_object(),
        "{j}"
    );
    assert!(j["val_code_nll_flow"].as_f64().unwrap().is_finite());
}

/// `jetgen anomaly` with an AE trained on gluons: tops as the signal; AUC, rejections and
/// plots written.
fn anomaly(run: &std::path::Path, dir: &std::path::Path) {
    use jetgen::models::vae::anomaly::{run as anomaly, AnomalyArgs};
    let json = dir.join("anomaly.json");
    let plots = dir.join("anomaly-plots");
    let mut args = AnomalyArgs {
        model: vec![run.to_path_buf()],
        background: SAMPLE.into(),
        signal: "data/sample/t.hdf5".into(),
        score: None,
        by: ScoreBy::Reconstruction,
        n: 300,
        plots: Some(plots.clone()),
        json: Some(json.clone()),
        scores: None,
        device: "cpu".into(),
    };
    anomaly(&args).unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let auc = j["auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "{j}");
    assert_eq!(j["n_signal"], 300);
    for f in ["roc.png", "score_vs_mass.png"] {
        assert!(plots.join(f).exists(), "{f}");
    }
    // an ensemble of the model with itself scores by its standardised log loss, a rising
    // function of the loss: the same AUC, with a CSV row for every jet scored
    let csv = dir.join("scores.csv");
    let ens_json = dir.join("ensemble.json");
    args.model = vec![run.to_path_buf(), run.to_path_buf()];
    args.json = Some(ens_json.clone());
    args.scores = Some(csv.clone());
    args.plots = Some(dir.join("ensemble-plots"));
    anomaly(&args).unwrap();
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ens_json).unwrap()).unwrap();
    assert!(
        (e["auc"].as_f64().unwrap() - auc).abs() < 1e-9,
        "{e} vs {auc}"
    );
    assert_eq!(e["model"].as_array().unwrap().len(), 2);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 300 + 300);
    assert!(rows.starts_with("sample,jet,score,mass\nbackground,"));
    // a member that held out other jets of the background file is refused (it would score
    // jets the first one trained on)
    let other = dir.join("other-split");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(
        run.join("checkpoint.safetensors"),
        other.join("checkpoint.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    cfg["settings"]["split_seed"] = 12345.into();
    std::fs::write(other.join("config.json"), cfg.to_string()).unwrap();
    args.model = vec![run.to_path_buf(), other];
    let err = anomaly(&args).unwrap_err().to_string();
    assert!(err.contains("different splits"), "{err}");
    // another score on the same model; a Cartesian file against a relative model is refused
    args.model = vec![run.to_path_buf()];
    args.scores = None;
    args.json = Some(json);
    args.score = Some(ReconLoss::Mse);
    args.plots = None;
    anomaly(&args).unwrap();
    // by the code's density: an AE without a flow prior scores ½‖(μ(x) − m)/s‖², m and s its
    // training codes' mean and spread
    let m = load_checkpoint(&run.join("checkpoint.safetensors"), Device::Cpu).unwrap();
    let (clouds, _) = sample_clouds(50, 30);
    let (mu, _) = encode(&m, &clouds, Device::Cpu).unwrap();
    let got = latent_scores(&m, &clouds, Device::Cpu).unwrap();
    let l = m.vae.config.latent;
    for (k, (code, &g)) in mu.chunks_exact(l).zip(&got).enumerate() {
        let want: f64 = code
            .iter()
            .enumerate()
            .map(|(i, &z)| (((z - m.latent_mean[i]) / m.latent_std[i]) as f64).powi(2) / 2.0)
            .sum();
        assert!(
            (g - want).abs() < 1e-4 * want.max(1.0),
            "jet {k}: {g} vs {want}"
        );
    }
    // both scores, standardised and averaged: a report that names them
    args.by = ScoreBy::Both;
    args.score = None;
    anomaly(&args).unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(args.json.as_ref().unwrap()).unwrap())
            .unwrap();
    assert!(j["score"].as_str().unwrap().contains("latent"), "{j}");
    assert!((0.0..=1.0).contains(&j["auc"].as_f64().unwrap()), "{j}");
}

/// The EMD reconstruction's gradient (envelope theorem through the Sinkhorn op, the
/// de-standardisation, the φ wrap and the weight normalisation) against central finite
/// differences of the loss in the decoder output.
#[test]
fn emd_gradient_matches_finite_differences() {
    let (c, _) = sample_clouds(2, 6);
    let mut settings = VaeSettings {
        loss: ReconLoss::Sinkhorn,
        epsilon: 0.01,
        sinkhorn_iters: 200,
        ..Default::default()
    };
    settings.eps_scaling = 0.8;
    let st = jetgen::models::vae::data::fit_standardizer(&c).unwrap();
    let s = LossSpec::new(&settings, c.representation, 6, st, (0.1, 0.05)).unwrap();
    let batch = LossBatch::new(c.features.clone(), c.mask.clone(), 6, &s, Device::Cpu).unwrap();
    let base: Vec<f32> = Rng::new(11)
        .normal(&[36], 0.0, 0.7, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let loss_at = |v: &[f32]| -> f64 {
        let ctx = Ctx::new(false, 0);
        let x = ctx
            .tape
            .constant(Tensor::from_slice(v, &[2, 18], Device::Cpu).unwrap());
        recon_per_jet(&ctx, &s, &batch, &x)
            .unwrap()
            .sum_all()
            .unwrap()
            .value()
            .item()
            .unwrap()
    };
    let ctx = Ctx::new(false, 0);
    let x = ctx
        .tape
        .var(Tensor::from_slice(&base, &[2, 18], Device::Cpu).unwrap());
    let l = recon_per_jet(&ctx, &s, &batch, &x)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = ctx.tape.grad(&l, &[&x], CreateGraph::No).unwrap()[0]
        .value()
        .to_vec_f64()
        .unwrap();
    let h = 1e-2f32;
    let mut fd = vec![0f64; 36];
    for k in 0..36 {
        let (mut up, mut dn) = (base.clone(), base.clone());
        up[k] += h;
        dn[k] -= h;
        fd[k] = (loss_at(&up) - loss_at(&dn)) / (2.0 * h as f64);
    }
    let dot: f64 = g.iter().zip(&fd).map(|(a, b)| a * b).sum();
    let (ng, nf) = (
        g.iter().map(|v| v * v).sum::<f64>().sqrt(),
        fd.iter().map(|v| v * v).sum::<f64>().sqrt(),
    );
    assert!(nf > 1e-4, "the loss must depend on the output: {fd:?}");
    let cos = dot / (ng * nf);
    assert!(
        cos > 0.95 && (ng / nf - 1.0).abs() < 0.2,
        "cos {cos}, |g| {ng}, |fd| {nf}\n{g:?}\n{fd:?}"
    );
}

/// `jetgen dimensionality` over two constant-β runs: sorted by β, one interval whose D is
/// the negative log slope of the runs' averaged KL, and both plots written.
#[test]
fn dimensionality_across_constant_beta_runs() {
    use jetgen::models::vae::dimensionality::{run, DimensionalityArgs};
    let dir = std::env::temp_dir().join(format!("jetgen-vae-dbeta-{}", std::process::id()));
    let (clouds, jets) = sample_clouds(600, 30);
    let mut runs = Vec::new();
    for beta in [1.0, 0.1] {
        let out = dir.join(format!("beta{beta}"));
        let mut s = quick_settings(ReconLoss::Mse, &out);
        s.beta = beta;
        train_vae(&clouds, &jets, &s, true, &mut |_| {}).unwrap();
        runs.push(out);
    }
    let json_path = dir.join("d.json");
    let args = DimensionalityArgs {
        runs: runs.clone(),
        tail: 0.5,
        plots: Some(dir.join("plots")),
        json: Some(json_path.clone()),
    };
    run(&args).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let r = v["runs"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    let (b0, b1) = (
        r[0]["beta"].as_f64().unwrap(),
        r[1]["beta"].as_f64().unwrap(),
    );
    assert_eq!((b0, b1), (0.1, 1.0), "sorted by β");
    // validations at steps 20, 30, 40 of 40 lie in the last half
    assert!(r.iter().all(|p| p["validations"].as_u64().unwrap() >= 2));
    // a smaller β buys more KL, so D > 0; MSE counts ½ per resolved direction
    let (k0, k1) = (r[0]["kl"].as_f64().unwrap(), r[1]["kl"].as_f64().unwrap());
    assert!(
        k0 > k1,
        "KL at β = 0.1 ({k0}) should exceed KL at β = 1 ({k1})"
    );
    let iv = &v["intervals"][0];
    let d = iv["D"].as_f64().unwrap();
    assert!(d > 0.0, "{d}");
    assert!((d - (-(k1 - k0) / 10f64.ln())).abs() < 1e-9 * d, "{d}");
    assert_eq!(iv["directions"].as_f64().unwrap(), d / 0.5);
    assert_eq!(v["direction_weight"].as_f64().unwrap(), 0.5);
    for png in ["d_vs_beta.png", "kl_per_dim_vs_beta.png"] {
        let bytes = std::fs::read(dir.join("plots").join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
    }
    // the same run twice is one β, not a curve
    let twice = DimensionalityArgs {
        runs: vec![runs[0].clone(), runs[0].clone()],
        ..args
    };
    assert!(run(&twice)
        .unwrap_err()
        .to_string()
        .contains("both trained"));
    std::fs::remove_dir_all(&dir).ok();
}
