//! Criterion benches of the engine: GEMM and one MLP training step (forward, backward,
//! Adam), the Chamfer- and Sinkhorn-EMD-VAE training steps, on the CPU and, when a GPU is present, on CUDA. Compare with PyTorch by running
//! `benches/peers/torch_engine.py` on the same machine (see benches/RESULTS.md).

#[path = "../src/cli/bench/workloads.rs"]
mod workloads;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use workloads::{GemmCase, MlpStep, VaeStep};

fn gemm(c: &mut Criterion) {
    // as the CLI does: keep freed tensor memory (see jetgen::malloc_tuning)
    jetgen::malloc_tuning::retain_freed_memory();
    for dev in workloads::bench_devices() {
        let mut g = c.benchmark_group(format!("sgemm/{dev}"));
        for (m, k, n) in [(256, 256, 256), (1024, 256, 256)] {
            let case = GemmCase::new(m, k, n, dev).unwrap();
            g.throughput(Throughput::Elements(case.flops() as u64));
            g.bench_function(format!("{m}x{k}x{n}"), |b| {
                b.iter(|| case.run().unwrap().first_value().unwrap())
            });
        }
        g.finish();
    }
}

fn mlp_step(c: &mut Criterion) {
    for dev in workloads::bench_devices() {
        let mut step = MlpStep::new(&[90, 256, 256, 90], 256, dev).unwrap();
        c.bench_function(&format!("mlp_step/{dev}/90-256-256-90_b256"), |b| {
            b.iter(|| step.step().unwrap())
        });
    }
}

fn vae_step(c: &mut Criterion) {
    for dev in workloads::bench_devices() {
        for (sinkhorn, name) in [
            (false, "chamfer_p100_b100"),
            (true, "sinkhorn_emd_p30_b100"),
        ] {
            let mut step = VaeStep::new(sinkhorn, dev).unwrap();
            c.bench_function(&format!("vae_step/{dev}/{name}"), |b| {
                b.iter(|| step.step().unwrap())
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = gemm, mlp_step, vae_step
}
criterion_main!(benches);
