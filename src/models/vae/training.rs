//! Training a VAE or AE through the run layer: the jets as clouds (Cartesian momenta or
//! relative features), a seeded 70/30 split, per-feature standardisation, Adam(W) steps on
//! recon + β·KL (recon/(2β²) + KL for the EMD loss; recon alone for the AE) with β on its
//! schedule, early stopping on the validation loss, then generation and the JetNet
//! evaluation with the truth floor ([`crate::runs::finish`]) and the VAE's own analysis
//! (reconstruction, jet images, latent space, KL per dimension; [`super::analysis`]).

use std::path::Path;

use clap::ArgMatches;

use crate::autograd::Var;
use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::vae::analysis::{write_analysis, BetaPoint};
use crate::models::vae::checkpoint::{save_with, TrainedVae, FAMILY_AE, FAMILY_VAE};
use crate::models::vae::data::{
    fit_standardizer, padding_threshold, read_clouds, Clouds, Representation,
};
use crate::models::vae::loss::{recon_per_jet, LossBatch, LossSpec};
use crate::models::vae::network::{kl_per_dim, reparameterize, JetVae, VaeConfig};
use crate::models::vae::sampling::{encode, VaeGenerator, CHUNK};
use crate::models::vae::settings::{ReconLoss, VaeSettings};
use crate::nn::{Adam, AdamConfig, Ctx, Module, Param};
use crate::rng::Rng;
use crate::runs::batch::draw_with_replacement;
use crate::runs::early_stop::Goal;
use crate::runs::finish::{finish_run, FinishSettings, RunReport};
use crate::runs::progress::{Score, StepInfo, TrainProgress};
use crate::runs::settings::from_command_line;
use crate::runs::train_loop::{clip_and_step, train_loop, LoopSettings, StepOutcome, TrainTask};
use crate::runs::RunDir;

/// Training jets whose codes give the stored latent mean and spread.
const LATENT_STAT_JETS: usize = 5000;

/// The total loss of a batch from its mean reconstruction loss and mean KL at β.
pub fn total_loss(
    loss: ReconLoss,
    variational: bool,
    recon: &Var,
    kl: Option<&Var>,
    beta: f64,
) -> Result<Var> {
    match (variational, kl) {
        (true, Some(kl)) if loss == ReconLoss::Sinkhorn => {
            recon.mul_scalar(1.0 / (2.0 * beta * beta))?.add(kl)
        }
        (true, Some(kl)) => recon.add(&kl.mul_scalar(beta)?),
        _ => Ok(recon.clone()),
    }
}

/// One VAE/AE training run in progress.
struct VaeTask<'a> {
    settings: &'a VaeSettings,
    model: TrainedVae,
    opt: Adam,
    params: Vec<Param>,
    device: Device,
    train: Clouds,
    val: Vec<LossBatch>,
    steps: usize,
    step: usize,
    rng: Rng,
    /// (step, β, mean KL per latent dimension) at every validation.
    history: Vec<BetaPoint>,
}

impl VaeTask<'_> {
    fn batch_of(&self, picks: &[usize]) -> Result<LossBatch> {
        let c = self.train.select(picks);
        LossBatch::new(
            c.features,
            c.mask,
            c.n_particles,
            &self.model.spec,
            self.device,
        )
    }
}

/// Mean reconstruction loss, total loss at β and KL per dimension over `batches` (z = μ).
fn evaluate_batches(
    m: &TrainedVae,
    batches: &[LossBatch],
    beta: f64,
) -> Result<(f64, f64, Vec<f64>)> {
    let l = m.vae.config.latent;
    let (mut recon, mut n) = (0f64, 0usize);
    let mut kl = vec![0f64; l];
    for batch in batches {
        let ctx = Ctx::new(false, 0);
        let x = ctx.tape.constant(batch.x.clone());
        let enc = m.vae.encode(&ctx, &x)?;
        let xhat = m.vae.decode(&ctx, &enc.mu)?;
        let r = recon_per_jet(&ctx, &m.spec, batch, &xhat)?;
        recon += r.value().to_vec_f64()?.iter().sum::<f64>();
        if let Some(lv) = &enc.logvar {
            let k = kl_per_dim(&enc.mu, lv)?.value().to_vec_f64()?;
            for (i, v) in k.iter().enumerate() {
                kl[i % l] += v;
            }
        }
        n += batch.len();
    }
    let n = n.max(1) as f64;
    recon /= n;
    kl.iter_mut().for_each(|v| *v /= n);
    let kl_total: f64 = kl.iter().sum();
    let total = if !m.vae.config.variational {
        recon
    } else if m.spec.loss == ReconLoss::Sinkhorn {
        recon / (2.0 * beta * beta) + kl_total
    } else {
        recon + beta * kl_total
    };
    Ok((recon, total, kl))
}

impl TrainTask for VaeTask<'_> {
    fn batch_size(&self) -> usize {
        self.settings.run.batch
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepOutcome> {
        self.step = step;
        let b = self.settings.run.batch;
        let picks = draw_with_replacement(&mut self.rng, self.train.n_jets, b);
        let batch = self.batch_of(&picks)?;
        let beta = self.settings.beta_at(step, self.steps);
        self.opt.zero_grad();
        let ctx = Ctx::new(true, self.settings.run.seed.wrapping_add(step as u64));
        let x = ctx.tape.constant(batch.x.clone());
        let enc = self.model.vae.encode(&ctx, &x)?;
        let (z, kl) = match &enc.logvar {
            Some(lv) => {
                let l = self.model.vae.config.latent;
                let eps = ctx
                    .tape
                    .constant(self.rng.normal(&[b, l], 0.0, 1.0, self.device)?);
                let kl = kl_per_dim(&enc.mu, lv)?.sum(&[1], false)?.mean_all()?;
                (reparameterize(&enc.mu, lv, &eps)?, Some(kl))
            }
            None => (enc.mu.clone(), None),
        };
        let xhat = self.model.vae.decode(&ctx, &z)?;
        let recon = recon_per_jet(&ctx, &self.model.spec, &batch, &xhat)?.mean_all()?;
        let loss = total_loss(
            self.model.spec.loss,
            self.model.vae.config.variational,
            &recon,
            kl.as_ref(),
            beta,
        )?;
        let value = loss.value().item()?;
        loss.backward()?;
        clip_and_step(
            &mut self.opt,
            &self.params,
            value,
            self.settings.run.clip,
            lr,
        )
    }

    fn score_keys(&self) -> Vec<&'static str> {
        vec!["val_loss", "val_recon", "val_kl", "beta"]
    }

    fn validate(&mut self) -> Result<Vec<Score>> {
        let beta = self.settings.beta_at(self.step.max(1), self.steps);
        let (recon, total, kl) = evaluate_batches(&self.model, &self.val, beta)?;
        let kl_total = kl.iter().sum();
        self.history.push(BetaPoint {
            step: self.step,
            beta,
            recon,
            kl_per_dim: kl,
        });
        Ok(vec![
            Score {
                key: "val_loss",
                label: "validation loss",
                value: total,
            },
            Score {
                key: "val_recon",
                label: "reconstruction",
                value: recon,
            },
            Score {
                key: "val_kl",
                label: "KL",
                value: kl_total,
            },
            Score {
                key: "beta",
                label: "β",
                value: beta,
            },
        ])
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let n = self.train.n_jets.min(LATENT_STAT_JETS);
        let sub = self.train.select(&(0..n).collect::<Vec<_>>());
        let (mu, _) = encode(&self.model, &sub, self.device)?;
        let l = self.model.vae.config.latent;
        let (mean, std) = column_stats(&mu, l);
        let beta = self.settings.beta_at(self.step.max(1), self.steps);
        save_with(path, &self.model, &mean, &std, beta)
    }
}

/// Set the checkpoint's padding threshold so that the reconstructions of `clouds` keep as
/// many particles as the jets have: τ = the decoded-pT quantile at 1 − (fraction of real
/// particles). Decoded padding is small but not exactly zero, and its size depends on the
/// model and the units (GeV for Cartesian momenta), so no fixed cut fits every run.
pub fn calibrate_threshold(path: &Path, clouds: &Clouds, device: Device) -> Result<f32> {
    let mut m = crate::models::vae::checkpoint::load_checkpoint(path, device)?;
    let rows = crate::models::vae::sampling::reconstruct(&m, clouds, device)?;
    let mut pts: Vec<f32> = rows
        .chunks_exact(3)
        .map(|r| clouds.representation.pt(r))
        .filter(|v| v.is_finite())
        .collect();
    // with no finite decoded pT there is nothing to calibrate on: the threshold stays as it is
    if !pts.is_empty() {
        pts.sort_by(f32::total_cmp);
        let real = clouds.mask.iter().filter(|&&v| v != 0.0).count() as f64
            / clouds.mask.len().max(1) as f64;
        let k = (((1.0 - real) * pts.len() as f64) as usize).min(pts.len() - 1);
        let tau = if k == 0 {
            pts[0].min(0.0)
        } else {
            0.5 * (pts[k - 1] + pts[k])
        };
        m.threshold = tau.max(0.0);
    }
    if m.spec.loss == ReconLoss::Sinkhorn && clouds.representation == Representation::Relative {
        // the EMD trains only the pT fractions: generation takes its pT scale from the data
        // (none when the data carry no positive finite pT: decoded jets then stay unscaled)
        let p3 = clouds.n_particles * 3;
        let sums = clouds
            .features
            .chunks_exact(p3)
            .zip(clouds.mask.chunks_exact(p3 / 3));
        let total: f64 = sums
            .map(|(jet, mask)| {
                let real = jet.chunks_exact(3).zip(mask).filter(|(_, &v)| v != 0.0);
                real.map(|(r, _)| r[2] as f64).sum::<f64>()
            })
            .sum();
        let mean = (total / clouds.n_jets.max(1) as f64) as f32;
        m.pt_sum = (mean.is_finite() && mean > 0.0).then_some(mean);
    }
    crate::models::vae::checkpoint::save_checkpoint(path, &m)?;
    Ok(m.threshold)
}

/// Mean and standard deviation (std ≥ 10⁻⁶) of every column of `rows` (`width` wide).
pub fn column_stats(rows: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (rows.len() / width.max(1)).max(1) as f64;
    let mut mean = vec![0f64; width];
    for r in rows.chunks_exact(width) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / n;
        }
    }
    let mut var = vec![0f64; width];
    for r in rows.chunks_exact(width) {
        for ((s, &v), m) in var.iter_mut().zip(r).zip(&mean) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|&v| v.sqrt().max(1e-6) as f32).collect(),
    )
}

/// Standard deviations of the jets' pT and mass.
fn jet_scales(clouds: &Clouds) -> (f64, f64) {
    let pm = clouds.jet_pt_mass();
    let sd = |k: usize| {
        let v: Vec<f64> = pm.iter().map(|p| if k == 0 { p.0 } else { p.1 }).collect();
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
    };
    (sd(0), sd(1))
}

/// One line saying what will be trained on what.
pub fn describe(s: &VaeSettings, variational: bool, clouds: &Clouds) -> String {
    format!(
        "training a{} {} (loss {}, β {}, latent {}, hidden {:?}) on {} ({} jets × {} particles, {}) on {}, {} steps of {} jets",
        if variational { " VAE" } else { "n AE" },
        if variational { FAMILY_VAE } else { FAMILY_AE },
        s.loss.name(),
        s.beta,
        s.latent,
        s.hidden,
        s.run.data_path().display(),
        clouds.n_jets,
        clouds.n_particles,
        clouds.representation.name(),
        s.run.device,
        s.run.steps_for(clouds.n_jets * 7 / 10),
        s.run.batch
    )
}

/// `jetgen train vae|ae`: settings from the command line and `--config`, the jets, a
/// progress bar, the run, its summary.
pub fn train_from_matches(matches: &ArgMatches, variational: bool) -> Result<RunReport> {
    let settings: VaeSettings = from_command_line(matches)?;
    settings.validate()?;
    settings.run.device()?.ensure_available()?;
    let (clouds, jets) = read_clouds(&settings.run.data_path(), settings.particles)?;
    println!("{}", describe(&settings, variational, &clouds));
    let bar = TrainProgress::new(settings.run.steps_for(clouds.n_jets * 7 / 10));
    let report = crate::on_thread_pool(|| {
        train_vae(&clouds, &jets, &settings, variational, &mut |s| {
            bar.observe(s)
        })
    });
    bar.finish();
    report
}

/// Train a VAE (`variational`) or AE on `clouds` (with `jets`, the same jets in JetNet
/// layout, for the evaluation) into the run directory (default `runs/vae` or `runs/ae`).
pub fn train_vae(
    clouds: &Clouds,
    jets: &JetNetData,
    settings: &VaeSettings,
    variational: bool,
    progress: &mut dyn FnMut(&StepInfo),
) -> Result<RunReport> {
    settings.validate()?;
    let device = settings.run.device()?;
    device.ensure_available()?;
    if clouds.n_jets < 10 || clouds.n_jets != jets.n_jets {
        return Err(Error::invalid(format!(
            "training needs ≥ 10 jets, got {}",
            clouds.n_jets
        )));
    }
    let family = if variational { FAMILY_VAE } else { FAMILY_AE };
    let seed = settings.run.seed;
    let mut rng = Rng::new(seed);
    let split = settings.run.split(clouds.n_jets, &mut rng)?;
    let n_train = split.train.len();
    if settings.run.batch > n_train {
        return Err(Error::invalid(format!(
            "--batch {} is larger than the training split ({n_train} jets)",
            settings.run.batch
        )));
    }
    let steps = settings.run.steps_for(n_train);
    let train = clouds.select(&split.train);
    let n_val = split.validation.len().min(settings.val_jets);
    let val = clouds.select(&split.validation[..n_val]);
    let standardizer = fit_standardizer(&train)?;
    let p = clouds.n_particles;
    let spec = LossSpec::new(
        settings,
        clouds.representation,
        p,
        standardizer,
        jet_scales(&train),
    )?;
    let config = VaeConfig {
        particles: p,
        latent: settings.latent,
        hidden: settings.hidden.clone(),
        variational,
    };
    let run = RunDir::new(settings.run.new_out_dir(family));
    let _lock = run.prepare(settings.run.overwrite)?;
    crate::io::write_json(
        &run.config(),
        &serde_json::json!({
            "family": family,
            "variant": settings.loss.name(),
            "jetgen_version": crate::VERSION,
            "settings": crate::runs::settings::to_json(settings)?,
            "steps": steps,
            "data": {
                "path": settings.run.data_path().display().to_string(),
                "checksum": jets.checksum(),
                "representation": clouds.representation.name(),
                "jets": clouds.n_jets, "particles": p,
                "train": n_train, "validation": split.validation.len(), "split": "70/30 seeded",
                "validation_for_early_stopping": n_val,
            },
            "network": serde_json::to_value(&config).unwrap_or_default(),
        }),
    )?;
    let mut val_batches = Vec::new();
    for start in (0..val.n_jets).step_by(CHUNK) {
        let idx: Vec<usize> = (start..(start + CHUNK).min(val.n_jets)).collect();
        let c = val.select(&idx);
        val_batches.push(LossBatch::new(c.features, c.mask, p, &spec, device)?);
    }
    let l = settings.latent;
    let model = TrainedVae {
        vae: JetVae::new(config, &mut rng.fork(), device)?,
        spec,
        beta: settings.beta,
        threshold: padding_threshold(&train),
        pt_sum: None,
        latent_mean: vec![0.0; l],
        latent_std: vec![1.0; l],
        prior: None,
    };
    let params = model.vae.params();
    let opt = Adam::new(
        params.clone(),
        AdamConfig {
            lr: settings.run.lr,
            weight_decay: settings.run.weight_decay,
            decoupled: true,
            ..Default::default()
        },
    );
    let mut task = VaeTask {
        settings,
        model,
        opt,
        params,
        device,
        train,
        val: val_batches,
        steps,
        step: 0,
        rng,
        history: Vec::new(),
    };
    let loop_settings = LoopSettings {
        steps,
        lr: settings.run.lr,
        lr_schedule: settings.run.lr_schedule,
        val_every: settings.run.val_every,
        time_limit_s: settings.run.time_limit.map(|m| m * 60.0),
        patience: settings.run.patience,
        monitor: "val_loss",
        goal: Goal::Minimize,
        loss_key: "train_loss",
    };
    let outcome = train_loop(&mut task, &loop_settings, &run, progress)?;
    let history = std::mem::take(&mut task.history);
    let sub: Vec<usize> = (0..task.train.n_jets.min(LATENT_STAT_JETS)).collect();
    calibrate_threshold(&run.checkpoint(), &task.train.select(&sub), device)?;
    drop(task);
    let best = VaeGenerator::load(&run.checkpoint(), device)?;
    let report = finish_run(
        &run,
        &best,
        jets,
        &split,
        &loop_settings,
        &outcome,
        &FinishSettings {
            generate: settings.run.generate,
            full_eval: !settings.run.quick_eval,
            plots: settings.run.plots,
            seed,
        },
    )?;
    let n_gen = settings.run.generate.min(split.validation.len()).max(1);
    let val_all = clouds.select(&split.validation[..n_gen]);
    let real = jets.select(&split.validation[..n_gen])?;
    write_analysis(
        &run,
        &best.model,
        &val_all,
        &real,
        &history,
        settings.run.plots,
        seed,
        device,
    )?;
    Ok(report)
}
