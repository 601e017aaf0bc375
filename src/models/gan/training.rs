//! Training a GAN through the run layer: the seeded 70/30 split; fc-fc on the particle
//! features flattened and standardised (the flows' preprocessing), the MPGAN family on
//! MPGAN's normalised particles with masks ([`super::nets`]); per generator step
//! `--critic-steps` critic steps then one generator step (Adam β = (0.5, 0.9) or RMSprop), validation
//! by the FPD of generated against validation jets (the best checkpoint is the lowest), an
//! optional EMA of the generator weights, checkpoints every N steps, then generation and
//! evaluation by [`crate::runs::finish`].

use std::path::Path;

use crate::autograd::Var;
use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::metrics::fpd_kpd::{fpd_kpd_features, frechet_distance, mean_cov, normalise, Features};
use crate::models::flow_data::{to_flow_vectors, Standardizer};
use crate::models::gan::checkpoint::{GanGenerator, TrainedGan, FAMILY};
use crate::models::gan::losses::{cramer_critic, gradient_penalty, ls_discriminator, ls_generator};
use crate::models::gan::mp::MpCritic;
use crate::models::gan::nets::{FlatNets, GanNets, ParticleCritic, ParticleNets};
use crate::models::gan::network::{FcCritic, FcGenerator};
use crate::models::gan::particle_model::{FcSizes, TrainedParticleGan};
use crate::models::gan::particles::{multiplicities, to_particles, Multiplicity};
use crate::models::gan::pointnet::PointNetMix;
use crate::models::gan::settings::{
    DiscriminatorArch, GanLoss, GanOptimizer, GanSettings, GeneratorArch,
};
use crate::nn::{Adam, AdamConfig, Ctx, Optimizer, Param, RmsProp, RmsPropConfig};
use crate::rng::Rng;
use crate::runs::early_stop::Goal;
use crate::runs::finish::{finish_run, FinishSettings, RunReport};
use crate::runs::progress::{Score, StepInfo};
use crate::runs::train_loop::{clip_and_step, train_loop, LoopSettings, StepOutcome, TrainTask};
use crate::runs::RunDir;
use crate::tensor::Tensor;

/// One GAN training run in progress.
pub struct GanTask<'a> {
    settings: &'a GanSettings,
    nets: Box<dyn GanNets>,
    opt_g: Box<dyn Optimizer>,
    opt_d: Box<dyn Optimizer>,
    g_params: Vec<Param>,
    d_params: Vec<Param>,
    device: Device,
    /// EMA of the generator weights (host copies), when `--ema` > 0.
    ema: Option<Vec<Vec<f32>>>,
    /// EMA updates done (for the warm-up of [`crate::nn::optim::ema_decay`]).
    ema_updates: u64,
    /// EFP features of the validation jets (unnormalised).
    val_features: Features,
    val_jets: usize,
    run_dir: RunDir,
    rng: Rng,
}

impl GanTask<'_> {
    fn real_batch(&mut self, ctx: &Ctx) -> Result<Var> {
        self.nets
            .real_batch(ctx, &mut self.rng, self.settings.run.batch)
    }

    /// A generated batch as a constant of `ctx` (no gradient into the generator).
    fn fake_constant(&mut self, ctx: &Ctx) -> Result<Var> {
        let gctx = Ctx::new(true, self.rng.next_u64());
        let x = self
            .nets
            .fake_batch(&gctx, &mut self.rng, self.settings.run.batch)?;
        Ok(ctx.tape.constant(x.value().clone()))
    }

    fn critic_step(&mut self, lr: f64) -> Result<StepOutcome> {
        let s = self.settings;
        self.opt_d.zero_grad();
        let ctx = Ctx::new(true, self.rng.next_u64());
        let x_r = self.real_batch(&ctx)?;
        let x_g = self.fake_constant(&ctx)?;
        let loss = match s.loss() {
            GanLoss::Ls => ls_discriminator(
                &self.nets.critic(&ctx, &x_r)?,
                &self.nets.critic(&ctx, &x_g)?,
            )?,
            GanLoss::WganGp => {
                let w = self
                    .nets
                    .critic(&ctx, &x_g)?
                    .mean_all()?
                    .sub(&self.nets.critic(&ctx, &x_r)?.mean_all()?)?;
                let x_hat = self.interpolate(&ctx, &x_r, &x_g)?;
                let nets = &self.nets;
                let gp = gradient_penalty(&ctx.tape, |x| nets.critic(&ctx, x), &x_hat)?;
                w.add(&gp.mul_scalar(s.gp_lambda)?)?
            }
            GanLoss::Cramer => {
                let x_g2 = self.fake_constant(&ctx)?;
                let x_hat = self.interpolate(&ctx, &x_r, &x_g)?;
                let nets = &self.nets;
                let h2 = nets.critic(&ctx, &x_g2)?;
                let f = |x: &Var| -> Result<Var> { cramer_critic(&nets.critic(&ctx, x)?, &h2) };
                let l_g = f(&x_r)?.mean_all()?.sub(&f(&x_g)?.mean_all()?)?;
                let gp = gradient_penalty(&ctx.tape, f, &x_hat)?;
                l_g.neg()?.add(&gp.mul_scalar(s.gp_lambda)?)?
            }
        };
        let value = loss.value().item()?;
        loss.backward()?;
        clip_and_step(&mut *self.opt_d, &self.d_params, value, s.run.clip, lr)
    }

    /// x̂ = εx_r + (1 − ε)x_g with ε ~ U(0, 1) per jet (every feature of a jet, the mask
    /// feature included), as a leaf of `ctx`'s tape.
    fn interpolate(&mut self, ctx: &Ctx, x_r: &Var, x_g: &Var) -> Result<Var> {
        let b = self.settings.run.batch;
        let d = x_r.value().numel() / b;
        let eps = self.rng.uniform(&[b, 1], 0.0, 1.0, self.device)?.to_vec()?;
        let (r, g) = (x_r.value().to_vec()?, x_g.value().to_vec()?);
        let mixed: Vec<f32> = (0..b * d)
            .map(|k| {
                let e = eps[k / d];
                e * r[k] + (1.0 - e) * g[k]
            })
            .collect();
        Ok(ctx
            .tape
            .var(Tensor::from_slice(&mixed, x_r.shape(), self.device)?))
    }

    fn generator_step(&mut self, lr: f64) -> Result<StepOutcome> {
        let s = self.settings;
        self.opt_g.zero_grad();
        let ctx = Ctx::new(true, self.rng.next_u64());
        let x_g = self.nets.fake_batch(&ctx, &mut self.rng, s.run.batch)?;
        let loss = match s.loss() {
            GanLoss::Ls => ls_generator(&self.nets.critic(&ctx, &x_g)?)?,
            GanLoss::WganGp => self.nets.critic(&ctx, &x_g)?.mean_all()?.neg()?,
            GanLoss::Cramer => {
                let x_r = self.real_batch(&ctx)?;
                let x_g2 = self.nets.fake_batch(&ctx, &mut self.rng, s.run.batch)?;
                let nets = &self.nets;
                let h2 = nets.critic(&ctx, &x_g2)?;
                let f = |x: &Var| -> Result<Var> { cramer_critic(&nets.critic(&ctx, x)?, &h2) };
                f(&x_r)?.mean_all()?.sub(&f(&x_g)?.mean_all()?)?
            }
        };
        let value = loss.value().item()?;
        loss.backward()?;
        self.opt_d.zero_grad(); // the critic's gradients of the generator loss are not used
        let out = clip_and_step(&mut *self.opt_g, &self.g_params, value, s.run.clip, lr)?;
        if let (Some(ema), StepOutcome::Applied(_)) = (&mut self.ema, out) {
            crate::nn::optim::ema_update(ema, &self.g_params, s.ema, self.ema_updates)?;
            self.ema_updates += 1;
        }
        Ok(out)
    }

    /// Run `f` with the EMA weights in the generator (when kept), then restore them.
    fn with_ema<R>(&self, f: impl FnOnce(&dyn GanNets) -> Result<R>) -> Result<R> {
        let Some(ema) = &self.ema else {
            return f(&*self.nets);
        };
        let saved: Vec<Tensor> = self.g_params.iter().map(|p| p.value()).collect();
        for (p, avg) in self.g_params.iter().zip(ema) {
            p.set_value(Tensor::from_slice(avg, p.value().shape(), self.device)?);
        }
        let out = f(&*self.nets);
        for (p, v) in self.g_params.iter().zip(saved) {
            p.set_value(v);
        }
        out
    }
}

impl TrainTask for GanTask<'_> {
    fn batch_size(&self) -> usize {
        self.settings.run.batch
    }

    /// `--critic-steps` critic steps then one generator step; the loss reported is the last
    /// critic loss. The schedule's `lr` is the generator's; the critic's is scaled alike.
    fn step(&mut self, step: usize, lr: f64) -> Result<StepOutcome> {
        let s = self.settings;
        let (lr_g, lr_d) = s.learning_rates();
        let lr_d = lr_d * lr / lr_g;
        let mut d_loss = f64::NAN;
        for _ in 0..s.critic_steps() {
            match self.critic_step(lr_d)? {
                StepOutcome::Applied(v) => d_loss = v,
                StepOutcome::Skipped => return Ok(StepOutcome::Skipped),
            }
        }
        if self.generator_step(lr)? == StepOutcome::Skipped {
            return Ok(StepOutcome::Skipped);
        }
        if s.save_every > 0 && step.is_multiple_of(s.save_every) {
            let path = self
                .run_dir
                .root()
                .join(format!("checkpoint-step{step}.safetensors"));
            self.with_ema(|m| m.save(&path))?;
        }
        Ok(StepOutcome::Applied(d_loss))
    }

    fn score_keys(&self) -> Vec<&'static str> {
        vec!["val_fpd"]
    }

    /// FPD (×1, jetnet's normalisation by the real maxima; one estimate on all jets) of
    /// `--val-jets` generated jets (fixed seed) against the validation jets.
    fn validate(&mut self) -> Result<Vec<Score>> {
        let (n, seed) = (self.val_jets, self.settings.run.seed ^ 0xFA1);
        let jets = self.with_ema(|m| m.generate(n, seed))?;
        if jets.non_empty_jets().is_empty() {
            // a collapsed generator (every jet empty) has no score (NaN: never the best);
            // the run goes on, it may recover
            return Ok(vec![Score {
                key: "val_fpd",
                label: "validation FPD",
                value: f64::NAN,
            }]);
        }
        let (real, gen) = normalise(&self.val_features, &fpd_kpd_features(&jets)?)?;
        let (mr, sr) = mean_cov(&real.data, real.rows, real.dim);
        let (mg, sg) = mean_cov(&gen.data, gen.rows, gen.dim);
        let fpd = frechet_distance(&mr, &sr, &mg, &sg);
        Ok(vec![Score {
            key: "val_fpd",
            label: "validation FPD",
            value: if fpd.is_finite() { fpd } else { f64::NAN },
        }])
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.with_ema(|m| m.save(path))
    }
}

/// Train a GAN on `data` with `settings` into the run directory (`--out`, default
/// `runs/gan`, or the next free `runs/gan-N`): `config.json`, `train_log.csv`, the best
/// `checkpoint.safetensors` by validation FPD, then `generated.hdf5`, `metrics.json` and
/// `plots/` from it.
pub fn train_gan(
    data: &JetNetData,
    settings: &GanSettings,
    progress: &mut dyn FnMut(&StepInfo),
) -> Result<RunReport> {
    settings.validate()?;
    let device = settings.run.device()?;
    device.ensure_available()?;
    if data.n_jets < 10 {
        return Err(Error::invalid(format!(
            "training needs ≥ 10 jets, got {}",
            data.n_jets
        )));
    }
    let seed = settings.run.seed;
    let mut rng = Rng::new(seed);
    let split = settings.run.split(data.n_jets, &mut rng)?;
    let n_train = split.train.len();
    if settings.run.batch > n_train {
        return Err(Error::invalid(format!(
            "--batch {} is larger than the training split ({n_train} jets)",
            settings.run.batch
        )));
    }
    let steps = settings.run.steps_for(n_train);
    let val = data.select(&split.validation)?;
    let val_features = fpd_kpd_features(&val)?;
    let val_jets = settings.val_jets.min(val.n_jets);
    let (lr_g, lr_d) = settings.learning_rates();

    let run = RunDir::new(settings.run.new_out_dir(FAMILY));
    let _lock = run.prepare(settings.run.overwrite)?;
    let config = serde_json::json!({
        "family": FAMILY,
        "variant": settings.variant(),
        "jetgen_version": crate::VERSION,
        "settings": crate::runs::settings::to_json(settings)?,
        "resolved": {
            "lr_g": lr_g, "lr_d": lr_d, "critic_steps": settings.critic_steps(),
            "loss": settings.loss().name(),
            "optimizer": format!("{:?}", settings.optimizer()).to_lowercase(),
            "layout": if settings.particle_layout() { "particles" } else { "flat" },
        },
        "steps": steps,
        "data": {
            "path": settings.run.data_path().display().to_string(),
            "checksum": data.checksum(),
            "jets": data.n_jets, "particles": data.n_particles,
            "train": n_train, "validation": split.validation.len(), "split": "70/30 seeded",
        },
    });
    crate::io::write_json(&run.config(), &config)?;

    let nets = build_nets(settings, data, &split.train, &mut rng, device)?;
    let (g_params, d_params) = (nets.g_params(), nets.d_params());
    let ema = if settings.ema > 0.0 {
        Some(
            g_params
                .iter()
                .map(|p| p.value().to_vec())
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    let mut task = GanTask {
        settings,
        nets,
        opt_g: optimizer(settings, g_params.clone(), lr_g),
        opt_d: optimizer(settings, d_params.clone(), lr_d),
        g_params,
        d_params,
        device,
        ema,
        ema_updates: 0,
        val_features,
        val_jets,
        run_dir: run.clone(),
        rng,
    };
    let s = settings;
    let loop_settings = LoopSettings {
        steps,
        lr: lr_g,
        lr_schedule: s.run.lr_schedule,
        val_every: s.run.val_every,
        time_limit_s: s.run.time_limit.map(|m| m * 60.0),
        patience: s.run.patience,
        monitor: "val_fpd",
        goal: Goal::Minimize,
        loss_key: "train_d_loss",
    };
    let outcome = train_loop(&mut task, &loop_settings, &run, progress)?;
    drop(task);
    let best = GanGenerator::load(&run.checkpoint(), device)?;
    finish_run(
        &run,
        &best,
        data,
        &split,
        &loop_settings,
        &outcome,
        &FinishSettings {
            generate: s.run.generate,
            full_eval: !s.run.quick_eval,
            plots: s.run.plots,
            seed,
        },
    )
}

/// The optimizer `settings` ask for over `params`.
fn optimizer(settings: &GanSettings, params: Vec<Param>, lr: f64) -> Box<dyn Optimizer> {
    match settings.optimizer() {
        GanOptimizer::Rmsprop => Box::new(RmsProp::new(
            params,
            RmsPropConfig {
                lr,
                ..Default::default()
            },
        )),
        _ => Box::new(Adam::new(
            params,
            AdamConfig {
                lr,
                beta1: 0.5,
                beta2: 0.9,
                ..Default::default()
            },
        )),
    }
}

/// The networks and training data of the run: flat fc-fc (standardised vectors) or the
/// MPGAN family (normalised particles, the multiplicity histogram of the training split).
pub fn build_nets(
    s: &GanSettings,
    data: &JetNetData,
    train_idx: &[usize],
    rng: &mut Rng,
    device: Device,
) -> Result<Box<dyn GanNets>> {
    let p = data.n_particles;
    let critic_out = if s.loss() == GanLoss::Cramer {
        s.cramer_dim
    } else {
        1
    };
    if !s.particle_layout() {
        let d = 3 * p;
        let mut train = to_flow_vectors(data, train_idx, rng);
        let standardizer = Standardizer::fit(&train, d)?;
        standardizer.apply(&mut train);
        let generator = FcGenerator::new(s.latent, s.hidden, s.depth, d, &mut rng.fork(), device)?;
        let critic = FcCritic::new(d, s.hidden, s.depth, critic_out, &mut rng.fork(), device)?;
        return Ok(Box::new(FlatNets {
            model: TrainedGan {
                generator,
                standardizer,
                n_particles: p,
                hidden: s.hidden,
                depth: s.depth,
                variant: s.variant(),
            },
            critic,
            train,
            device,
        }));
    }
    let train = to_particles(data, train_idx);
    let multiplicity = Multiplicity::fit(&multiplicities(&train, p), p);
    let mp = s.mp_config();
    let fc = (s.generator == GeneratorArch::Fc).then_some(FcSizes {
        latent: s.latent,
        hidden: s.hidden,
        depth: s.depth,
    });
    let model = TrainedParticleGan::new(
        &mp,
        fc,
        multiplicity,
        s.noise_sd as f32,
        s.variant(),
        &mut rng.fork(),
        device,
    )?;
    let drop = s.d_dropout as f32;
    let critic = match s.discriminator {
        DiscriminatorArch::Mp => ParticleCritic::Mp(MpCritic::new(
            &mp,
            critic_out,
            drop,
            &mut rng.fork(),
            device,
        )?),
        DiscriminatorArch::Pointnet => ParticleCritic::PointNet(PointNetMix::new(
            &s.pointnet_mlp,
            &s.pointnet_head,
            critic_out,
            0.0, // MPGAN's PointNet-Mix has no dropout
            &mut rng.fork(),
            device,
        )?),
        DiscriminatorArch::Fc => ParticleCritic::Fc(FcCritic::new(
            4 * p,
            s.hidden,
            s.depth,
            critic_out,
            &mut rng.fork(),
            device,
        )?),
    };
    Ok(Box::new(ParticleNets {
        model,
        critic,
        train,
        device,
    }))
}
