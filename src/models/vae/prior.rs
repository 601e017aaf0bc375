//! `jetgen latent`: the learned prior. The codes μ(x) of the training jets sample the
//! aggregate posterior q(z) = E_x q(z|x), which for a trained VAE is not N(0, I); a
//! normalising flow ([`crate::models::flow`]) fitted to them (maximum likelihood on the
//! codes standardised by their mean and spread) replaces N(0, I) at generation. The command
//! writes the model with its prior as a new checkpoint — which `jetgen sample`, `eval
//! --model` and the C API then use — and compares the jets generated from both priors on
//! the same decoder against the validation jets, with the truth floor.

use std::path::PathBuf;

use serde_json::json;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::metrics::{evaluate, EvalConfig, Protocol};
use crate::models::flow::network::{Flow, FlowConfig};
use crate::models::vae::checkpoint::{load_checkpoint, save_checkpoint, TrainedVae};
use crate::models::vae::data::read_clouds;
use crate::models::vae::sampling::{encode, generate_jets, Prior};
use crate::nn::{Adam, AdamConfig, Ctx, Module};
use crate::rng::Rng;
use crate::runs::batch::{draw_with_replacement, gather_rows};
use crate::runs::split::Split;
use crate::tensor::Tensor;

/// `jetgen latent`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct LatentArgs {
    /// Run directory of a trained `vae` or `ae` (its config.json names the data and seed)
    #[arg(long)]
    pub model: PathBuf,
    /// Training jets [default: the run's data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Flow training steps
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Coupling layers of the prior flow
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// Width of the flow's conditioners
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Jets generated from each prior for the comparison (at most the validation split)
    #[arg(long, default_value_t = 2000)]
    pub generate: usize,
    /// The checkpoint with the prior [default: <model>/checkpoint_flow_prior.safetensors]
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Fit a flow prior to codes `[n, l]` (already standardised) for `steps` Adam steps;
/// returns the flow and its final mean NLL on `val` codes.
pub fn fit_prior(
    codes: &[f32],
    val: &[f32],
    l: usize,
    args: &LatentArgs,
    seed: u64,
    device: Device,
) -> Result<(Flow, f64)> {
    let config = FlowConfig {
        layers: args.layers,
        hidden: args.hidden,
        ..FlowConfig::default_for(l)
    };
    let mut rng = Rng::new(seed ^ 0xF10);
    let flow = Flow::new(config, &mut rng.fork(), device)?;
    let params = flow.params();
    let mut opt = Adam::new(
        params.clone(),
        AdamConfig {
            lr: args.lr,
            ..Default::default()
        },
    );
    let n = codes.len() / l;
    for step in 0..args.steps {
        let picks = draw_with_replacement(&mut rng, n, args.batch.min(n));
        let rows = gather_rows(codes, l, &picks);
        opt.zero_grad();
        let ctx = Ctx::new(true, step as u64);
        let x = ctx
            .tape
            .constant(Tensor::from_slice(&rows, &[picks.len(), l], device)?);
        let loss = flow.log_prob(&ctx, &x, None)?.mean_all()?.neg()?;
        let v = loss.value().item()?;
        loss.backward()?;
        let norm = crate::nn::clip_grad_norm(&params, 5.0)?;
        if !v.is_finite() || !norm.is_finite() {
            opt.zero_grad();
            continue;
        }
        opt.config.lr =
            args.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / args.steps as f64).cos());
        opt.step()?;
    }
    let ctx = Ctx::new(false, 0);
    let nv = val.len() / l;
    let x = ctx
        .tape
        .constant(Tensor::from_slice(val, &[nv, l], device)?);
    let nll = -flow.log_prob(&ctx, &x, None)?.mean_all()?.value().item()?;
    Ok((flow, nll))
}

/// Codes `[n, L]` ← (z − m)/s with the training codes' mean m and spread s (the space the
/// flow prior lives in).
pub(super) fn standardise(codes: &mut [f32], m: &TrainedVae) {
    let l = m.latent_mean.len();
    for (k, v) in codes.iter_mut().enumerate() {
        *v = (*v - m.latent_mean[k % l]) / m.latent_std[k % l];
    }
}

/// Run `jetgen latent`.
pub fn run(args: &LatentArgs) -> Result<()> {
    let device = Device::parse(&args.device)?;
    device.ensure_available()?;
    if args.steps == 0 || args.batch == 0 || args.generate == 0 {
        return Err(Error::invalid(
            "--steps, --batch and --generate must be ≥ 1",
        ));
    }
    let run_dir = crate::runs::RunDir::new(&args.model);
    let cfg_path = run_dir.config();
    let cfg = crate::io::read_json(&cfg_path)?;
    let seed = cfg["settings"]["seed"].as_u64().unwrap_or(0);
    let data_path = match &args.data {
        Some(p) => p.clone(),
        None => PathBuf::from(
            cfg["data"]["path"]
                .as_str()
                .ok_or_else(|| Error::file(&cfg_path, "no data path recorded; give --data"))?,
        ),
    };
    let mut model = load_checkpoint(&run_dir.checkpoint(), device)?;
    let p = model.vae.config.particles;
    let l = model.vae.config.latent;
    let (clouds, jets) = read_clouds(&data_path, p)?;
    // the run's split, drawn as the training run drew it
    let split_seed = crate::runs::settings::RunSettings::split_seed_of(&cfg).unwrap_or(seed);
    let split = Split::new(clouds.n_jets, 0.7, &mut Rng::new(split_seed))?;
    let (mut train_codes, _) = encode(&model, &clouds.select(&split.train), device)?;
    let n_val = split.validation.len().min(args.generate);
    let (mut val_codes, _) = encode(&model, &clouds.select(&split.validation[..n_val]), device)?;
    standardise(&mut train_codes, &model);
    standardise(&mut val_codes, &model);
    println!(
        "fitting a {}-layer RQS flow prior to {} training codes (latent {l}), {} steps",
        args.layers,
        split.train.len(),
        args.steps
    );
    let (flow, val_nll) =
        crate::on_thread_pool(|| fit_prior(&train_codes, &val_codes, l, args, seed, device))?;
    let gauss_nll = {
        let sq: f64 = val_codes.iter().map(|&v| (v as f64).powi(2)).sum();
        0.5 * sq / n_val as f64 + 0.5 * l as f64 * (2.0 * std::f64::consts::PI).ln()
    };
    model.prior = Some(flow);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.join("checkpoint_flow_prior.safetensors"));
    save_checkpoint(&out, &model)?;
    let real = jets.select(&split.validation[..n_val])?;
    let eval_cfg = EvalConfig {
        w1_batch_size: Some(n_val.min(10_000)),
        full: true,
        ..EvalConfig::new(Protocol::Mpgan, seed)
    };
    let flow_jets = generate_jets(&model, n_val, seed ^ 0x5EED, Prior::Auto, device)?;
    let gauss_jets = generate_jets(&model, n_val, seed ^ 0x5EED, Prior::Gaussian, device)?;
    let m_flow = evaluate(&real, &flow_jets, &eval_cfg, &mut |_| {})?;
    let m_gauss = evaluate(&real, &gauss_jets, &eval_cfg, &mut |_| {})?;
    let truth = jets.select(&split.train[..n_val.min(split.train.len())])?;
    let floor = evaluate(&real, &truth, &eval_cfg, &mut |_| {})?;
    println!(
        "validation codes: NLL per jet {val_nll:.2} under the flow prior, {gauss_nll:.2} under N(0, I) (standardised codes)"
    );
    println!("Gaussian prior:");
    print!("{}", m_gauss.table_with_floor(Some(&floor)));
    println!("learned flow prior:");
    print!("{}", m_flow.table_with_floor(Some(&floor)));
    crate::io::write_json(
        &run_dir.root().join("latent_prior.json"),
        &json!({
            "checkpoint": out.display().to_string(),
            "flow": {"layers": args.layers, "hidden": args.hidden, "steps": args.steps, "batch": args.batch, "lr": args.lr},
            "val_code_nll_flow": val_nll,
            "val_code_nll_standard_normal": gauss_nll,
            "gaussian_prior": m_gauss.to_json(),
            "flow_prior": m_flow.to_json(),
            "truth_floor": floor.to_json(),
            "n_generated": n_val,
        }),
    )?;
    let dir = run_dir.plots();
    crate::plots::comparison_plots(&real, &flow_jets, &dir.join("generated_flow_prior"))?;
    super::analysis::jet_images(
        &dir.join("jet_images_flow_prior.png"),
        &real,
        &gauss_jets,
        &flow_jets,
    )
    .map(|_| ())?;
    println!("checkpoint with the flow prior: {}", out.display());
    Ok(())
}
