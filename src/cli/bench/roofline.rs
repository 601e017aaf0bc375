//! The machine model `jetgen bench roofline` measures and `jetgen bench kernels` prints: peak
//! f32 multiply-add throughput (register-resident FMA chains on the lanes in use), achievable
//! memory bandwidth (a STREAM triad over buffers far larger than the last-level cache) and the
//! throughput of our lane `exp` and `ln`, for one thread and for all of the pool's threads.
//! With a kernel's counted work ([`crate::ops::work`]) it gives a lower bound on the kernel's
//! time; the tables print the bound and the measured time's fraction of it.
//!
//! For CUDA rows the same counts are divided by the published rates of the GPU
//! ([`GpuModel`]), so the first GPU run reports fractions of its bound too.

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

use crate::ops::work::Work;
use crate::simd::{Isa, Lanes};

/// Measured rates of this machine (per second).
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    /// f32 lanes per vector on the path in use (8 on both paths).
    pub lanes: usize,
    /// The SIMD path the kernels take (`AVX2 + FMA` or `portable`).
    pub isa: Isa,
    /// Threads of the "all" figures.
    pub threads: usize,
    /// f32 operations/s (a multiply-add is 2) on one thread, and on all threads.
    pub flops_one: f64,
    pub flops_all: f64,
    /// STREAM-triad bytes/s (a[i] = b[i] + s·c[i], 12 bytes per f32 element) on all threads.
    pub bandwidth: f64,
    /// Lane exp and ln evaluations/s on one thread, and exp on all threads.
    pub exp_one: f64,
    pub ln_one: f64,
    pub exp_all: f64,
    /// Where the CPU has AVX-512F: f32 operations/s of 16-lane FMA chains on one thread and
    /// on all threads — the peak of the packed-panel GEMM's kernel (`ops::panel_gemm`),
    /// which runs on 16 lanes there; the other kernels' bounds use the 8-lane figures.
    pub wide_flops: Option<(f64, f64)>,
}

impl Machine {
    /// Measure the model on the current thread pool (~1 s).
    pub fn measure() -> Machine {
        let isa = crate::simd::isa();
        let threads = rayon::current_num_threads();
        let flops_one = best_rate(|| fma_chains(isa, FMA_ITERS), FMA_FLOPS);
        // (`broadcast` runs the chains once on every thread of the pool, at the same time;
        // a parallel iterator may run two items on one thread while another sleeps, which
        // measured half the peak)
        let flops_all = best_rate(
            || {
                rayon::broadcast(|_| fma_chains(isa, FMA_ITERS))
                    .iter()
                    .sum::<f32>()
            },
            FMA_FLOPS * threads as f64,
        );
        let bandwidth = stream_triad();
        let mut buf = vec![0f32; TRANSCENDENTAL_BUFFER];
        let exp_one = best_rate(|| lane_exp(isa, &mut buf, false), TRANSCENDENTAL_COUNT);
        let ln_one = best_rate(|| lane_exp(isa, &mut buf, true), TRANSCENDENTAL_COUNT);
        let exp_all = best_rate(
            || {
                rayon::broadcast(|_| lane_exp(isa, &mut vec![0f32; TRANSCENDENTAL_BUFFER], false))
                    .iter()
                    .sum::<f32>()
            },
            TRANSCENDENTAL_COUNT * threads as f64,
        );
        let wide_flops = wide::available(isa).then(|| {
            let one = best_rate(wide::fma_chains_512, FMA_FLOPS * 2.0);
            let all = best_rate(
                || {
                    rayon::broadcast(|_| wide::fma_chains_512())
                        .iter()
                        .sum::<f32>()
                },
                FMA_FLOPS * 2.0 * threads as f64,
            );
            (one, all)
        });
        Machine {
            lanes: crate::simd::WIDTH,
            isa,
            threads,
            flops_one,
            flops_all,
            bandwidth,
            exp_one,
            ln_one,
            exp_all,
            wide_flops,
        }
    }

    /// The lower bound on the time of `work` on all threads, in seconds.
    pub fn bound_s(&self, work: &Work) -> f64 {
        bound(work, self.flops_all, self.exp_all, self.bandwidth)
    }

    /// The model as text lines for the tables' header.
    pub fn describe(&self) -> String {
        let wide = match self.wide_flops {
            Some((one, all)) => format!(
                "; AVX-512 FMA peak (the GEMM kernel's, 16 lanes) {:.1} GFLOP/s per thread, \
                 {:.1} all threads",
                one / 1e9,
                all / 1e9
            ),
            None => String::new(),
        };
        let text = format!(
            "machine model ({}, {} f32 lanes, {} threads): FMA peak {:.1} GFLOP/s per thread, \
             {:.1} all threads; STREAM triad {:.1} GB/s; lane exp {:.2} G/s per thread ({:.2} \
             all), ln {:.2} G/s per thread",
            self.isa,
            self.lanes,
            self.threads,
            self.flops_one / 1e9,
            self.flops_all / 1e9,
            self.bandwidth / 1e9,
            self.exp_one / 1e9,
            self.exp_all / 1e9,
            self.ln_one / 1e9
        );
        text + &wide
    }

    /// The model as JSON.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "isa": self.isa.name(), "lanes": self.lanes, "threads": self.threads,
            "flops_one": self.flops_one, "flops_all": self.flops_all,
            "bandwidth_bytes_per_s": self.bandwidth, "exp_one": self.exp_one,
            "ln_one": self.ln_one, "exp_all": self.exp_all,
            "wide_flops_one": self.wide_flops.map(|w| w.0),
            "wide_flops_all": self.wide_flops.map(|w| w.1),
        })
    }
}

/// Published rates of a GPU (per second), for the bound of CUDA timings.
#[derive(Clone, Copy, Debug)]
pub struct GpuModel {
    pub name: &'static str,
    /// FP32 operations/s (FMA = 2), non-tensor-core.
    pub flops: f64,
    /// HBM bandwidth, bytes/s.
    pub bandwidth: f64,
    /// Special-function-unit evaluations/s (exp2, lg2, rcp, rsqrt: 16 per SM per clock).
    pub transcendentals: f64,
}

impl GpuModel {
    /// The model for a device whose name contains H100 or H200 (SXM figures: 132 SMs at
    /// 1.98 GHz boost, 128 FP32 lanes each; H100 3.35 TB/s HBM3, H200 4.8 TB/s HBM3e).
    pub fn for_device(name: &str) -> Option<GpuModel> {
        let sms_clock = 132.0 * 1.98e9;
        let (name, bandwidth) = if name.contains("H200") {
            ("H200 SXM", 4.8e12)
        } else if name.contains("H100") {
            ("H100 SXM", 3.35e12)
        } else {
            return None;
        };
        Some(GpuModel {
            name,
            flops: sms_clock * 128.0 * 2.0,
            bandwidth,
            transcendentals: sms_clock * 16.0,
        })
    }

    /// The lower bound on the time of `work`, in seconds.
    pub fn bound_s(&self, work: &Work) -> f64 {
        bound(work, self.flops, self.transcendentals, self.bandwidth)
    }
}

/// max(ops / peak, transcendentals / rate, bytes / bandwidth).
fn bound(work: &Work, flops: f64, transcendentals: f64, bandwidth: f64) -> f64 {
    (work.flops / flops)
        .max(work.transcendentals / transcendentals)
        .max(work.bytes / bandwidth)
}

/// Iterations of [`fma_chains`] per measurement, and the operations they do.
const FMA_ITERS: usize = 1 << 22;
const CHAINS: usize = 12;
const FMA_FLOPS: f64 = (FMA_ITERS * CHAINS * 8 * 2) as f64;

/// Lane evaluations per transcendental measurement: a buffer that stays in L1, swept often.
const TRANSCENDENTAL_BUFFER: usize = 2048;
const TRANSCENDENTAL_SWEEPS: usize = 2000;
const TRANSCENDENTAL_COUNT: f64 = (TRANSCENDENTAL_BUFFER * TRANSCENDENTAL_SWEEPS) as f64;

/// The best rate (`work` per second) of five timed runs of `f` after one warm-up.
fn best_rate<R>(mut f: impl FnMut() -> R, work: f64) -> f64 {
    black_box(f());
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    work / best
}

/// The 16-lane FMA peak where the CPU has AVX-512F.
mod wide {
    use super::{black_box, Isa, CHAINS, FMA_ITERS};

    /// True on the AVX2 + FMA path of a CPU that also has AVX-512F (where the packed-panel
    /// GEMM takes its 16-lane kernel).
    pub(super) fn available(isa: Isa) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            isa.is_avx2_fma() && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = isa;
            false
        }
    }

    /// [`CHAINS`] chains of 16-lane multiply-adds, [`FMA_ITERS`] steps each (call only where
    /// [`available`]).
    pub(super) fn fma_chains_512() -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            assert!(std::arch::is_x86_feature_detected!("avx512f"));
            // SAFETY: the CPU has AVX-512F (asserted).
            unsafe { chains() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        0.0
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn chains() -> f32 {
        use std::arch::x86_64::*;
        let (a, b) = (
            _mm512_set1_ps(black_box(0.999_99)),
            _mm512_set1_ps(black_box(1e-6)),
        );
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for (k, c) in acc.iter_mut().enumerate() {
            *c = _mm512_set1_ps(1.0 + k as f32 * 1e-3);
        }
        for _ in 0..FMA_ITERS {
            for c in acc.iter_mut() {
                *c = _mm512_fmadd_ps(*c, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for c in acc {
            sum = _mm512_add_ps(sum, c);
        }
        _mm512_reduce_add_ps(sum)
    }
}

crate::simd::dispatch! {
    /// [`CHAINS`] independent chains of lane multiply-adds, `iters` steps each: enough
    /// chains in flight to cover the FMA latency on two ports, all in registers.
    fn fma_chains(isa: Isa, iters: usize) -> f32 = fma_chains_lanes::<lanes>;
}

#[inline(always)]
fn fma_chains_lanes<V: Lanes>(iters: usize) -> f32 {
    let (a, b) = (V::splat(black_box(0.999_99)), V::splat(black_box(1e-6)));
    let mut acc = [V::splat(1.0); CHAINS];
    for (k, c) in acc.iter_mut().enumerate() {
        *c = V::splat(1.0 + k as f32 * 1e-3);
    }
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = c.mul_add(a, b);
        }
    }
    let mut sum = V::zero();
    for c in acc {
        sum += c;
    }
    sum.to_array().iter().sum()
}

crate::simd::dispatch! {
    /// [`TRANSCENDENTAL_SWEEPS`] sweeps of lane `exp` (or `ln`) over `buf` in place, values
    /// kept in range so that every evaluation is a normal one.
    fn lane_exp(isa: Isa, buf: &mut [f32], ln: bool) -> f32 = lane_exp_lanes::<lanes>;
}

#[inline(always)]
fn lane_exp_lanes<V: Lanes>(buf: &mut [f32], ln: bool) -> f32 {
    for (i, v) in buf.iter_mut().enumerate() {
        *v = 0.5 + (i % 97) as f32 * 0.01;
    }
    let (scale, shift) = (V::splat(0.25), V::splat(1.0));
    for _ in 0..TRANSCENDENTAL_SWEEPS {
        for chunk in buf.chunks_exact_mut(8) {
            let v = V::load(chunk);
            // exp(v/4) and ln(v + 1) map [0.5, 2) into itself closely enough to stay normal
            let r = if ln {
                (v + shift).ln()
            } else {
                (v * scale).exp()
            };
            r.min(V::splat(2.0)).max(V::splat(0.5)).store(chunk);
        }
    }
    buf.iter().sum()
}

/// STREAM triad bandwidth on all threads: a = b + s·c over 2^24 f32 per array (3 × 64 MiB,
/// beyond any last-level cache), counted as 12 bytes per element (the write-allocate read of
/// `a` is not counted, as in STREAM). Best of five after a warm-up.
fn stream_triad() -> f64 {
    const LEN: usize = 1 << 24;
    let b = vec![1.0f32; LEN];
    let c = vec![2.0f32; LEN];
    let mut a = vec![0.0f32; LEN];
    let s = black_box(3.0f32);
    best_rate(
        || {
            a.par_chunks_mut(1 << 16)
                .zip(b.par_chunks(1 << 16))
                .zip(c.par_chunks(1 << 16))
                .for_each(|((a, b), c)| {
                    for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + s * c;
                    }
                });
            a[LEN / 2]
        },
        (LEN * 12) as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_slowest_of_the_three_resources() {
        let w = Work {
            flops: 1e9,
            transcendentals: 1e6,
            bytes: 1e9,
        };
        // 1 GFLOP at 100 GFLOP/s = 10 ms; 1 GB at 10 GB/s = 100 ms; 1 M exp at 1 G/s = 1 ms
        assert!((bound(&w, 1e11, 1e9, 1e10) - 0.1).abs() < 1e-12);
        let h200 = GpuModel::for_device("NVIDIA H200").unwrap();
        assert!((h200.flops / 1e12 - 66.9).abs() < 0.1, "{}", h200.flops);
        assert!(GpuModel::for_device("NVIDIA A100").is_none());
    }

    #[test]
    fn the_measured_rates_are_positive_and_ordered() {
        let m = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(Machine::measure);
        for r in [
            m.flops_one,
            m.flops_all,
            m.bandwidth,
            m.exp_one,
            m.ln_one,
            m.exp_all,
        ] {
            assert!(r.is_finite() && r > 0.0, "{m:?}");
        }
        // one lane FMA per op is the least a vector FMA path does per cycle: > 1 GFLOP/s
        assert!(m.flops_one > 1e9, "{m:?}");
        // 16-lane chains exist exactly where the GEMM takes its AVX-512 kernel
        assert_eq!(m.wide_flops.is_some(), wide::available(m.isa));
        if let Some((one, all)) = m.wide_flops {
            assert!(one > 1e9 && all > 1e9, "{m:?}");
        }
    }
}
