//! Training a particle-cloud flow on JetNet jets through the run layer: a seeded 70/30
//! split, the DESY preprocessing (noise trick, standardisation, conditions), AdamW steps on
//! the NLL per jet (plus λ·MSE of the mass for the CCNF variants), early stopping on the
//! validation NLL, then generation and evaluation by [`crate::runs::finish`].

use std::path::Path;

use crate::autograd::Var;
use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::models::flow::checkpoint::{config_to_json, save_checkpoint, TrainedFlow, FAMILY};
use crate::models::flow::network::Flow;
use crate::models::flow::sampling::{log_probs, FlowGenerator};
use crate::models::flow::settings::FlowSettings;
use crate::models::flow_data::{reflect_standardized, to_flow_vectors, Standardizer};
use crate::nn::{Adam, AdamConfig, Ctx, Module, Param};
use crate::rng::Rng;
use crate::runs::batch::{draw_with_replacement, gather_rows};
use crate::runs::early_stop::Goal;
use crate::runs::finish::{finish_run, FinishSettings, RunReport};
use crate::runs::progress::{Score, StepInfo};
use crate::runs::train_loop::{clip_and_step, train_loop, LoopSettings, StepOutcome, TrainTask};
use crate::runs::RunDir;
use crate::tensor::Tensor;

/// One flow training run in progress: the model, its optimizer and the preprocessed
/// training and validation rows.
struct FlowTask<'a> {
    settings: &'a FlowSettings,
    model: TrainedFlow,
    opt: Adam,
    params: Vec<Param>,
    device: Device,
    /// Standardised training vectors `[n_train, d]`, their real-particle flags
    /// `[n_train, P]` and context rows `[n_train, c]`.
    train: Vec<f32>,
    train_real: Vec<bool>,
    train_ctx: Vec<f32>,
    /// Standardised validation vectors and context rows.
    val: Vec<f32>,
    val_ctx: Vec<f32>,
    rng: Rng,
}

impl FlowTask<'_> {
    fn dims(&self) -> (usize, usize, usize) {
        let c = &self.model.flow.config;
        (c.features, c.context, self.model.n_particles)
    }
}

impl TrainTask for FlowTask<'_> {
    fn batch_size(&self) -> usize {
        self.settings.run.batch
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepOutcome> {
        let (d, c, p) = self.dims();
        let (batch, seed) = (self.settings.run.batch, self.settings.run.seed);
        let n_train = self.train.len() / d;
        let picks = draw_with_replacement(&mut self.rng, n_train, batch);
        let mut rows = gather_rows(&self.train, d, &picks);
        if self.settings.reflect {
            for (row, &i) in rows.chunks_exact_mut(d).zip(&picks) {
                let flips = self.rng.below(4);
                let real = &self.train_real[i * p..(i + 1) * p];
                reflect_standardized(
                    row,
                    real,
                    flips & 1 != 0,
                    flips & 2 != 0,
                    &self.model.standardizer,
                );
            }
        }
        let cond_rows = gather_rows(&self.train_ctx, c, &picks);
        self.opt.zero_grad();
        let ctx = Ctx::new(true, seed.wrapping_add(step as u64));
        let x = ctx
            .tape
            .constant(Tensor::from_slice(&rows, &[batch, d], self.device)?);
        let cond = if c > 0 {
            Some(
                ctx.tape
                    .constant(Tensor::from_slice(&cond_rows, &[batch, c], self.device)?),
            )
        } else {
            None
        };
        let nll = self
            .model
            .flow
            .log_prob(&ctx, &x, cond.as_ref())?
            .mean_all()?
            .neg()?;
        let loss = if self.model.variant.constrained() && step > self.settings.mass_delay {
            let target: Vec<f32> = picks
                .iter()
                .map(|&i| self.model.conditions.mass[i] as f32)
                .collect();
            let mse = mass_constraint(
                &ctx,
                &self.model,
                cond.as_ref(),
                &target,
                &mut self.rng,
                self.device,
            )?;
            nll.add(&mse.mul_scalar(self.settings.mass_lambda)?)?
        } else {
            nll
        };
        let loss_value = loss.value().item()?;
        loss.backward()?;
        clip_and_step(
            &mut self.opt,
            &self.params,
            loss_value,
            self.settings.run.clip,
            lr,
        )
    }

    fn score_keys(&self) -> Vec<&'static str> {
        vec!["val_nll"]
    }

    fn validate(&mut self) -> Result<Vec<Score>> {
        let d = self.model.flow.config.features;
        let lp = log_probs(&self.model.flow, &self.val, &self.val_ctx, d, self.device)?;
        let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len().max(1) as f64;
        Ok(vec![Score {
            key: "val_nll",
            label: "validation NLL",
            value: nll,
        }])
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        save_checkpoint(path, &self.model)
    }
}

/// The CCNF mass constraint MSE(m(x_gen), m_cond): one jet generated per condition of the
/// batch through the flow's inverse (so gradients reach every layer), de-standardised, its
/// relative mass computed from massless constituents (p clamped to ±100 as in the DESY
/// code) and compared with the conditioning mass.
fn mass_constraint(
    ctx: &Ctx,
    m: &TrainedFlow,
    cond: Option<&Var>,
    target: &[f32],
    rng: &mut Rng,
    device: Device,
) -> Result<Var> {
    let (b, d, p) = (target.len(), m.flow.config.features, m.n_particles);
    let z = ctx.tape.constant(rng.normal(&[b, d], 0.0, 1.0, device)?);
    let (x, _) = m.flow.sample_from_noise(ctx, &z, cond)?;
    let std = ctx
        .tape
        .constant(Tensor::from_slice(&m.standardizer.std, &[1, d], device)?);
    let mean = ctx
        .tape
        .constant(Tensor::from_slice(&m.standardizer.mean, &[1, d], device)?);
    let parts = x.mul(&std)?.add(&mean)?.reshape(&[b, p, 3])?;
    let (eta, phi, pt) = (
        parts.narrow(2, 0, 1)?,
        parts.narrow(2, 1, 1)?,
        parts.narrow(2, 2, 1)?,
    );
    let sum = |v: Var| -> Result<Var> { v.clamp(-100.0, 100.0)?.sum(&[1, 2], false) };
    let px = sum(pt.mul(&phi.cos()?)?)?;
    let py = sum(pt.mul(&phi.sin()?)?)?;
    let pz = sum(pt.mul(&eta.sinh()?)?)?;
    let e = sum(pt.mul(&eta.cosh()?)?)?;
    let m2 = e
        .square()?
        .sub(&px.square()?)?
        .sub(&py.square()?)?
        .sub(&pz.square()?)?;
    let mass = m2.relu()?.add_scalar(1e-12)?.sqrt()?;
    let goal = ctx.tape.constant(Tensor::from_slice(target, &[b], device)?);
    mass.sub(&goal)?.square()?.mean_all()
}

/// Train a flow on `data` with `settings` into the run directory `settings.run.out`
/// (default `runs/flow`, or the next free `runs/flow-N`): validate every option, split 70/30 with the seed, write
/// `config.json`, train with early stopping on the validation NLL (`train_log.csv`, the best
/// `checkpoint.safetensors`), then generate from the best checkpoint and evaluate
/// (`generated.hdf5`, `metrics.json`, `plots/`). `progress` sees every report.
pub fn train_flow(
    data: &JetNetData,
    settings: &FlowSettings,
    progress: &mut dyn FnMut(&StepInfo),
) -> Result<RunReport> {
    settings.validate()?;
    let device = settings.run.device()?;
    device.ensure_available()?;
    let d = data.n_particles * 3;
    let flow_config = settings.flow_config(d)?;
    if data.n_jets < 10 {
        return Err(Error::invalid(format!(
            "training needs ≥ 10 jets, got {}",
            data.n_jets
        )));
    }
    let seed = settings.run.seed;
    let mut rng = Rng::new(seed);
    // 70/30 train/validation split (MPGAN / DESY convention), seeded
    let split = settings.run.split(data.n_jets, &mut rng)?;
    let n_train = split.train.len();
    if settings.run.batch > n_train {
        return Err(Error::invalid(format!(
            "--batch {} is larger than the training split ({n_train} jets)",
            settings.run.batch
        )));
    }
    let steps = settings.run.steps_for(n_train);
    let mut train = to_flow_vectors(data, &split.train, &mut rng);
    let train_real: Vec<bool> = split
        .train
        .iter()
        .flat_map(|&i| (0..data.n_particles).map(move |j| data.particle(i, j)[3] != 0.0))
        .collect();
    let mut val = to_flow_vectors(data, &split.validation, &mut rng);
    let standardizer = Standardizer::fit(&train, d)?;
    standardizer.apply(&mut train);
    standardizer.apply(&mut val);
    let train_cond = Conditions::of(data, &split.train);
    let scale = train_cond.scale();
    let train_ctx = train_cond.context(settings.variant, &scale);
    let val_ctx = Conditions::of(data, &split.validation).context(settings.variant, &scale);

    let run = RunDir::new(settings.run.new_out_dir(FAMILY));
    let _lock = run.prepare(settings.run.overwrite)?;
    let config = serde_json::json!({
        "family": FAMILY,
        "variant": settings.variant.name(),
        "jetgen_version": crate::VERSION,
        "settings": crate::runs::settings::to_json(settings)?,
        "steps": steps,
        "data": {
            "path": settings.run.data_path().display().to_string(),
            "checksum": data.checksum(),
            "jets": data.n_jets, "particles": data.n_particles,
            "train": n_train, "validation": split.validation.len(), "split": "70/30 seeded",
        },
        "flow": config_to_json(&flow_config),
    });
    crate::io::write_json(&run.config(), &config)?;

    let model = TrainedFlow {
        flow: Flow::new(flow_config, &mut rng.fork(), device)?,
        standardizer,
        n_particles: data.n_particles,
        variant: settings.variant,
        scale,
        conditions: train_cond,
    };
    let params = model.flow.params();
    let opt = Adam::new(
        params.clone(),
        AdamConfig {
            lr: settings.run.lr,
            weight_decay: settings.run.weight_decay,
            decoupled: true,
            ..Default::default()
        },
    );
    let mut task = FlowTask {
        settings,
        model,
        opt,
        params,
        device,
        train,
        train_real,
        train_ctx,
        val,
        val_ctx,
        rng,
    };
    let loop_settings = LoopSettings {
        steps,
        lr: settings.run.lr,
        lr_schedule: settings.run.lr_schedule,
        val_every: settings.run.val_every,
        time_limit_s: settings.run.time_limit.map(|m| m * 60.0),
        patience: settings.run.patience,
        monitor: "val_nll",
        goal: Goal::Minimize,
        loss_key: "train_nll",
    };
    let outcome = train_loop(&mut task, &loop_settings, &run, progress)?;
    drop(task);
    // evaluate the best checkpoint on jets generated from it
    let best = FlowGenerator::load(&run.checkpoint(), device)?;
    finish_run(
        &run,
        &best,
        data,
        &split,
        &loop_settings,
        &outcome,
        &FinishSettings {
            generate: settings.run.generate,
            full_eval: !settings.run.quick_eval,
            plots: settings.run.plots,
            seed,
        },
    )
}
