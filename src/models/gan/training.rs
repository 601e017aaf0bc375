//! Training a GAN through the run layer: the seeded 70/30 split, the particle features
//! flattened and standardised (the flows' preprocessing), per generator step
//! `--critic-steps` critic steps then one generator step (Adam, β = (0.5, 0.9)), validation
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
use crate::models::gan::checkpoint::{generate, save_gan, GanGenerator, TrainedGan, FAMILY};
use crate::models::gan::losses::{cramer_critic, gradient_penalty, ls_discriminator, ls_generator};
use crate::models::gan::network::{FcCritic, FcGenerator};
use crate::models::gan::settings::{GanLoss, GanSettings};
use crate::nn::{Adam, AdamConfig, Ctx, Module, Param};
use crate::rng::Rng;
use crate::runs::batch::{draw_with_replacement, gather_rows};
use crate::runs::early_stop::Goal;
use crate::runs::finish::{finish_run, FinishSettings, RunReport};
use crate::runs::progress::{Score, StepInfo};
use crate::runs::split::Split;
use crate::runs::train_loop::{clip_and_step, train_loop, LoopSettings, StepOutcome, TrainTask};
use crate::runs::RunDir;
use crate::tensor::Tensor;

/// One GAN training run in progress.
pub struct GanTask<'a> {
    settings: &'a GanSettings,
    model: TrainedGan,
    critic: FcCritic,
    opt_g: Adam,
    opt_d: Adam,
    g_params: Vec<Param>,
    d_params: Vec<Param>,
    device: Device,
    /// Standardised training vectors `[n_train, 3P]`.
    train: Vec<f32>,
    /// EMA of the generator weights (host copies), when `--ema` > 0.
    ema: Option<Vec<Vec<f32>>>,
    /// EFP features of the validation jets (unnormalised).
    val_features: Features,
    val_jets: usize,
    run_dir: RunDir,
    rng: Rng,
}

impl GanTask<'_> {
    fn features(&self) -> usize {
        3 * self.model.n_particles
    }

    fn real_batch(&mut self, ctx: &Ctx) -> Result<Var> {
        let (d, b) = (self.features(), self.settings.run.batch);
        let picks = draw_with_replacement(&mut self.rng, self.train.len() / d, b);
        let rows = gather_rows(&self.train, d, &picks);
        Ok(ctx
            .tape
            .constant(Tensor::from_slice(&rows, &[b, d], self.device)?))
    }

    fn noise(&mut self) -> Result<Tensor> {
        let (b, l) = (self.settings.run.batch, self.model.generator.latent);
        self.rng.normal(&[b, l], 0.0, 1.0, self.device)
    }

    /// A generated batch as a constant of `ctx` (no gradient into the generator).
    fn fake_constant(&mut self, ctx: &Ctx) -> Result<Var> {
        let z = self.noise()?;
        let gctx = Ctx::new(true, self.rng.next_u64());
        let x = self
            .model
            .generator
            .forward(&gctx, &gctx.tape.constant(z))?;
        Ok(ctx.tape.constant(x.value().clone()))
    }

    fn critic_step(&mut self, lr: f64) -> Result<StepOutcome> {
        let s = self.settings;
        self.opt_d.zero_grad();
        let ctx = Ctx::new(true, self.rng.next_u64());
        let x_r = self.real_batch(&ctx)?;
        let x_g = self.fake_constant(&ctx)?;
        let loss = match s.loss {
            GanLoss::Ls => ls_discriminator(
                &self.critic.forward(&ctx, &x_r)?,
                &self.critic.forward(&ctx, &x_g)?,
            )?,
            GanLoss::WganGp => {
                let w = self
                    .critic
                    .forward(&ctx, &x_g)?
                    .mean_all()?
                    .sub(&self.critic.forward(&ctx, &x_r)?.mean_all()?)?;
                let x_hat = self.interpolate(&ctx, &x_r, &x_g)?;
                let critic = &self.critic;
                let gp = gradient_penalty(&ctx.tape, |x| critic.forward(&ctx, x), &x_hat)?;
                w.add(&gp.mul_scalar(s.gp_lambda)?)?
            }
            GanLoss::Cramer => {
                let x_g2 = self.fake_constant(&ctx)?;
                let x_hat = self.interpolate(&ctx, &x_r, &x_g)?;
                let critic = &self.critic;
                let h2 = critic.forward(&ctx, &x_g2)?;
                let f = |x: &Var| -> Result<Var> { cramer_critic(&critic.forward(&ctx, x)?, &h2) };
                let l_g = f(&x_r)?.mean_all()?.sub(&f(&x_g)?.mean_all()?)?;
                let gp = gradient_penalty(&ctx.tape, f, &x_hat)?;
                l_g.neg()?.add(&gp.mul_scalar(s.gp_lambda)?)?
            }
        };
        let value = loss.value().item()?;
        loss.backward()?;
        clip_and_step(&mut self.opt_d, &self.d_params, value, s.run.clip, lr)
    }

    /// x̂ = εx_r + (1 − ε)x_g with ε ~ U(0, 1) per jet, as a leaf of `ctx`'s tape.
    fn interpolate(&mut self, ctx: &Ctx, x_r: &Var, x_g: &Var) -> Result<Var> {
        let (b, d) = (self.settings.run.batch, self.features());
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
            .var(Tensor::from_slice(&mixed, &[b, d], self.device)?))
    }

    fn generator_step(&mut self, lr: f64) -> Result<StepOutcome> {
        let s = self.settings;
        self.opt_g.zero_grad();
        let ctx = Ctx::new(true, self.rng.next_u64());
        let z = ctx.tape.constant(self.noise()?);
        let x_g = self.model.generator.forward(&ctx, &z)?;
        let loss = match s.loss {
            GanLoss::Ls => ls_generator(&self.critic.forward(&ctx, &x_g)?)?,
            GanLoss::WganGp => self.critic.forward(&ctx, &x_g)?.mean_all()?.neg()?,
            GanLoss::Cramer => {
                let x_r = self.real_batch(&ctx)?;
                let z2 = ctx.tape.constant(self.noise()?);
                let critic = &self.critic;
                let h2 = critic.forward(&ctx, &self.model.generator.forward(&ctx, &z2)?)?;
                let f = |x: &Var| -> Result<Var> { cramer_critic(&critic.forward(&ctx, x)?, &h2) };
                f(&x_r)?.mean_all()?.sub(&f(&x_g)?.mean_all()?)?
            }
        };
        let value = loss.value().item()?;
        loss.backward()?;
        self.opt_d.zero_grad(); // the critic's gradients of the generator loss are not used
        let out = clip_and_step(&mut self.opt_g, &self.g_params, value, s.run.clip, lr)?;
        if let (Some(ema), StepOutcome::Applied(_)) = (&mut self.ema, out) {
            let decay = s.ema as f32;
            for (avg, p) in ema.iter_mut().zip(&self.g_params) {
                for (a, v) in avg.iter_mut().zip(p.value().to_vec()?) {
                    *a = decay * *a + (1.0 - decay) * v;
                }
            }
        }
        Ok(out)
    }

    /// Run `f` with the EMA weights in the generator (when kept), then restore them.
    fn with_ema<R>(&self, f: impl FnOnce(&TrainedGan) -> Result<R>) -> Result<R> {
        let Some(ema) = &self.ema else {
            return f(&self.model);
        };
        let saved: Vec<Tensor> = self.g_params.iter().map(|p| p.value()).collect();
        for (p, avg) in self.g_params.iter().zip(ema) {
            p.set_value(Tensor::from_slice(avg, p.value().shape(), self.device)?);
        }
        let out = f(&self.model);
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
        let lr_d = s.lr_d * lr / s.lr_g;
        let mut d_loss = f64::NAN;
        for _ in 0..s.critic_steps {
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
            self.with_ema(|m| save_gan(&path, m))?;
        }
        Ok(StepOutcome::Applied(d_loss))
    }

    fn score_keys(&self) -> Vec<&'static str> {
        vec!["val_fpd"]
    }

    /// FPD (×1, jetnet's normalisation by the real maxima; one estimate on all jets) of
    /// `--val-jets` generated jets (fixed seed) against the validation jets.
    fn validate(&mut self) -> Result<Vec<Score>> {
        let (n, seed, device) = (self.val_jets, self.settings.run.seed ^ 0xFA1, self.device);
        let jets = self.with_ema(|m| generate(m, n, seed, device))?;
        let (real, gen) = normalise(&self.val_features, &fpd_kpd_features(&jets)?)?;
        let (mr, sr) = mean_cov(&real.data, real.rows, real.dim);
        let (mg, sg) = mean_cov(&gen.data, gen.rows, gen.dim);
        let fpd = frechet_distance(&mr, &sr, &mg, &sg);
        Ok(vec![Score {
            key: "val_fpd",
            label: "validation FPD",
            value: if fpd.is_finite() { fpd } else { f64::MAX },
        }])
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.with_ema(|m| save_gan(path, m))
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
    let split = Split::new(data.n_jets, 0.7, &mut rng)?;
    let n_train = split.train.len();
    if settings.run.batch > n_train {
        return Err(Error::invalid(format!(
            "--batch {} is larger than the training split ({n_train} jets)",
            settings.run.batch
        )));
    }
    let steps = settings.run.steps_for(n_train);
    let d = 3 * data.n_particles;
    let mut train = to_flow_vectors(data, &split.train, &mut rng);
    let standardizer = Standardizer::fit(&train, d)?;
    standardizer.apply(&mut train);
    let val = data.select(&split.validation)?;
    let val_features = fpd_kpd_features(&val)?;
    let val_jets = settings.val_jets.min(val.n_jets);

    let run = RunDir::new(settings.run.new_out_dir(FAMILY));
    let _lock = run.prepare(settings.run.overwrite)?;
    let config = serde_json::json!({
        "family": FAMILY,
        "variant": settings.variant(),
        "jetgen_version": crate::VERSION,
        "settings": crate::runs::settings::to_json(settings)?,
        "steps": steps,
        "data": {
            "path": settings.run.data_path().display().to_string(),
            "checksum": data.checksum(),
            "jets": data.n_jets, "particles": data.n_particles,
            "train": n_train, "validation": split.validation.len(), "split": "70/30 seeded",
        },
    });
    crate::io::write_json(&run.config(), &config)?;

    let (s, h) = (settings, settings.hidden);
    let generator = FcGenerator::new(s.latent, h, s.depth, d, &mut rng.fork(), device)?;
    let critic_out = if s.loss == GanLoss::Cramer {
        s.cramer_dim
    } else {
        1
    };
    let critic = FcCritic::new(d, h, s.depth, critic_out, &mut rng.fork(), device)?;
    let adam = |params: Vec<Param>, lr: f64| {
        Adam::new(
            params,
            AdamConfig {
                lr,
                beta1: 0.5,
                beta2: 0.9,
                ..Default::default()
            },
        )
    };
    let (g_params, d_params) = (generator.params(), critic.params());
    let ema = if s.ema > 0.0 {
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
        model: TrainedGan {
            generator,
            standardizer,
            n_particles: data.n_particles,
            hidden: h,
            depth: s.depth,
            variant: s.variant(),
        },
        critic,
        opt_g: adam(g_params.clone(), s.lr_g),
        opt_d: adam(d_params.clone(), s.lr_d),
        g_params,
        d_params,
        device,
        train,
        ema,
        val_features,
        val_jets,
        run_dir: run.clone(),
        rng,
    };
    let loop_settings = LoopSettings {
        steps,
        lr: s.lr_g,
        lr_schedule: s.run.lr_schedule,
        val_every: s.run.val_every,
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
