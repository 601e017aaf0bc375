//! Benchmark workloads shared by `jetgen bench` (which also runs on the GPU machine from the
//! bundle and writes JSON) and the criterion benches (`cargo bench`), which include this
//! file with `#[path]`. Not part of the library's API: it uses only public items, through
//! `jetgen::` paths, so it compiles in both places.
#![allow(dead_code)]

use std::time::Instant;

use jetgen::device::Device;
use jetgen::error::{Error, Result};
use jetgen::nn::{Activation, Adam, AdamConfig, Ctx, Mlp, Module};
use jetgen::ops::matmul::matmul;
use jetgen::rng::Rng;
use jetgen::tensor::Tensor;

/// The devices to benchmark: the CPU, and CUDA device 0 when a GPU is usable (printing why
/// not otherwise).
pub fn bench_devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    match jetgen::device::cuda::driver_available() {
        Ok(_) => d.push(Device::Cuda(0)),
        Err(e) => eprintln!("CUDA benches skipped: {e}"),
    }
    d
}

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

/// One WGAN critic training step on jet-sized inputs (B × 90: 30 particles × 3 features):
/// critic MLP `90-256-256-1` (LeakyReLU 0.2), Adam. Plain: L = mean D(fake) − mean D(real).
/// With `penalty`: + 10·mean_b(‖∂D(x̂_b)/∂x̂_b‖ − 1)², the input gradient recorded on the tape
/// and differentiated again (a double backward), as WGAN-GP trains.
pub struct CriticStep {
    pub critic: Mlp,
    pub opt: Adam,
    pub real: Tensor,
    pub fake: Tensor,
    pub x_hat: Tensor,
    pub penalty: bool,
}

impl CriticStep {
    /// A critic with `sizes` (e.g. `[90, 256, 256, 1]`) and N(0,1) real/fake batches.
    pub fn new(sizes: &[usize], batch: usize, penalty: bool, device: Device) -> Result<CriticStep> {
        let mut rng = Rng::new(3);
        let critic = Mlp::new("", sizes, Activation::LeakyRelu(0.2), &mut rng, device)?;
        let opt = Adam::new(critic.params(), AdamConfig::default());
        let real = rng.normal(&[batch, sizes[0]], 0.0, 1.0, device)?;
        let fake = rng.normal(&[batch, sizes[0]], 0.3, 0.7, device)?;
        let alpha = rng.uniform(&[batch, 1], 0.0, 1.0, device)?;
        // x̂ = α·real + (1 − α)·fake
        use jetgen::ops::elementwise::{binary, BinaryOp};
        let x_hat = binary(
            BinaryOp::Add,
            &fake,
            &binary(BinaryOp::Mul, &alpha, &binary(BinaryOp::Sub, &real, &fake)?)?,
        )?;
        Ok(CriticStep {
            critic,
            opt,
            real,
            fake,
            x_hat,
            penalty,
        })
    }
    /// zero_grad, the loss (with the penalty if asked), backward, Adam step; returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        use jetgen::autograd::CreateGraph;
        self.opt.zero_grad();
        let ctx = Ctx::new(true, 0);
        let tape = &ctx.tape;
        let real = self
            .critic
            .forward(&ctx, &tape.constant(self.real.clone()))?;
        let fake = self
            .critic
            .forward(&ctx, &tape.constant(self.fake.clone()))?;
        let mut loss = fake.mean_all()?.sub(&real.mean_all()?)?;
        if self.penalty {
            let x_hat = tape.var(self.x_hat.clone());
            let d_hat = self.critic.forward(&ctx, &x_hat)?.sum_all()?;
            let g = tape.grad(&d_hat, &[&x_hat], CreateGraph::Yes)?.remove(0);
            let norm = g.square()?.sum(&[1], false)?.sqrt()?;
            let gp = norm.add_scalar(-1.0)?.square()?.mean_all()?;
            loss = loss.add(&gp.mul_scalar(10.0)?)?;
        }
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
    jetgen::on_thread_pool(move || time_ms_here(warmup, iters, &mut f))
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
    if device == Device::Cpu {
        rows.extend(panel_gemm_rows(iters)?);
    }
    let mut step = MlpStep::new(&[90, 256, 256, 90], 256, device)?;
    let t = time_ms(3, iters, || step.step().map(|_| ()))?;
    rows.push(row(
        "mlp step 90-256-256-90 b256 (fwd+bwd+adam)",
        device,
        &t,
        None,
    ));
    for (penalty, name) in [
        (false, "critic step 90-256-256-1 b256 (plain)"),
        (true, "critic step 90-256-256-1 b256 (WGAN-GP)"),
    ] {
        let mut step = CriticStep::new(&[90, 256, 256, 1], 256, penalty, device)?;
        let t = time_ms(3, iters, || step.step().map(|_| ()))?;
        rows.push(row(name, device, &t, None));
    }
    Ok(rows)
}

/// The network-layer shape of generation (5120 particle rows × 128 → 128, as in one EPiC
/// product at batch 256): matrixmultiply (its own threads) against the packed-panel GEMM
/// in row blocks of 320 over rayon (`jetgen::ops::panel_gemm`, the inference paths').
fn panel_gemm_rows(iters: usize) -> Result<Vec<BenchRow>> {
    use jetgen::ops::panel_gemm::{gemm_packed, PackedW};
    use rayon::prelude::*;
    let (m, k, n, block) = (5120, 128, 128, 320);
    let case = GemmCase::new(m, k, n, Device::Cpu)?;
    let flops = Some(case.flops());
    let t = time_ms(3, iters, || case.run().map(|_| ()))?;
    let mut rows = vec![row(&format!("sgemm {m}x{k}x{n}"), Device::Cpu, &t, flops)];
    let a = case.a.to_vec()?;
    let w = Rng::new(2)
        .normal(&[n, k], 0.0, 1.0, Device::Cpu)?
        .to_vec()?;
    let mut c = vec![0.0f32; m * n];
    let isa = jetgen::simd::isa();
    let t = time_ms(3, iters, || {
        let packed = PackedW::pack(&w, k, 0, n, k);
        c.par_chunks_mut(block * n)
            .zip(a.par_chunks(block * k))
            .for_each(|(c, a)| gemm_packed(isa, a, k, a.len() / k, &packed, c, n, false));
        Ok(())
    })?;
    rows.push(row(
        &format!("panel sgemm {m}x{k}x{n} (A·Wᵀ, blocks of {block} rows)"),
        Device::Cpu,
        &t,
        flops,
    ));
    Ok(rows)
}

/// One row of `jetgen bench kernels --json`: the machine-readable schema from the kernels
/// issue (fields that do not apply are `None` → JSON null).
#[derive(Clone, Debug, Default)]
pub struct KernelRow {
    pub op: &'static str,
    pub device: String,
    pub batch: Option<usize>,
    pub n: Option<usize>,
    pub m: Option<usize>,
    pub d: Option<usize>,
    pub bins: Option<usize>,
    pub iters: Option<usize>,
    pub eps: Option<f64>,
    pub pass: &'static str,
    /// Extra detail: `debias=true`, `inverse`, ...
    pub variant: Option<String>,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub runs: usize,
    /// How the times were taken: `"wall"` (CPU) or `"cuda_events"` (device time, CUDA).
    pub timer: &'static str,
    /// The call's counted work (`jetgen::ops::work`), for the roofline bound.
    pub work: Option<jetgen::ops::work::Work>,
}

impl KernelRow {
    /// The row as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "op": self.op, "device": self.device, "batch": self.batch, "n": self.n, "m": self.m,
            "d": self.d, "bins": self.bins, "iters": self.iters, "eps": self.eps, "pass": self.pass,
            "variant": self.variant, "median_s": self.median_s, "min_s": self.min_s,
            "max_s": self.max_s, "runs": self.runs, "timer": self.timer,
            "threads": rayon::current_num_threads(),
            "work": self.work.map(|w| serde_json::json!({
                "flops": w.flops, "transcendentals": w.transcendentals, "bytes": w.bytes,
            })),
        })
    }
}

/// Time `f` for at least `min_time_s` (and 5 runs, at most 200) after 2 warm-ups, like the
/// peer script; returns (median, min, max, runs) in seconds of wall time.
pub fn time_adaptive(
    min_time_s: f64,
    mut f: impl FnMut() -> Result<()> + Send,
) -> Result<(f64, f64, f64, usize)> {
    jetgen::on_thread_pool(move || {
        sample_runs(min_time_s, || {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
    })
}

/// Time one op call `f` (which returns its result) as GPU.md asks: on the CPU, wall time as
/// [`time_adaptive`]; on CUDA, device time between CUDA events recorded around the call
/// (the result is not read back). Returns (median, min, max, runs, timer), seconds, with
/// timer `"wall"` or `"cuda_events"`.
pub fn time_op(
    device: Device,
    min_time_s: f64,
    mut f: impl FnMut() -> Result<Tensor> + Send,
) -> Result<(f64, f64, f64, usize, &'static str)> {
    let Device::Cuda(ordinal) = device else {
        let (med, min, max, runs) = time_adaptive(min_time_s, || f().map(|_| ()))?;
        return Ok((med, min, max, runs, "wall"));
    };
    let be = jetgen::device::cuda::backend(ordinal)?;
    let (med, min, max, runs) = jetgen::on_thread_pool(move || {
        sample_runs(min_time_s, || Ok(be.time_events(&mut f)?.1 / 1e3))
    })?;
    Ok((med, min, max, runs, "cuda_events"))
}

/// Run `run` (returning one run's seconds) twice to warm up, then for at least `min_time_s`
/// of wall time and 5 runs, at most 200; (median, min, max, runs). A call that takes a second
/// or more gets one warm-up and 3 runs (so that the large cases of a scaling sweep take
/// minutes, not hours).
fn sample_runs(
    min_time_s: f64,
    mut run: impl FnMut() -> Result<f64>,
) -> Result<(f64, f64, f64, usize)> {
    let slow = run()? >= 1.0;
    if !slow {
        run()?;
    }
    let min_runs = if slow { 3 } else { 5 };
    let start = Instant::now();
    let mut ts = Vec::new();
    while ts.len() < 200 && (ts.len() < min_runs || start.elapsed().as_secs_f64() < min_time_s) {
        ts.push(run()?);
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    Ok((ts[ts.len() / 2], ts[0], ts[ts.len() - 1], ts.len()))
}

/// Which cases the kernel suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSizes {
    /// The sizes of ../shared/peers/bench_kernels.py (`jetgen bench kernels`).
    Peers,
    /// How cost grows (`jetgen bench scaling`, issue 18): Chamfer and Sinkhorn over
    /// N = M ∈ {30, 60, 150} × B ∈ {256, 4096, 16384} (Sinkhorn forward, 100 iterations, no
    /// debiasing), RQS over 1024 and 16384 rows of 90 and K ∈ {4, 8, 16} (forward map).
    Scaling,
}

impl KernelSizes {
    /// Chamfer's (B, N = M) cases.
    fn chamfer(self) -> Vec<(usize, usize)> {
        match self {
            KernelSizes::Peers => vec![(256, 30), (4096, 30), (256, 150), (4096, 150)],
            KernelSizes::Scaling => Self::grid(),
        }
    }
    /// Sinkhorn's (B, N = M) cases, its debias settings and whether to time the backward.
    fn sinkhorn(self) -> (Vec<(usize, usize)>, &'static [bool], &'static [bool]) {
        match self {
            KernelSizes::Peers => (vec![(256, 30)], &[false, true], &[false, true]),
            KernelSizes::Scaling => (Self::grid(), &[false], &[false]),
        }
    }
    /// RQS's (rows, K) cases and its directions (`inverse`).
    fn rqs(self) -> (Vec<(usize, usize)>, &'static [bool]) {
        match self {
            KernelSizes::Peers => (vec![(1024, 8)], &[false, true]),
            KernelSizes::Scaling => {
                let cases = [1024, 16384]
                    .into_iter()
                    .flat_map(|r| [4, 8, 16].map(|k| (r, k)))
                    .collect();
                (cases, &[false])
            }
        }
    }
    /// N = M ∈ {30, 60, 150} × B ∈ {256, 4096, 16384}, N outermost.
    fn grid() -> Vec<(usize, usize)> {
        [30, 60, 150]
            .into_iter()
            .flat_map(|n| [256, 4096, 16384].map(|b| (b, n)))
            .collect()
    }
}

/// The custom-kernel suite on `device`: Chamfer, Sinkhorn and RQS, forward and
/// forward+backward, at the sizes `sizes` names. `only` names the ops to run (`chamfer`,
/// `sinkhorn`, `rqs`, `edge_mlp`; empty = all; the edge network only at the peers' sizes).
pub fn kernel_suite(
    device: Device,
    min_time_s: f64,
    only: &[String],
    sizes: KernelSizes,
    mut progress: impl FnMut(&KernelRow),
) -> Result<Vec<KernelRow>> {
    const OPS: [&str; 4] = ["chamfer", "sinkhorn", "rqs", "edge_mlp"];
    if let Some(bad) = only.iter().find(|o| !OPS.contains(&o.as_str())) {
        return Err(Error::invalid(format!(
            "unknown kernel '{bad}' ({})",
            OPS.join(", ")
        )));
    }
    let wanted = |op: &str| only.is_empty() || only.iter().any(|o| o == op);
    use jetgen::ops::chamfer::{chamfer, chamfer_backward, PointReduction};
    use jetgen::ops::rqs::{rqs, rqs_backward, RqsConfig};
    use jetgen::ops::sinkhorn::{sinkhorn, sinkhorn_backward, SinkhornConfig};
    use jetgen::ops::work;
    let dev = device.to_string();
    let mut rows = Vec::new();
    let mut rng = Rng::new(7);
    let mut push = |row: KernelRow, rows: &mut Vec<KernelRow>| {
        progress(&row);
        rows.push(row);
    };
    for (b, n) in sizes.chamfer().into_iter().filter(|_| wanted("chamfer")) {
        let x = rng.normal(&[b, n, 3], 0.0, 1.0, device)?;
        let y = rng.normal(&[b, n, 3], 0.0, 1.0, device)?;
        let g = Tensor::full(&[b], 1.0, device)?;
        for backward in [false, true] {
            let (median_s, min_s, max_s, runs, timer) = time_op(device, min_time_s, || {
                let out = chamfer(&x, &y, None, None, PointReduction::Sum)?;
                if backward {
                    Ok(chamfer_backward(&x, &y, &out, PointReduction::Sum, &g)?.0)
                } else {
                    Ok(out.distance)
                }
            })?;
            let pass = if backward { "fwd+bwd" } else { "fwd" };
            let row = KernelRow {
                op: "chamfer",
                device: dev.clone(),
                batch: Some(b),
                n: Some(n),
                m: Some(n),
                d: Some(3),
                pass,
                work: Some(work::chamfer(b, n, n, 3, backward, 4)),
                median_s,
                min_s,
                max_s,
                runs,
                timer,
                ..Default::default()
            };
            push(row, &mut rows);
        }
    }
    let (sinkhorn_cases, debiases, backwards) = sizes.sinkhorn();
    for (b, n) in sinkhorn_cases.into_iter().filter(|_| wanted("sinkhorn")) {
        let x = rng.uniform(&[b, n, 3], 0.0, 1.0, device)?;
        let y = rng.uniform(&[b, n, 3], 0.0, 1.0, device)?;
        let w = Tensor::full(&[b, n], 1.0 / n as f32, device)?;
        let g = Tensor::full(&[b], 1.0, device)?;
        for &debias in debiases {
            let cfg = SinkhornConfig {
                debias,
                ..SinkhornConfig::new(0.01, 100)
            };
            for &backward in backwards {
                let (median_s, min_s, max_s, runs, timer) = time_op(device, min_time_s, || {
                    let out = sinkhorn(&x, &y, &w, &w, &cfg)?;
                    if backward {
                        let [gx, ..] = sinkhorn_backward(&x, &y, &w, &w, &out, &cfg, debias, &g)?;
                        Ok(gx)
                    } else {
                        Ok(out.ot)
                    }
                })?;
                let pass = if backward { "fwd+bwd" } else { "fwd" };
                let row = KernelRow {
                    op: "sinkhorn",
                    device: dev.clone(),
                    batch: Some(b),
                    n: Some(n),
                    m: Some(n),
                    d: Some(3),
                    iters: Some(100),
                    eps: Some(0.01),
                    pass,
                    work: Some(work::sinkhorn(b, n, n, 3, 100, debias, backward, 4)),
                    variant: Some(format!("debias={debias}")),
                    median_s,
                    min_s,
                    max_s,
                    runs,
                    timer,
                    ..Default::default()
                };
                push(row, &mut rows);
            }
        }
    }
    let (rqs_cases, directions) = sizes.rqs();
    for (rows_, k) in rqs_cases.into_iter().filter(|_| wanted("rqs")) {
        let cols = 90;
        let cfg = RqsConfig::new(k, 3.0);
        let x = rng.normal(&[rows_, cols], 0.0, 1.5, device)?;
        let uw = rng.normal(&[rows_, cols, k], 0.0, 1.0, device)?;
        let uh = rng.normal(&[rows_, cols, k], 0.0, 1.0, device)?;
        let ud = rng.normal(&[rows_, cols, k - 1], 0.0, 1.0, device)?;
        let g = Tensor::full(&[2, rows_, cols], 1.0, device)?;
        for &inverse in directions {
            for backward in [false, true] {
                let (median_s, min_s, max_s, runs, timer) = time_op(device, min_time_s, || {
                    let (y, _) = rqs(&x, &uw, &uh, &ud, &cfg, inverse)?;
                    if backward {
                        let [gx, ..] = rqs_backward(&x, &uw, &uh, &ud, &cfg, inverse, &g)?;
                        Ok(gx)
                    } else {
                        Ok(y)
                    }
                })?;
                let pass = if backward { "fwd+bwd" } else { "fwd" };
                let row = KernelRow {
                    op: "rqs",
                    device: dev.clone(),
                    batch: Some(rows_),
                    n: Some(cols),
                    bins: Some(k),
                    pass,
                    work: Some(work::rqs(rows_ * cols, k, backward, 4)),
                    variant: Some(if inverse { "inverse" } else { "forward" }.into()),
                    median_s,
                    min_s,
                    max_s,
                    runs,
                    timer,
                    ..Default::default()
                };
                push(row, &mut rows);
            }
        }
    }
    // MPGAN's fused edge network (CPU and CUDA), full jets of 30 (every pair computed, as
    // for gluon jets), MPGAN's widths 96-160-192, no dropout
    if wanted("edge_mlp") && sizes == KernelSizes::Peers {
        use jetgen::ops::edge_mlp::{edge_mlp_backward, edge_mlp_forward};
        let widths = [96usize, 160, 192];
        for b in [32usize, 256] {
            let n = 30;
            let a = rng.normal(&[b, n, widths[0]], 0.0, 1.0, device)?;
            let c = rng.normal(&[b, n, widths[0]], 0.0, 1.0, device)?;
            let layers: Vec<(Tensor, Tensor)> = widths
                .windows(2)
                .map(|w| {
                    let sd = 1.0 / (w[0] as f32).sqrt();
                    Ok((
                        rng.normal(&[w[1], w[0]], 0.0, sd, device)?,
                        rng.normal(&[w[1]], 0.0, 0.1, device)?,
                    ))
                })
                .collect::<Result<_>>()?;
            let refs: Vec<(&Tensor, &Tensor)> = layers.iter().map(|(w, b)| (w, b)).collect();
            let mask = Tensor::full(&[b, n], 1.0, device)?;
            let g = Tensor::full(&[b, n, widths[2]], 1.0, device)?;
            for backward in [false, true] {
                let (median_s, min_s, max_s, runs, timer) = time_op(device, min_time_s, || {
                    if backward {
                        let grads = edge_mlp_backward(&a, &c, &refs, &mask, 0.2, None, &g)?;
                        Ok(grads.into_iter().next().unwrap_or(g.clone()))
                    } else {
                        edge_mlp_forward(&a, &c, &refs, &mask, 0.2, None)
                    }
                })?;
                let row = KernelRow {
                    op: "edge_mlp",
                    device: dev.clone(),
                    batch: Some(b),
                    n: Some(n),
                    m: Some(n),
                    pass: if backward { "fwd+bwd" } else { "fwd" },
                    work: Some(work::edge_mlp(b * n * n, b * n, &widths, backward, 4)),
                    variant: Some("96-160-192".into()),
                    median_s,
                    min_s,
                    max_s,
                    runs,
                    timer,
                    ..Default::default()
                };
                push(row, &mut rows);
            }
        }
    }
    Ok(rows)
}

/// One RQS coupling-flow training step as nflows' peer times it (`bench_kernels.py
/// flow_step`): D = 90, batch 256, K = 8, tail bound 3, alternating masks, ResidualNet
/// `hidden × blocks`, zero_grad + (−log p).mean() + backward + Adam(lr 1e-4).
pub struct FlowStep {
    pub flow: jetgen::models::flow::Flow,
    pub opt: Adam,
    pub x: Tensor,
}

impl FlowStep {
    /// A fresh flow with `layers` coupling layers and its N(0, 1) batch.
    pub fn new(
        layers: usize,
        hidden: usize,
        blocks: usize,
        batch: usize,
        device: Device,
    ) -> Result<FlowStep> {
        use jetgen::models::flow::{Flow, FlowConfig};
        let mut rng = Rng::new(3);
        let config = FlowConfig {
            layers,
            hidden,
            blocks,
            coupling: jetgen::nn::CouplingKind::Rqs(jetgen::ops::rqs::RqsConfig::new(8, 3.0)),
            ..FlowConfig::default_for(90)
        };
        let flow = Flow::new(config, &mut rng, device)?;
        let opt = Adam::new(
            flow.params(),
            AdamConfig {
                lr: 1e-4,
                ..Default::default()
            },
        );
        let x = rng.normal(&[batch, 90], 0.0, 1.0, device)?;
        Ok(FlowStep { flow, opt, x })
    }

    /// One training step; returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        self.opt.zero_grad();
        let ctx = Ctx::new(true, 0);
        let x = ctx.tape.constant(self.x.clone());
        let loss = self.flow.log_prob(&ctx, &x, None)?.mean_all()?.neg()?;
        loss.backward()?;
        self.opt.step()?;
        loss.value().item()
    }

    /// Draw `batch` samples (no gradients).
    pub fn sample(&self, batch: usize, seed: u64) -> Result<f64> {
        let ctx = Ctx::new(false, seed);
        let z =
            ctx.tape
                .constant(Rng::new(seed).normal(&[batch, 90], 0.0, 1.0, self.x.device())?);
        let (x, _) = self.flow.sample_from_noise(&ctx, &z, None)?;
        x.value().first_value().map(f64::from)
    }
}

/// Flow training steps and sampling for nflows' three peer configurations (5×128, 10×256,
/// 15×256, 2 blocks, batch 256): rows in ms.
pub fn flow_step_suite(device: Device, iters: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for (layers, hidden) in [(5, 128), (10, 256), (15, 256)] {
        let mut step = FlowStep::new(layers, hidden, 2, 256, device)?;
        let t = time_ms(2, iters, || step.step().map(|_| ()))?;
        rows.push(row(
            &format!("flow train step {layers}x{hidden}x2 b256"),
            device,
            &t,
            None,
        ));
        let t = time_ms(1, iters, || step.sample(256, 5).map(|_| ()))?;
        rows.push(row(
            &format!("flow sample {layers}x{hidden}x2 b256"),
            device,
            &t,
            None,
        ));
    }
    Ok(rows)
}

/// Generation throughput of every model family's benchmark model (for flows a freshly
/// initialised 10-layer RQS flow, 8 bins, ResidualNet 128 × 2, 30 particles — speed does not
/// depend on training) for batches of 10,000 jets, through the Rust [`Generator`] and
/// through the C API (`jetgen_model_load` + `jetgen_model_generate` on the same checkpoint),
/// interleaved. Rows report ms per batch; the C/Rust overhead is the ratio of the medians.
///
/// [`Generator`]: jetgen::runs::generator::Generator
pub fn generation_suite(device: Device, iters: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for family in jetgen::runs::registry::FAMILIES {
        for model in family.bench_models {
            rows.extend(generation_rows(family.name, model, device, iters)?);
        }
    }
    Ok(rows)
}

fn generation_rows(
    family: &str,
    bench: &jetgen::runs::registry::BenchModel,
    device: Device,
    iters: usize,
) -> Result<Vec<BenchRow>> {
    let dir =
        std::env::temp_dir().join(format!("jetgen-bench-gen-{family}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ckpt = dir.join("checkpoint.safetensors");
    (bench.write)(&ckpt, device)?;
    let model = jetgen::runs::load_generator(&ckpt, device)?;
    let p = model.particles();
    let path = std::ffi::CString::new(ckpt.to_string_lossy().as_bytes())
        .map_err(|e| Error::invalid(e.to_string()))?;
    let code = match device {
        Device::Cpu => jetgen::ffi::JETGEN_DEVICE_CPU,
        Device::Cuda(n) => n as std::ffi::c_int,
    };
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated path and out pointer.
    let status = unsafe { jetgen::ffi::jetgen_model_load(path.as_ptr(), code, &mut handle) };
    if status != jetgen::ffi::JetgenStatus::Ok {
        return Err(Error::invalid(format!(
            "C API could not load the bench model: {status:?}"
        )));
    }
    let n = 10_000;
    let (mut parts, mut jets) = (vec![0f32; n * p * 4], vec![0f32; n * 4]);
    let (mut rust_t, mut c_t) = (Vec::new(), Vec::new());
    // the model is thread-safe (see ffi); pass its address into the pool's closure
    let addr = handle as usize;
    let run = || -> Result<()> {
        let handle = addr as *mut jetgen::ffi::JetgenModel;
        for k in 0..iters + 1 {
            let time_rust = || -> Result<f64> {
                let t = Instant::now();
                model.generate(n, k as u64)?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            };
            let mut time_c = || -> Result<f64> {
                let t = Instant::now();
                // SAFETY: the buffers hold n·P·4 and n·4 floats; handle is a loaded model.
                let s = unsafe {
                    jetgen::ffi::jetgen_model_generate(
                        handle,
                        n,
                        k as u64,
                        parts.as_mut_ptr(),
                        parts.len(),
                        jets.as_mut_ptr(),
                        jets.len(),
                    )
                };
                if s != jetgen::ffi::JetgenStatus::Ok {
                    return Err(Error::invalid(format!(
                        "jetgen_model_generate failed: {s:?}"
                    )));
                }
                Ok(t.elapsed().as_secs_f64() * 1e3)
            };
            // alternate which goes first, so neither always runs on a warmer cache
            let (rust, c) = if k % 2 == 0 {
                let r = time_rust()?;
                (r, time_c()?)
            } else {
                let c = time_c()?;
                (time_rust()?, c)
            };
            if k > 0 {
                rust_t.push(rust);
                c_t.push(c);
            }
        }
        Ok(())
    };
    let result = jetgen::on_thread_pool(run);
    // SAFETY: handle came from jetgen_model_load and is not used afterwards.
    unsafe { jetgen::ffi::jetgen_model_free(handle) };
    std::fs::remove_dir_all(&dir).ok();
    result?;
    rust_t.sort_by(f64::total_cmp);
    c_t.sort_by(f64::total_cmp);
    let what = format!("generate 10k jets, {}", bench.name);
    Ok(vec![
        row(&format!("{what}, Rust API"), device, &rust_t, None),
        row(&format!("{what}, C API"), device, &c_t, None),
    ])
}

/// One VAE training step as `benches/peers/torch_vae.py` times it: batch 100, latent 20,
/// MLP encoder/decoder with hidden 512, 256 (ReLU), Adam(lr 1e-3); zero_grad + forward
/// (reparameterised) + recon + 0.1·KL + backward + step. `Chamfer`: 100 Cartesian particles,
/// Chamfer of the standardised clouds; `Sinkhorn`: 30 relative particles, the EMD-VAE's
/// Sinkhorn (Euclidean (η, φ) cost, ε 0.01 reached by ε-scaling 0.63 from the diameter,
/// 10 iterations at ε, pT-fraction weights), loss = EMD/(2β²) + KL with β = 0.1.
pub struct VaeStep {
    pub model: jetgen::models::vae::TrainedVae,
    pub opt: Adam,
    pub batch: jetgen::models::vae::loss::LossBatch,
    pub rng: Rng,
}

impl VaeStep {
    /// A fresh model and a fixed batch of synthetic jets (`sinkhorn`: EMD-VAE, else
    /// Chamfer-VAE).
    pub fn new(sinkhorn: bool, device: Device) -> Result<VaeStep> {
        use jetgen::models::flow_data::Standardizer;
        use jetgen::models::vae::data::Representation;
        use jetgen::models::vae::loss::{LossBatch, LossSpec};
        use jetgen::models::vae::network::{JetVae, VaeConfig};
        use jetgen::models::vae::{ReconLoss, TrainedVae, VaeSettings};
        let (p, repr, loss) = if sinkhorn {
            (30, Representation::Relative, ReconLoss::Sinkhorn)
        } else {
            (100, Representation::Cartesian, ReconLoss::Chamfer)
        };
        let settings = VaeSettings {
            loss,
            ..Default::default()
        };
        let mut rng = Rng::new(5);
        let b = 100;
        // synthetic jets: Cartesian momenta ~ N(0, 50 GeV); relative (η, φ) ~ N(0, 0.2),
        // pT fractions ~ |N(0, 0.05)|
        let raw: Vec<f32> = rng
            .normal(&[b * p * 3], 0.0, 1.0, Device::Cpu)?
            .to_vec()?
            .chunks_exact(3)
            .flat_map(|r| {
                if sinkhorn {
                    [0.2 * r[0], 0.2 * r[1], 0.05 * r[2].abs() + 1e-4]
                } else {
                    [50.0 * r[0], 50.0 * r[1], 50.0 * r[2]]
                }
            })
            .collect();
        let std = if sinkhorn {
            Standardizer {
                mean: vec![0.0, 0.0, 0.04],
                std: vec![0.2, 0.2, 0.03],
            }
        } else {
            Standardizer {
                mean: vec![0.0; 3],
                std: vec![50.0; 3],
            }
        };
        let spec = LossSpec::new(&settings, repr, p, std, (0.1, 0.05))?;
        let batch = LossBatch::new(raw, vec![1.0; b * p], p, &spec, device)?;
        let config = VaeConfig {
            particles: p,
            latent: 20,
            hidden: vec![512, 256],
            variational: true,
        };
        let vae = JetVae::new(config, &mut rng, device)?;
        let opt = Adam::new(
            vae.params(),
            AdamConfig {
                lr: 1e-3,
                ..Default::default()
            },
        );
        let model = TrainedVae {
            vae,
            spec,
            beta: 0.1,
            threshold: 0.0,
            pt_sum: None,
            latent_mean: vec![0.0; 20],
            latent_std: vec![1.0; 20],
            prior: None,
        };
        Ok(VaeStep {
            model,
            opt,
            batch,
            rng,
        })
    }

    /// One training step; returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        use jetgen::models::vae::loss::recon_per_jet;
        use jetgen::models::vae::network::{kl_mean, reparameterize};
        use jetgen::models::vae::training::total_loss;
        self.opt.zero_grad();
        let ctx = Ctx::new(true, 0);
        let x = ctx.tape.constant(self.batch.x.clone());
        let enc = self.model.vae.encode(&ctx, &x)?;
        let lv = enc
            .logvar
            .as_ref()
            .ok_or_else(|| Error::invalid("not a VAE"))?;
        let eps = ctx.tape.constant(self.rng.normal(
            &[self.batch.len(), 20],
            0.0,
            1.0,
            self.batch.x.device(),
        )?);
        let z = reparameterize(&enc.mu, lv, &eps)?;
        let kl = kl_mean(&enc.mu, lv)?;
        let xhat = self.model.vae.decode(&ctx, &z)?;
        let recon = recon_per_jet(&ctx, &self.model.spec, &self.batch, &xhat)?.mean_all()?;
        let loss = total_loss(self.model.spec.loss, true, &recon, Some(&kl), 0.1)?;
        loss.backward()?;
        self.opt.step()?;
        loss.value().item()
    }
}

/// The Chamfer-VAE and Sinkhorn-EMD-VAE training steps (batch 100): rows in ms.
pub fn vae_step_suite(device: Device, iters: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for (sinkhorn, name) in [
        (false, "chamfer-vae train step P100 b100 (300-512-256-20)"),
        (true, "sinkhorn-emd-vae train step P30 b100 (90-512-256-20)"),
    ] {
        let mut step = VaeStep::new(sinkhorn, device)?;
        let t = time_ms(2, iters, || step.step().map(|_| ()))?;
        rows.push(row(name, device, &t, None));
    }
    Ok(rows)
}

/// One MPGAN training step as `benches/peers/torch_mpgan.py` times it: MPGAN's gluon
/// configuration (30 particles, node features 32, 2 message-passing layers, edge MLP
/// 96-160-192, node MLP 256-256, LeakyReLU 0.2, D dropout 0.5, noise σ 0.2, mask_c
/// multiplicities), LSGAN loss, RMSprop lr 3e-5 (D) / 1e-5 (G); one discriminator step
/// (real + detached fake batch) then one generator step, on synthetic real jets.
pub struct MpganStep {
    pub model: jetgen::models::gan::particle_model::TrainedParticleGan,
    pub critic: jetgen::models::gan::mp::MpCritic,
    pub opt_g: jetgen::nn::RmsProp,
    pub opt_d: jetgen::nn::RmsProp,
    pub real: Tensor,
    pub batch: usize,
    pub rng: Rng,
    pub device: Device,
}

impl MpganStep {
    /// A fresh MPGAN and a fixed batch of `batch` synthetic jets: multiplicity uniform in
    /// 10..=30, normalised (η, φ) ~ N(0, 0.3), pT feature ~ U(−0.5, 0.5), mask ±0.5.
    pub fn new(batch: usize, device: Device) -> Result<MpganStep> {
        use jetgen::models::gan::mp::{MpConfig, MpCritic};
        use jetgen::models::gan::particle_model::TrainedParticleGan;
        use jetgen::models::gan::particles::Multiplicity;
        use jetgen::nn::{RmsProp, RmsPropConfig};
        let p = 30;
        let mut rng = Rng::new(6);
        let config = MpConfig {
            node_features: 32,
            edge: vec![96, 160, 192],
            node: vec![256, 256],
            iters: 2,
        };
        let mut counts = vec![0f32; p + 1];
        counts[10..=p].iter_mut().for_each(|c| *c = 1.0);
        let model = TrainedParticleGan::new(
            &config,
            None,
            Multiplicity { counts },
            0.2,
            "mp-mp-ls".into(),
            &mut rng,
            device,
        )?;
        let critic = MpCritic::new(&config, 1, 0.5, &mut rng, device)?;
        let noise = rng
            .normal(&[batch * p * 4], 0.0, 1.0, Device::Cpu)?
            .to_vec()?;
        let mut real = Vec::with_capacity(batch * p * 4);
        for b in 0..batch {
            let n = 10 + rng.below(21);
            for i in 0..p {
                let r = &noise[(b * p + i) * 4..(b * p + i + 1) * 4];
                real.extend(if i < n {
                    [0.3 * r[0], 0.3 * r[1], (0.3 * r[2]).clamp(-0.5, 0.5), 0.5]
                } else {
                    [0.0, 0.0, -0.5, -0.5]
                });
            }
        }
        let rms = |lr: f64| RmsPropConfig {
            lr,
            ..Default::default()
        };
        Ok(MpganStep {
            opt_g: RmsProp::new(model.params(), rms(1e-5)),
            opt_d: RmsProp::new(critic.params(), rms(3e-5)),
            model,
            critic,
            real: Tensor::from_slice(&real, &[batch, p, 4], device)?,
            batch,
            rng,
            device,
        })
    }

    /// One discriminator step and one generator step; returns (D loss, G loss).
    pub fn step(&mut self) -> Result<(f64, f64)> {
        use jetgen::models::gan::losses::{ls_discriminator, ls_generator};
        use jetgen::models::gan::nets::mask_of;
        use jetgen::nn::Optimizer;
        let (b, dev) = (self.batch, self.device);
        // discriminator
        self.opt_d.zero_grad();
        let ctx = Ctx::new(true, self.rng.next_u64());
        let gctx = Ctx::new(true, 0);
        let fake = self.model.sample(&gctx, b, &mut self.rng, dev)?;
        let fake = ctx.tape.constant(fake.x.value().clone());
        let real = ctx.tape.constant(self.real.clone());
        let d_real = self.critic.forward(&ctx, &real, &mask_of(&real)?)?;
        let d_fake = self.critic.forward(&ctx, &fake, &mask_of(&fake)?)?;
        let d_loss = ls_discriminator(&d_real, &d_fake)?;
        d_loss.backward()?;
        self.opt_d.step()?;
        // generator
        self.opt_g.zero_grad();
        let ctx = Ctx::new(true, self.rng.next_u64());
        let fake = self.model.sample(&ctx, b, &mut self.rng, dev)?;
        let g_loss = ls_generator(&self.critic.forward(&ctx, &fake.x, &fake.mask)?)?;
        g_loss.backward()?;
        self.opt_d.zero_grad();
        self.opt_g.step()?;
        Ok((d_loss.value().item()?, g_loss.value().item()?))
    }
}

/// MPGAN training steps (one D + one G step) at MPGAN's batch 256 and at 32, at most 10
/// timed runs each: rows in ms.
pub fn mpgan_step_suite(device: Device, iters: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for batch in [32, 256] {
        let mut step = MpganStep::new(batch, device)?;
        // a step at batch 256 takes seconds on a CPU: at most 10 timed runs (the peer's default)
        let t = time_ms(1, iters.clamp(1, 10), || step.step().map(|_| ()))?;
        rows.push(row(
            &format!("mpgan train step (D+G) P30 b{batch} (fe 96-160-192, fn 256-256)"),
            device,
            &t,
            None,
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod mpgan_step_tests {
    #[allow(unused_imports)] // the criterion benches include this file without its tests
    use super::*;

    /// The benchmarked step runs at a tiny batch and gives LSGAN losses in [0, 2].
    #[test]
    fn mpgan_step_runs_at_a_tiny_batch() {
        let mut s = MpganStep::new(3, Device::Cpu).unwrap();
        for _ in 0..2 {
            let (d, g) = s.step().unwrap();
            assert!(
                (0.0..=2.0).contains(&d) && (0.0..=1.0).contains(&g),
                "{d} {g}"
            );
        }
    }
}
