//! The counted work of the custom kernels: what any implementation of the same algorithm must
//! do, as floating-point operations, transcendental functions and bytes that must move through
//! memory. `jetgen bench` divides these by the machine's measured rates (the roofline of
//! `cli::bench::roofline`) to get a lower bound on each kernel's time, and prints the measured
//! time's fraction of it.
//!
//! Conventions, one for every kernel: a multiply-add counts 2 operations, an add, subtract,
//! multiply, compare or min 1; division and square root 1 (they are rare here); `exp`, `ln`
//! and their relatives count as one transcendental each (not as operations). Bytes are the
//! inputs read once and the outputs written once at their element size (`bytes_per_value`: 4
//! for f32, 8 for f64; indices 4) — a kernel that keeps its intermediates in cache moves no
//! more. The bound is max(ops / FMA peak, transcendentals / exp rate, bytes / bandwidth),
//! i.e. the three can overlap perfectly; reaching it exactly is not expected, within 3× is
//! the target.

/// Counted work of one kernel call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    /// Floating-point operations (a multiply-add is 2).
    pub flops: f64,
    /// exp / ln / log1p / softplus-type evaluations.
    pub transcendentals: f64,
    /// Bytes read and written (inputs once, outputs once).
    pub bytes: f64,
}

impl std::ops::Add for Work {
    type Output = Work;
    fn add(self, o: Work) -> Work {
        Work {
            flops: self.flops + o.flops,
            transcendentals: self.transcendentals + o.transcendentals,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// Chamfer distance between `B` pairs of clouds `[N, D]`, `[M, D]` (`ops::chamfer`).
///
/// Forward: the N·M squared distances of a pair, each D subtractions and D multiply-adds
/// (3D operations), and for each a compare-and-keep in both directions (row minimum and
/// column minimum: 2 × 2). The CPU sweeps compute the distance matrix twice (once per
/// direction) and keep with a subtract, a minimum and a blend, so their own count is
/// B·N·M·2·(3D + 3); the bound counts the matrix once, B·N·M·(3D + 4). Bytes:
/// the clouds, the neighbour indices and the per-pair distance and counts.
/// Backward: per point and coordinate, its own term w·(p − q) (2), the cross term scattered
/// onto its neighbour (1), both directions: B·(N + M)·D·3; bytes: the clouds, the neighbour
/// indices, the gradients.
pub fn chamfer(
    b: usize,
    n: usize,
    m: usize,
    d: usize,
    backward: bool,
    bytes_per_value: usize,
) -> Work {
    let (b, n, m, d, s) = (
        b as f64,
        n as f64,
        m as f64,
        d as f64,
        bytes_per_value as f64,
    );
    let forward = Work {
        flops: b * n * m * (3.0 * d + 4.0),
        transcendentals: 0.0,
        bytes: b * (n + m) * (d * s + 4.0) + b * 3.0 * s,
    };
    if !backward {
        return forward;
    }
    forward
        + Work {
            flops: b * (n + m) * d * 3.0,
            transcendentals: 0.0,
            bytes: b * (n + m) * (2.0 * d * s + 4.0) + b * 3.0 * s,
        }
}

/// Entropic OT by Sinkhorn (`ops::sinkhorn`) for `B` pairs of clouds `[N, D]`, `[M, D]`,
/// `iters` iterations at fixed ε, squared Euclidean cost.
///
/// Forward, in the scaled form the CPU runs: the Gibbs kernel K_ij = exp(−C_ij/ε) once (N·M
/// costs of 3D operations and one exp each), then per iteration the two matrix-vector
/// products u ← a / (K v), v ← b / (Kᵀ u): 2·N·M multiply-adds (4·N·M operations) and N + M
/// divisions. With `debias`, the two symmetric problems OT(a, a), OT(b, b) add N² and M²
/// kernels and one product each per iteration. Bytes: clouds and weights in, the value and the
/// potentials out (the kernel of a 30×30 pair lives in cache).
/// Backward (envelope theorem): the plan P_ij = u_i K_ij v_j (2 multiplies; K recomputed: one
/// exp and 3D operations), and Σ_j P_ij (x_i − y_j) into both gradients (D subtract + 2D
/// multiply-add = 5D); with `debias` the same for the two self plans. Bytes: clouds,
/// weights, potentials in; gradients of the clouds and weights out.
pub fn sinkhorn(
    b: usize,
    n: usize,
    m: usize,
    d: usize,
    iters: usize,
    debias: bool,
    backward: bool,
    bytes_per_value: usize,
) -> Work {
    let (b, n, m, d, s) = (
        b as f64,
        n as f64,
        m as f64,
        d as f64,
        bytes_per_value as f64,
    );
    let iters = iters as f64;
    // the (row, column) sizes of the problems solved: xy, and with debias xx and yy
    let problems: Vec<(f64, f64)> = if debias {
        vec![(n, m), (n, n), (m, m)]
    } else {
        vec![(n, m)]
    };
    let io = b * ((n + m) * (d + 1.0) * s + s);
    let mut forward = Work {
        bytes: io + b * (n + m) * s,
        ..Work::default()
    };
    let mut grad = Work {
        bytes: io + b * (n + m) * (2.0 + d + 1.0) * s,
        ..Work::default()
    };
    for (i, (r, c)) in problems.into_iter().enumerate() {
        let entries = b * r * c;
        // a symmetric problem updates one potential per iteration
        let products = if i == 0 { 2.0 } else { 1.0 };
        forward.flops += entries * 3.0 * d + iters * (products * 2.0 * entries + b * (r + c));
        forward.transcendentals += entries;
        grad.flops += entries * (3.0 * d + 2.0 + 5.0 * d);
        grad.transcendentals += entries;
    }
    if backward {
        forward + grad
    } else {
        forward
    }
}

/// Rational-quadratic splines (`ops::rqs`) on `elements` values with `bins` = K bins.
///
/// Forward (or inverse), per element: two softmaxes of K (2K exp, 4K operations: max, sum,
/// scale, cumulative sum), K − 1 softplus for the interior derivatives (2 transcendentals
/// each: exp and log1p), the bin search (K compares), the bin formula (~30 operations) and the
/// log-det (one ln). Bytes: x, uw, uh, ud in (3K values), y and the log-det out.
/// Backward, per element: the softmaxes again (2K exp, 4K), the two sigmoids of the bin's
/// interior derivatives (2 exp), the adjoint of the bin formula (~60 operations), the softmax
/// Jacobians (2 × 3K). Bytes: x, the parameters and both upstream gradients in; ∂x and the
/// three parameter gradients out.
pub fn rqs(elements: usize, bins: usize, backward: bool, bytes_per_value: usize) -> Work {
    let (e, k, s) = (elements as f64, bins as f64, bytes_per_value as f64);
    let forward = Work {
        flops: e * (4.0 * k + k + 30.0),
        transcendentals: e * (2.0 * k + 2.0 * (k - 1.0) + 1.0),
        bytes: e * (3.0 * k + 2.0) * s,
    };
    if !backward {
        return forward;
    }
    forward
        + Work {
            flops: e * (4.0 * k + 60.0 + 6.0 * k),
            transcendentals: e * (2.0 * k + 2.0),
            bytes: e * (3.0 * k + 1.0 + 2.0 + 3.0 * k) * s,
        }
}

/// MPGAN's fused edge network (`ops::edge_mlp`) over `pairs` computed (receiver, real
/// sender) pairs of `receivers` = B·N nodes, with widths `[H₀, H₁, …, H_L]`.
///
/// Forward, per pair: the first layer's add and φ (2·H₀), each further layer's
/// multiply-adds, bias and φ (Σ_k 2·H_{k−1}·H_k + 2·H_k), and the sum over senders (H_L).
/// Bytes: a and c in (2·receivers·H₀), the weights, the messages out (receivers·H_L).
/// Backward, per pair (the minimum: no recomputed forward): per layer the weight-gradient
/// and the upstream products (Σ_k 4·H_{k−1}·H_k), φ′ and the bias sums (Σ_k 2·H_k), the
/// first layer's φ′ and its sums into ∂a and ∂c (3·H₀). Bytes: g in, ∂a, ∂c and the weight
/// gradients out. Dropout multiplies are not counted (they are optional).
pub fn edge_mlp(
    pairs: usize,
    receivers: usize,
    widths: &[usize],
    backward: bool,
    bytes_per_value: usize,
) -> Work {
    let (p, r, s) = (pairs as f64, receivers as f64, bytes_per_value as f64);
    let h: Vec<f64> = widths.iter().map(|&w| w as f64).collect();
    let (h0, hl) = (h[0], h[h.len() - 1]);
    let macs: f64 = h.windows(2).map(|w| w[0] * w[1]).sum();
    let widths_after: f64 = h[1..].iter().sum();
    let weights: f64 = h.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    let forward = Work {
        flops: p * (2.0 * h0 + 2.0 * macs + 2.0 * widths_after + hl),
        transcendentals: 0.0,
        bytes: (2.0 * r * h0 + weights + r * hl) * s,
    };
    if !backward {
        return forward;
    }
    forward
        + Work {
            flops: p * (4.0 * macs + 2.0 * widths_after + 3.0 * h0),
            transcendentals: 0.0,
            bytes: (r * hl + 2.0 * r * h0 + weights) * s,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts at the benchmark sizes, against the figures worked out by hand in the
    /// roofline issue (Chamfer ~50 MFLOP, Sinkhorn ~46 M multiply-adds, RQS ~27 MB).
    #[test]
    fn counts_at_the_benchmark_sizes() {
        let c = chamfer(4096, 30, 30, 3, false, 4);
        assert_eq!(c.flops, 4096.0 * 900.0 * 13.0); // 47.9 M
        let s = sinkhorn(256, 30, 30, 3, 100, false, false, 4);
        let macs = 256.0 * 900.0 * 2.0 * 100.0; // 46.08 M multiply-adds
        let rest = 256.0 * 900.0 * 9.0 + 100.0 * 256.0 * 60.0;
        assert_eq!(s.flops, 2.0 * macs + rest);
        assert_eq!(s.transcendentals, 256.0 * 900.0);
        let r = rqs(1024 * 90, 8, true, 4);
        assert!((r.bytes / 1e6 - 28.4).abs() < 0.05, "{}", r.bytes);
        // debias adds two problems of the same size here
        let sd = sinkhorn(256, 30, 30, 3, 100, true, false, 4);
        assert!(sd.flops > 1.9 * s.flops && sd.flops < 2.1 * s.flops);
        // MPGAN's edge network on full jets of 30: 46,080 multiply-adds per pair
        let e = edge_mlp(256 * 900, 256 * 30, &[96, 160, 192], false, 4);
        let per_pair = 2.0 * 96.0 + 2.0 * 46_080.0 + 2.0 * 352.0 + 192.0;
        assert_eq!(e.flops, 256.0 * 900.0 * per_pair); // 21.4 GFLOP
        let eb = edge_mlp(256 * 900, 256 * 30, &[96, 160, 192], true, 4);
        assert!(eb.flops > 2.9 * e.flops && eb.flops < 3.1 * e.flops);
    }
}
