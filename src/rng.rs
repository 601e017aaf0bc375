//! Seeded, counter-based random numbers that are identical on CPU and CUDA.
//!
//! Element `i` of a draw with key `(seed, offset)` is a pure function of `(seed, offset + i)`
//! (a SplitMix64 hash), so any thread on any device computes the same number without shared
//! state. Uniforms are bit-identical across devices; normals use Box–Muller evaluated in f64
//! and rounded to f32, so they agree to the last bit except where the two libm's `log`/`cos`
//! differ in the final f64 ulp (then by at most one f32 ulp).

use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser: a bijective 64-bit mix.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64 random bits for counter `counter` under `seed`.
#[inline]
pub fn bits(seed: u64, counter: u64) -> u64 {
    mix64(mix64(seed).wrapping_add(counter.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// Uniform in [0, 1) with 24 random bits (exact in f32).
#[inline]
pub fn uniform_at(seed: u64, counter: u64) -> f32 {
    (bits(seed, counter) >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Standard normal for element `counter` (Box–Muller on counters 2i, 2i+1, in f64).
#[inline]
pub fn normal_at(seed: u64, counter: u64) -> f64 {
    let u1 = ((bits(seed, 2 * counter) >> 11) + 1) as f64 * (1.0 / 9_007_199_254_740_992.0); // (0, 1]
    let u2 = (bits(seed, 2 * counter + 1) >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0); // [0, 1)
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A stream of random tensors: each draw consumes as many counters as it has elements, so
/// successive draws differ and the whole sequence is fixed by the seed.
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    offset: u64,
}

impl Rng {
    /// A generator for `seed`, at counter 0.
    pub fn new(seed: u64) -> Self {
        Rng { seed, offset: 0 }
    }

    /// The seed this generator was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn take(&mut self, n: usize) -> u64 {
        let start = self.offset;
        self.offset = self.offset.wrapping_add(n as u64);
        start
    }

    /// A fresh 64-bit integer (host-side choices: shuffles, splits).
    pub fn next_u64(&mut self) -> u64 {
        let c = self.take(1);
        bits(self.seed, c)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Shuffle `items` in place (Fisher–Yates from the back: position i swaps with a uniform
    /// j ∈ [0, i]), consuming one draw per position after the first. The only shuffle in
    /// jetgen: splits, random coupling masks and batches all go through it.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// A derived generator with an independent stream (for per-module seeding).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// `U[lo, hi)` tensor of `shape` on `device`.
    pub fn uniform(&mut self, shape: &[usize], lo: f32, hi: f32, device: Device) -> Result<Tensor> {
        let n = crate::shape::numel(shape);
        let start = self.take(n);
        match device {
            Device::Cpu => {
                let data = (0..n as u64)
                    .map(|i| lo + (hi - lo) * uniform_at(self.seed, start + i))
                    .collect();
                Tensor::from_cpu_vec::<f32>(data, shape)
            }
            Device::Cuda(i) => {
                crate::ops::random::cuda_random(i, shape, self.seed, start, false, lo, hi)
            }
        }
    }

    /// `N(mean, std²)` tensor of `shape` on `device`.
    pub fn normal(
        &mut self,
        shape: &[usize],
        mean: f32,
        std: f32,
        device: Device,
    ) -> Result<Tensor> {
        let n = crate::shape::numel(shape);
        let start = self.take(n);
        match device {
            Device::Cpu => {
                let data = (0..n as u64)
                    .map(|i| (mean as f64 + std as f64 * normal_at(self.seed, start + i)) as f32)
                    .collect();
                Tensor::from_cpu_vec::<f32>(data, shape)
            }
            Device::Cuda(i) => {
                crate::ops::random::cuda_random(i, shape, self.seed, start, true, mean, std)
            }
        }
    }

    /// f64 CPU normal tensor (references and gradient checks).
    pub fn normal_f64(&mut self, shape: &[usize]) -> Result<Tensor> {
        let n = crate::shape::numel(shape);
        let start = self.take(n);
        let data = (0..n as u64)
            .map(|i| normal_at(self.seed, start + i))
            .collect();
        Tensor::from_cpu_vec::<f64>(data, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniforms_are_in_range_and_reproducible() {
        let a = Rng::new(7)
            .uniform(&[1000], 0.0, 1.0, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        let b = Rng::new(7)
            .uniform(&[1000], 0.0, 1.0, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean: f32 = a.iter().sum::<f32>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05);
    }

    #[test]
    fn normals_have_unit_variance() {
        let z = Rng::new(1)
            .normal(&[20000], 0.0, 1.0, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }
}
