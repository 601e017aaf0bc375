//! `jetgen bench fm`: one EPiC flow-matching training step and generation at 20 and 100
//! network evaluations (midpoint 10 and 50 steps), the reference network (6 layers × 128,
//! global 10, time embedding 32) on 30-particle synthetic jets with multiplicities uniform
//! in 10..=30 — the workload `benches/peers/torch_epic_fm.py` times in PyTorch.

use crate::device::Device;
use crate::error::Result;
use crate::models::conditions::Conditions;
use crate::models::flow_data::Standardizer;
use crate::models::fm::checkpoint::TrainedFm;
use crate::models::fm::network::{EpicConfig, EpicNet};
use crate::models::fm::sampling::{generate_with, masks_of};
use crate::models::fm::settings::FmCondition;
use crate::models::fm::training::{batch_loss, FmBatch};
use crate::nn::{Adam, AdamConfig, Ctx, Module};
use crate::ode::{Method, SolverSettings};
use crate::rng::Rng;

use super::workloads::{time_ms, BenchRow};

/// A fresh reference model (unconditional, multiplicities 10..=30).
fn bench_model(device: Device) -> Result<TrainedFm> {
    Ok(TrainedFm {
        net: EpicNet::new(EpicConfig::reference(30, 0), &mut Rng::new(1), device)?,
        standardizer: Standardizer {
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        },
        condition: FmCondition::None,
        conditions: Conditions {
            mass: vec![],
            n: (10..=30).map(f64::from).collect(),
        },
        scale: [0.0, 1.0, 0.0, 1.0],
        pt: vec![],
        pt_scale: [0.0, 1.0],
        sigma_min: 1e-4,
        sampler: SolverSettings::default(),
    })
}

fn bench_row(name: String, device: Device, times: &[f64]) -> BenchRow {
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    BenchRow {
        name,
        device: device.to_string(),
        median_ms: q(0.5),
        p25_ms: q(0.25),
        p75_ms: q(0.75),
        gflops: None,
    }
}

/// The rows: a training step (AdamW, independent coupling) and generation at NFE 20 and
/// 100, each at `batch` jets.
pub fn fm_suite(device: Device, iters: usize, batch: usize) -> Result<Vec<BenchRow>> {
    let b = batch.max(1);
    let p = 30;
    let m = bench_model(device)?;
    let mut rng = Rng::new(5);
    let counts: Vec<usize> = (0..b).map(|_| 10 + rng.below(21)).collect();
    let mask = masks_of(&counts, p);
    let mut x: Vec<f32> = rng.normal(&[b * p * 3], 0.0, 1.0, Device::Cpu)?.to_vec()?;
    for (k, v) in x.iter_mut().enumerate() {
        *v *= mask[k / 3];
    }
    let batch_rows = FmBatch {
        x,
        mask: mask.clone(),
        context: vec![],
        len: b,
    };
    let mut opt = Adam::new(m.net.params(), AdamConfig::adamw(1e-3));
    let mut rows = Vec::new();
    let t = time_ms(1, iters, || {
        let mut x0: Vec<f32> = rng.normal(&[b * p * 3], 0.0, 1.0, Device::Cpu)?.to_vec()?;
        for (k, v) in x0.iter_mut().enumerate() {
            *v *= mask[k / 3];
        }
        let times = rng.uniform(&[b], 0.0, 1.0, Device::Cpu)?.to_vec()?;
        opt.zero_grad();
        let ctx = Ctx::new(true, 0);
        let loss = batch_loss(&ctx, &m, &batch_rows, &x0, &times, device)?;
        loss.backward()?;
        opt.step()
    })?;
    rows.push(bench_row(
        format!("fm train step b{b} (EPiC 6×128)"),
        device,
        &t,
    ));
    let given = Conditions {
        mass: vec![],
        n: counts.iter().map(|&k| k as f64).collect(),
    };
    for nfe in [20, 100] {
        let solver = SolverSettings::fixed(Method::Midpoint, nfe / 2);
        let t = time_ms(1, iters, || {
            generate_with(&m, &given, &[], 1, &solver, device).map(|_| ())
        })?;
        rows.push(bench_row(
            format!("fm generate midpoint NFE {nfe} b{b}"),
            device,
            &t,
        ));
    }
    Ok(rows)
}
