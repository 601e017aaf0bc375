//! Benchmark workloads shared by the criterion benches (`cargo bench`) and `jetgen bench`
//! (which also runs on the GPU machine from the bundle and writes JSON).

use std::time::Instant;

use crate::device::Device;
use crate::error::Result;
use crate::nn::{Activation, Adam, AdamConfig, Ctx, Mlp, Module};
use crate::ops::matmul::matmul;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// `C[m, n] = A[m, k] · B[k, n]` inputs for a GEMM benchmark.
pub struct GemmCase {
    pub a: Tensor,
    pub b: Tensor,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl GemmCase {
    /// Random N(0,1) operands on `device`.
    pub fn new(m: usize, k: usize, n: usize, device: Device) -> Result<GemmCase> {
        let mut rng = Rng::new(1);
        Ok(GemmCase {
            a: rng.normal(&[m, k], 0.0, 1.0, device)?,
            b: rng.normal(&[k, n], 0.0, 1.0, device)?,
            m,
            k,
            n,
        })
    }
    /// One product (synchronised on CUDA by reading one element back).
    pub fn run(&self) -> Result<Tensor> {
        matmul(&self.a, &self.b, false, false)
    }
    /// Floating-point operations per product.
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// One MLP training step: forward, MSE loss, backward, Adam — the engine's end-to-end cost.
pub struct MlpStep {
    pub mlp: Mlp,
    pub opt: Adam,
    pub x: Tensor,
    pub target: Tensor,
}

impl MlpStep {
    /// `sizes` e.g. `[90, 256, 256, 90]`, ReLU, batch of N(0,1) inputs and targets.
    pub fn new(sizes: &[usize], batch: usize, device: Device) -> Result<MlpStep> {
        let mut rng = Rng::new(2);
        let mlp = Mlp::new("", sizes, Activation::Relu, &mut rng, device)?;
        let opt = Adam::new(
            mlp.params(),
            AdamConfig {
                lr: 1e-4,
                ..Default::default()
            },
        );
        let x = rng.normal(&[batch, sizes[0]], 0.0, 1.0, device)?;
        let target = rng.normal(&[batch, *sizes.last().unwrap()], 0.0, 1.0, device)?;
        Ok(MlpStep {
            mlp,
            opt,
            x,
            target,
        })
    }
    /// zero_grad, forward, loss, backward, Adam step; returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        self.opt.zero_grad();
        let ctx = Ctx::new(true, 0);
        let out = self.mlp.forward(&ctx, &ctx.tape.constant(self.x.clone()))?;
        let loss = out
            .sub(&ctx.tape.constant(self.target.clone()))?
            .square()?
            .mean_all()?;
        loss.backward()?;
        self.opt.step()?;
        loss.value().item()
    }
}

/// Median wall time in ms of `f` over `iters` runs after `warmup` runs (each run must
/// synchronise, e.g. by reading a value back).
pub fn time_ms(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<()> + Send,
) -> Result<Vec<f64>> {
    // Run on a rayon worker: ops called from a worker split work with `join` in place
    // instead of handing every job to sleeping pool threads (see `on_thread_pool`).
    crate::on_thread_pool(move || time_ms_here(warmup, iters, &mut f))
}

fn time_ms_here(
    warmup: usize,
    iters: usize,
    f: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times)
}

/// One measured benchmark row.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    pub device: String,
    pub median_ms: f64,
    pub p25_ms: f64,
    pub p75_ms: f64,
    pub gflops: Option<f64>,
}

fn row(name: &str, device: Device, times: &[f64], flops: Option<f64>) -> BenchRow {
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let median = q(0.5);
    BenchRow {
        name: name.into(),
        device: device.to_string(),
        median_ms: median,
        p25_ms: q(0.25),
        p75_ms: q(0.75),
        gflops: flops.map(|f| f / (median * 1e6)),
    }
}

/// The engine benchmark suite on `device`: GEMMs and the MLP training step.
pub fn engine_suite(device: Device, iters: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for (m, k, n) in [(256, 256, 256), (1024, 256, 256)] {
        let case = GemmCase::new(m, k, n, device)?;
        let t = time_ms(3, iters, || case.run()?.first_value().map(|_| ()))?;
        rows.push(row(
            &format!("sgemm {m}x{k}x{n}"),
            device,
            &t,
            Some(case.flops()),
        ));
    }
    let mut step = MlpStep::new(&[90, 256, 256, 90], 256, device)?;
    let t = time_ms(3, iters, || step.step().map(|_| ()))?;
    rows.push(row(
        "mlp step 90-256-256-90 b256 (fwd+bwd+adam)",
        device,
        &t,
        None,
    ));
    Ok(rows)
}

impl Tensor {
    /// The first element, read back to the host (forces completion of queued device work).
    pub fn first_value(&self) -> Result<f32> {
        match self.storage() {
            crate::tensor::Storage::Cuda(b) => {
                Ok(b.backend.dtoh(&b.slice, 1)?.first().copied().unwrap_or(0.0))
            }
            _ => Ok(self
                .cpu::<f32>()
                .ok()
                .and_then(|s| s.first().copied())
                .unwrap_or(0.0)),
        }
    }
}
