//! Criterion benches of the custom kernels at the sizes of ../shared/peers/bench_kernels.py:
//! Chamfer (B ∈ {256, 4096}, N = M ∈ {30, 150}, D = 3), Sinkhorn (B = 256 pairs of 30
//! points, 100 iterations, ε = 0.01), RQS (1024 × 90, K = 8); forward + backward each, on
//! the CPU and, when present, on CUDA. `jetgen bench kernels --json F` gives the same
//! numbers in the machine-readable schema; benches/RESULTS.md has the comparison with peers.

#[path = "../src/cli/bench/workloads.rs"]
mod workloads;

use criterion::{criterion_group, criterion_main, Criterion};
use jetgen::ops::chamfer::{chamfer, chamfer_backward, PointReduction};
use jetgen::ops::rqs::{rqs, rqs_backward, RqsConfig};
use jetgen::ops::sinkhorn::{sinkhorn, sinkhorn_backward, SinkhornConfig};
use jetgen::{Rng, Tensor};

fn bench_chamfer(c: &mut Criterion) {
    // as the CLI does: keep freed tensor memory (see jetgen::malloc_tuning)
    jetgen::malloc_tuning::retain_freed_memory();
    for dev in workloads::bench_devices() {
        let mut g = c.benchmark_group(format!("chamfer_fwd_bwd/{dev}"));
        for (b, n) in [(256, 30), (4096, 30), (256, 150)] {
            let mut rng = Rng::new(1);
            let x = rng.normal(&[b, n, 3], 0.0, 1.0, dev).unwrap();
            let y = rng.normal(&[b, n, 3], 0.0, 1.0, dev).unwrap();
            let ones = Tensor::full(&[b], 1.0, dev).unwrap();
            g.bench_function(format!("B{b}_N{n}"), |bench| {
                bench.iter(|| {
                    let out = chamfer(&x, &y, None, None, PointReduction::Sum).unwrap();
                    chamfer_backward(&x, &y, &out, PointReduction::Sum, &ones)
                        .unwrap()
                        .0
                        .first_value()
                        .unwrap()
                })
            });
        }
        g.finish();
    }
}

fn bench_sinkhorn(c: &mut Criterion) {
    for dev in workloads::bench_devices() {
        let mut rng = Rng::new(2);
        let x = rng.uniform(&[256, 30, 3], 0.0, 1.0, dev).unwrap();
        let y = rng.uniform(&[256, 30, 3], 0.0, 1.0, dev).unwrap();
        let w = Tensor::full(&[256, 30], 1.0 / 30.0, dev).unwrap();
        let ones = Tensor::full(&[256], 1.0, dev).unwrap();
        for debias in [false, true] {
            let cfg = SinkhornConfig {
                debias,
                ..SinkhornConfig::new(0.01, 100)
            };
            c.bench_function(
                &format!("sinkhorn_fwd_bwd/{dev}/B256_N30_iters100_debias{debias}"),
                |bench| {
                    bench.iter(|| {
                        let out = sinkhorn(&x, &y, &w, &w, &cfg).unwrap();
                        sinkhorn_backward(&x, &y, &w, &w, &out, &cfg, debias, &ones).unwrap()[0]
                            .first_value()
                            .unwrap()
                    })
                },
            );
        }
    }
}

fn bench_rqs(c: &mut Criterion) {
    for dev in workloads::bench_devices() {
        let mut rng = Rng::new(3);
        let cfg = RqsConfig::new(8, 3.0);
        let x = rng.normal(&[1024, 90], 0.0, 1.5, dev).unwrap();
        let uw = rng.normal(&[1024, 90, 8], 0.0, 1.0, dev).unwrap();
        let uh = rng.normal(&[1024, 90, 8], 0.0, 1.0, dev).unwrap();
        let ud = rng.normal(&[1024, 90, 7], 0.0, 1.0, dev).unwrap();
        let g = Tensor::full(&[2, 1024, 90], 1.0, dev).unwrap();
        c.bench_function(&format!("rqs_fwd_bwd/{dev}/1024x90_K8"), |bench| {
            bench.iter(|| {
                rqs(&x, &uw, &uh, &ud, &cfg, false).unwrap();
                rqs_backward(&x, &uw, &uh, &ud, &cfg, false, &g).unwrap()[0]
                    .first_value()
                    .unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_chamfer, bench_sinkhorn, bench_rqs
}
criterion_main!(benches);
