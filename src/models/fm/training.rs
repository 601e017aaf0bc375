//! Training a flow-matching model through the run layer: the seeded 70/30 split, the jets'
//! real particles standardised per feature (η, φ, pT), per step a batch of jets x₁ with
//! their masks, noise x₀ (optionally paired with the jets by mini-batch OT, [`coupling`]),
//! t ~ U(0, 1) and the flow-matching loss of [`path`] (AdamW, the run's schedule — cosine by
//! default on the command line), an EMA of the weights, validation by the FPD of jets
//! generated with the EMA weights (fixed seed, midpoint `--val-steps`; the best checkpoint
//! is the lowest) and the loss on a fixed validation batch, then generation and evaluation
//! by [`crate::runs::finish`].
//!
//! [`coupling`]: crate::models::fm::coupling
//! [`path`]: crate::models::fm::path

use std::path::Path;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::metrics::fpd_kpd::{fpd_kpd_features, frechet_distance, mean_cov, normalise, Features};
use crate::models::conditions::Conditions;
use crate::models::flow_data::Standardizer;
use crate::models::fm::checkpoint::{save_checkpoint, TrainedFm, FAMILY};
use crate::models::fm::coupling::pair;
use crate::models::fm::network::EpicNet;
use crate::models::fm::path::{fm_loss, interpolate};
use crate::models::fm::sampling::{context_of, context_var, generate, FmGenerator};
use crate::models::fm::settings::FmSettings;
use crate::nn::{Adam, AdamConfig, Ctx, Module, Param};
use crate::ode::{Method, SolverSettings};
use crate::rng::Rng;
use crate::runs::batch::{draw_with_replacement, gather_rows};
use crate::runs::early_stop::Goal;
use crate::runs::finish::{finish_run, FinishSettings, RunReport};
use crate::runs::progress::{Score, StepInfo};
use crate::runs::train_loop::{clip_and_step, train_loop, LoopSettings, StepOutcome, TrainTask};
use crate::runs::RunDir;
use crate::tensor::Tensor;

/// Jets as the network sees them: standardised particles `[n, P, 3]` (zeros on padding),
/// masks `[n, P]`, context rows `[n, C]`.
#[derive(Clone, Debug, Default)]
pub struct FmBatch {
    pub x: Vec<f32>,
    pub mask: Vec<f32>,
    pub context: Vec<f32>,
    pub len: usize,
}

impl FmBatch {
    /// Jets `idx` of `data`, standardised with `s`, with the context of `m`'s condition.
    pub fn of(data: &JetNetData, idx: &[usize], s: &Standardizer, m: &TrainedFm) -> FmBatch {
        let p = data.n_particles;
        let masses = Conditions::of(data, idx).mass;
        let mut out = FmBatch {
            len: idx.len(),
            ..Default::default()
        };
        for (k, &i) in idx.iter().enumerate() {
            for j in 0..p {
                let r = data.particle(i, j);
                let real = r[3] != 0.0;
                for f in 0..3 {
                    out.x.push(if real {
                        (r[f] - s.mean[f]) / s.std[f]
                    } else {
                        0.0
                    });
                }
                out.mask.push(f32::from(real));
            }
            out.context
                .extend(context_of(m, masses[k], data.jet(i)[0] as f64));
        }
        out
    }

    /// The rows `picks`.
    pub fn select(&self, picks: &[usize]) -> FmBatch {
        let p = self.mask.len() / self.len.max(1);
        let c = self.context.len() / self.len.max(1);
        FmBatch {
            x: gather_rows(&self.x, p * 3, picks),
            mask: gather_rows(&self.mask, p, picks),
            context: gather_rows(&self.context, c, picks),
            len: picks.len(),
        }
    }
}

/// The flow-matching loss of `m` on `batch` with given noise `x0` `[B, P, 3]` and times
/// `t [B]` (noise and jets already paired), on a tape of `ctx`.
pub fn batch_loss(
    ctx: &Ctx,
    m: &TrainedFm,
    batch: &FmBatch,
    x0: &[f32],
    t: &[f32],
    device: Device,
) -> Result<crate::autograd::Var> {
    let (b, p) = (batch.len, m.particles());
    let (mut xt, mut u) = interpolate(x0, &batch.x, t, m.sigma_min)?;
    for (k, (a, c)) in xt.iter_mut().zip(u.iter_mut()).enumerate() {
        let keep = batch.mask[k / 3];
        *a *= keep;
        *c *= keep;
    }
    let mask = Tensor::from_slice(&batch.mask, &[b, p], device)?;
    let frame = m.net.frame(ctx, t, &mask)?;
    let c = context_var(ctx, m, &batch.context, b, device)?;
    let xv = ctx
        .tape
        .constant(Tensor::from_slice(&xt, &[b, p, 3], device)?);
    let v = m.net.forward(ctx, &xv, &frame, c.as_ref())?;
    let uv = ctx
        .tape
        .constant(Tensor::from_slice(&u, &[b, p, 3], device)?);
    fm_loss(&v, &uv, &frame.mask)
}

/// One flow-matching training run in progress.
struct FmTask<'a> {
    settings: &'a FmSettings,
    model: TrainedFm,
    opt: Adam,
    params: Vec<Param>,
    device: Device,
    train: FmBatch,
    /// A fixed validation batch with its noise and times (the validation loss).
    val: (FmBatch, Vec<f32>, Vec<f32>),
    /// EMA of the weights (host copies), when `--ema` > 0.
    ema: Option<Vec<Vec<f32>>>,
    /// EMA updates done (for the warm-up of [`crate::nn::optim::ema_decay`]).
    ema_updates: u64,
    val_features: Features,
    rng: Rng,
}

impl FmTask<'_> {
    /// Run `f` with the EMA weights in the network (when kept), then restore them.
    fn with_ema<R>(&self, f: impl FnOnce(&TrainedFm) -> Result<R>) -> Result<R> {
        let Some(ema) = &self.ema else {
            return f(&self.model);
        };
        let saved: Vec<Tensor> = self.params.iter().map(|p| p.value()).collect();
        for (p, avg) in self.params.iter().zip(ema) {
            p.set_value(Tensor::from_slice(avg, p.value().shape(), self.device)?);
        }
        let out = f(&self.model);
        for (p, v) in self.params.iter().zip(saved) {
            p.set_value(v);
        }
        out
    }
}

/// Mean and variance of `v` (0, 0 when empty).
fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
}

/// Noise `[B, P, 3]` on the real particles of `mask`.
fn masked_noise(rng: &mut Rng, mask: &[f32]) -> Result<Vec<f32>> {
    let mut x0 = rng
        .normal(&[mask.len() * 3], 0.0, 1.0, Device::Cpu)?
        .to_vec()?;
    for (k, v) in x0.iter_mut().enumerate() {
        *v *= mask[k / 3];
    }
    Ok(x0)
}

impl TrainTask for FmTask<'_> {
    fn batch_size(&self) -> usize {
        self.settings.run.batch
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepOutcome> {
        let s = self.settings;
        let b = s.run.batch;
        let picks = draw_with_replacement(&mut self.rng, self.train.len, b);
        let batch = self.train.select(&picks);
        let noise = masked_noise(&mut self.rng, &vec![1.0; batch.mask.len()])?;
        let d = noise.len() / b;
        let order = pair(&noise, &batch.x, &batch.mask, b, s.coupling, &mut self.rng)?;
        let mut x0 = gather_rows(&noise, d, &order);
        for (k, v) in x0.iter_mut().enumerate() {
            *v *= batch.mask[k / 3];
        }
        let t = self.rng.uniform(&[b], 0.0, 1.0, Device::Cpu)?.to_vec()?;
        self.opt.zero_grad();
        let ctx = Ctx::new(true, s.run.seed.wrapping_add(step as u64));
        let loss = batch_loss(&ctx, &self.model, &batch, &x0, &t, self.device)?;
        let value = loss.value().item()?;
        loss.backward()?;
        let out = clip_and_step(&mut self.opt, &self.params, value, s.run.clip, lr)?;
        if let (Some(ema), StepOutcome::Applied(_)) = (&mut self.ema, out) {
            crate::nn::optim::ema_update(ema, &self.params, s.ema, self.ema_updates)?;
            self.ema_updates += 1;
        }
        Ok(out)
    }

    fn score_keys(&self) -> Vec<&'static str> {
        vec!["val_fpd", "val_loss"]
    }

    /// FPD (jetnet's normalisation; one estimate on all jets) of `--val-jets` jets generated
    /// with the EMA weights (fixed seed, midpoint `--val-steps`) against the validation jets,
    /// and the flow-matching loss of the fixed validation batch.
    fn validate(&mut self) -> Result<Vec<Score>> {
        let s = self.settings;
        let solver = SolverSettings::fixed(Method::Midpoint, s.val_steps);
        let (n, seed, device) = (s.val_jets, s.run.seed ^ 0xF3D, self.device);
        let (fpd, loss) = self.with_ema(|m| {
            let (jets, _) = generate(m, n, seed, &solver, device)?;
            let (real, gen) = normalise(&self.val_features, &fpd_kpd_features(&jets)?)?;
            let (mr, sr) = mean_cov(&real.data, real.rows, real.dim);
            let (mg, sg) = mean_cov(&gen.data, gen.rows, gen.dim);
            let ctx = Ctx::new(false, 0);
            let (batch, x0, t) = &self.val;
            let loss = batch_loss(&ctx, m, batch, x0, t, device)?.value().item()?;
            Ok((frechet_distance(&mr, &sr, &mg, &sg), loss))
        })?;
        Ok(vec![
            Score {
                key: "val_fpd",
                label: "validation FPD",
                value: if fpd.is_finite() { fpd } else { f64::NAN },
            },
            Score {
                key: "val_loss",
                label: "validation loss",
                value: loss,
            },
        ])
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.with_ema(|m| save_checkpoint(path, m))
    }
}

/// Train a flow-matching model on `data` with `settings` into the run directory (`--out`,
/// default `runs/fm`, or the next free `runs/fm-N`): `config.json`, `train_log.csv`, the best
/// `checkpoint.safetensors` by validation FPD (EMA weights), then `generated.hdf5`,
/// `metrics.json` and `plots/` from it with the checkpoint's default solver.
pub fn train_fm(
    data: &JetNetData,
    settings: &FmSettings,
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
    // jets without particles carry nothing to learn (and no multiplicity to draw)
    let train_idx: Vec<usize> = split
        .train
        .iter()
        .copied()
        .filter(|&i| data.multiplicity(i) > 0)
        .collect();
    let n_train = train_idx.len();
    if settings.run.batch > n_train {
        return Err(Error::invalid(format!(
            "--batch {} is larger than the training split ({n_train} non-empty jets)",
            settings.run.batch
        )));
    }
    let steps = settings.run.steps_for(n_train);
    let p = data.n_particles;
    let rows: Vec<f32> = train_idx
        .iter()
        .flat_map(|&i| (0..p).map(move |j| data.particle(i, j)))
        .filter(|r| r[3] != 0.0)
        .flat_map(|r| r[..3].to_vec())
        .collect();
    let standardizer = Standardizer::fit(&rows, 3)?;
    let conditions = Conditions::of(data, &train_idx);
    let scale = conditions.scale();
    let pt: Vec<f64> = if settings.condition.uses_pt() {
        train_idx.iter().map(|&i| data.jet(i)[0] as f64).collect()
    } else {
        vec![]
    };
    if let Some(k) = pt.iter().position(|&v| !(v.is_finite() && v > 0.0)) {
        return Err(Error::invalid(format!(
            "--condition mass-pt needs the jets' pT: training jet {} has pT {}",
            train_idx[k], pt[k]
        )));
    }
    let pt_scale = {
        let (mean, var) = mean_var(&pt);
        [mean, if var > 1e-24 { var.sqrt() } else { 1.0 }]
    };
    let network = settings.network(p);
    network.validate()?;
    let val = data.select(&split.validation)?;
    let val_features = fpd_kpd_features(&val)?;

    let run = RunDir::new(settings.run.new_out_dir(FAMILY));
    let _lock = run.prepare(settings.run.overwrite)?;
    crate::io::write_json(
        &run.config(),
        &serde_json::json!({
            "family": FAMILY,
            "variant": settings.condition.name(),
            "jetgen_version": crate::VERSION,
            "settings": crate::runs::settings::to_json(settings)?,
            "steps": steps,
            "data": {
                "path": settings.run.data_path().display().to_string(),
                "checksum": data.checksum(),
                "jets": data.n_jets, "particles": p,
                "train": n_train, "validation": split.validation.len(), "split": "70/30 seeded",
            },
            "network": serde_json::to_value(&network).unwrap_or_default(),
            "parameters": network.parameter_count() as u64,
        }),
    )?;
    let model = TrainedFm {
        net: EpicNet::new(network, &mut rng.fork(), device)?,
        standardizer,
        condition: settings.condition,
        conditions,
        scale,
        pt,
        pt_scale,
        sigma_min: settings.sigma_min,
        sampler: settings.sampler(),
    };
    let train = FmBatch::of(data, &train_idx, &model.standardizer, &model);
    let val_idx: Vec<usize> = split
        .validation
        .iter()
        .copied()
        .filter(|&i| data.multiplicity(i) > 0)
        .take(settings.run.batch.max(64))
        .collect();
    let val_batch = FmBatch::of(data, &val_idx, &model.standardizer, &model);
    let mut val_rng = Rng::new(seed ^ 0x5EED);
    let val_noise = masked_noise(&mut val_rng, &val_batch.mask)?;
    let val_t = val_rng
        .uniform(&[val_batch.len.max(1)], 0.0, 1.0, Device::Cpu)?
        .to_vec()?;
    let params = model.net.params();
    let opt = Adam::new(
        params.clone(),
        AdamConfig {
            lr: settings.run.lr,
            weight_decay: settings.run.weight_decay,
            decoupled: true,
            ..Default::default()
        },
    );
    let ema = if settings.ema > 0.0 {
        Some(
            params
                .iter()
                .map(|p| p.value().to_vec())
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    let mut task = FmTask {
        settings,
        model,
        opt,
        params,
        device,
        train,
        val: (val_batch, val_noise, val_t),
        ema,
        ema_updates: 0,
        val_features,
        rng,
    };
    let loop_settings = LoopSettings {
        steps,
        lr: settings.run.lr,
        lr_schedule: settings.run.lr_schedule,
        val_every: settings.run.val_every,
        time_limit_s: settings.run.time_limit.map(|m| m * 60.0),
        patience: settings.run.patience,
        monitor: "val_fpd",
        goal: Goal::Minimize,
        loss_key: "train_loss",
    };
    let outcome = train_loop(&mut task, &loop_settings, &run, progress)?;
    drop(task);
    let best = FmGenerator::load(&run.checkpoint(), device)?;
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
