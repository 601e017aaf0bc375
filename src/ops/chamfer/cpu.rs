//! The CPU side of [`super::chamfer`] and its backward.
//!
//! Pairs run in parallel (rayon), a few dozen pairs per task, one scratch per task. Per pair,
//! each direction is one *sweep*: the points of one cloud sit in SIMD lanes (coordinate-major,
//! padded to a multiple of 8) and keep their nearest distance and its index in registers while
//! the valid points of the other cloud stream past once. The textbook form of a sweep is
//! [`Sweep::exact`] (also the f64 path); f32 runs [`Sweep::lanes_f32`], the same search on
//! 8-lane vectors, in groups of up to [`GROUP`] lane blocks with no reduction across lanes.
//!
//! Keeping the nearest, per lane and streamed point j with distance d:
//! `t = d − best; best = min(d, best); index = (t < 0) ? j : index`, where the index is
//! picked by the *sign bit* of t (one blend, no compare). That is "strictly less", so the
//! first index on ties, whenever d and best are not both +∞ (then t is NaN). A sweep that
//! ends with a +∞ nearest distance (squared distances that overflow f32) is therefore run
//! again by [`Sweep::exact`], which seeds every lane with the first valid streamed point.
//!
//! The copy of each cloud into lanes also tests every coordinate for NaN and ∞, so the inputs
//! are read once; the caller turns a failed test into the error that names the input.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::real::Real;
use crate::simd::Lanes;
use crate::tensor::{Storage, Tensor};

use super::NO_NEIGHBOUR;
use crate::ops::filled;

/// Which points of a batch are valid, read in place from a mask tensor (non-zero = valid).
#[derive(Clone, Copy)]
pub(super) enum Valid<'a> {
    All,
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> Valid<'a> {
    /// The flags of `mask` (`None` = every point valid); the mask must be on the CPU.
    pub(super) fn of(mask: Option<&'a Tensor>) -> Result<Self> {
        Ok(match mask.map(|t| t.storage()) {
            None => Valid::All,
            Some(Storage::CpuF32(v)) => Valid::F32(v),
            Some(Storage::CpuF64(v)) => Valid::F64(v),
            Some(Storage::Cuda(_)) => {
                return Err(Error::DeviceMismatch {
                    op: "chamfer",
                    a: "cpu".into(),
                    b: "cuda (a mask)".into(),
                })
            }
        })
    }

    /// Writes the flags of points `start .. start + out.len()` and returns how many are set.
    fn fill(self, start: usize, out: &mut [bool]) -> usize {
        match self {
            Valid::All => {
                out.fill(true);
                return out.len();
            }
            Valid::F32(v) => {
                for (o, &x) in out.iter_mut().zip(&v[start..]) {
                    *o = x != 0.0;
                }
            }
            Valid::F64(v) => {
                for (o, &x) in out.iter_mut().zip(&v[start..]) {
                    *o = x != 0.0;
                }
            }
        }
        out.iter().filter(|&&v| v).count()
    }
}

/// What the CPU forward returns: per pair distance `[B]`, neighbours `[B, N]`, `[B, M]`,
/// valid counts `[B, 2]`, and whether every input coordinate was finite (if not, the other
/// outputs mean nothing).
pub(super) struct Forward<T> {
    pub distance: Vec<T>,
    pub nn_xy: Vec<u32>,
    pub nn_yx: Vec<u32>,
    pub counts: Vec<T>,
    pub finite: bool,
}

/// The forward over all pairs of `xs [B, N, D]`, `ys [B, M, D]` (see the module doc).
pub(super) fn forward<T: Real>(
    xs: &[T],
    ys: &[T],
    (vx, vy): (Valid, Valid),
    (b, n, m, d): (usize, usize, usize, usize),
    mean: bool,
) -> Forward<T> {
    let isa = crate::simd::isa();
    let mut distance = vec![T::zero(); b];
    // at least one neighbour slot per pair, so that every pair is visited even when a cloud
    // has no points (the spare slots are cut off below)
    let (n1, m1) = (n.max(1), m.max(1));
    // (the neighbour buffers are filled chunk by chunk inside the parallel loop, by the
    // thread that then writes them, instead of by a serial fill first)
    let (len_xy, len_yx) = (b * n1, b * m1);
    let (mut nn_xy, mut nn_yx) = (Vec::with_capacity(len_xy), Vec::with_capacity(len_yx));
    let mut counts = vec![T::zero(); 2 * b];
    // about eight tasks per thread (load balance), each of at least ~16k distances (so that
    // the task and its scratch cost nothing against the sweeps)
    let threads = rayon::current_num_threads().max(1);
    let per_task = (b / (8 * threads))
        .max(16_384 / (n * m).max(1))
        .clamp(1, b.max(1));
    let finite = distance
        .par_chunks_mut(per_task)
        .zip(nn_xy.spare_capacity_mut()[..len_xy].par_chunks_mut(per_task * n1))
        .zip(nn_yx.spare_capacity_mut()[..len_yx].par_chunks_mut(per_task * m1))
        .zip(counts.par_chunks_mut(2 * per_task))
        .enumerate()
        .map(|(task, (((dist, nxy), nyx), cnt))| {
            let (nxy, nyx) = (filled(nxy, NO_NEIGHBOUR), filled(nyx, NO_NEIGHBOUR));
            let mut s = PairScratch::<T>::new(n, m, d);
            let mut finite = true;
            for (k, dist) in dist.iter_mut().enumerate() {
                let p = task * per_task + k;
                let cx = vx.fill(p * n, &mut s.vx);
                let cy = vy.fill(p * m, &mut s.vy);
                (s.count_x, s.count_y) = (cx, cy);
                let xp = &xs[p * n * d..(p + 1) * n * d];
                let yp = &ys[p * m * d..(p + 1) * m * d];
                let (nxy, nyx) = (&mut nxy[k * n1..k * n1 + n], &mut nyx[k * m1..k * m1 + m]);
                let pair = nearest_both_on(isa, &mut s, xp, yp, nxy, nyx);
                finite &= pair.finite;
                let (cxf, cyf) = (cx as f64, cy as f64);
                let value = if cx == 0 || cy == 0 {
                    0.0
                } else if mean {
                    pair.sum_x / cxf + pair.sum_y / cyf
                } else {
                    pair.sum_x + pair.sum_y
                };
                *dist = T::from_f64(value);
                cnt[2 * k] = T::from_f64(cxf);
                cnt[2 * k + 1] = T::from_f64(cyf);
            }
            finite
        })
        .reduce(|| true, |a, b| a & b);
    // SAFETY: the chunks above cover the first len_xy (len_yx) slots exactly, each filled by
    // `filled` before use (a panic would unwind past this line, leaving the lengths at 0).
    unsafe {
        nn_xy.set_len(len_xy);
        nn_yx.set_len(len_yx);
    }
    nn_xy.truncate(b * n);
    nn_yx.truncate(b * m);
    Forward {
        distance,
        nn_xy,
        nn_yx,
        counts,
        finite,
    }
}

/// Lanes of the sweeps (a multiple of every SIMD width used).
const LANES: usize = 8;

/// Lane blocks swept together: per streamed point, its coordinates are broadcast once and G
/// independent distance / keep chains run side by side, hiding each other's latency.
const GROUP: usize = 2;

/// One task's buffers, reused across its pairs.
pub(super) struct PairScratch<T> {
    d: usize,
    /// Valid flags of this pair's points, and how many are set.
    pub vx: Vec<bool>,
    pub vy: Vec<bool>,
    pub count_x: usize,
    pub count_y: usize,
    /// `xl[k * n_pad + i]` = coordinate k of x_i, zeros in the padding lanes.
    xl: Vec<T>,
    /// Likewise for y, with stride m_pad.
    yl: Vec<T>,
    /// `ids[j]` = the bits of the integer j as an f32 lane value: a streamed point's index
    /// rides through the lane blends as raw bits, so no conversion is ever needed.
    ids: Vec<f32>,
    /// The nearest squared distance of each lane point and its index, padding lanes
    /// included (one direction at a time).
    best: Vec<T>,
    near: Vec<u32>,
}

impl<T: Real> PairScratch<T> {
    pub(super) fn new(n: usize, m: usize, d: usize) -> Self {
        let pad = |k: usize| k.div_ceil(LANES).max(1) * LANES;
        PairScratch {
            d,
            vx: vec![false; n],
            vy: vec![false; m],
            count_x: 0,
            count_y: 0,
            xl: vec![T::zero(); d * pad(n)],
            yl: vec![T::zero(); d * pad(m)],
            ids: (0..n.max(m) as u32).map(f32::from_bits).collect(),
            best: vec![T::zero(); pad(n.max(m))],
            near: vec![0; pad(n.max(m))],
        }
    }
}

/// One pair's result: Σ_i min_j d_ij and Σ_j min_i d_ij over valid points (f64), and
/// whether all its coordinates were finite.
pub(super) struct PairSums {
    pub sum_x: f64,
    pub sum_y: f64,
    pub finite: bool,
}

crate::simd::dispatch! {
    /// Both directions of one pair, `xp [N·D]` and `yp [M·D]` point-major, with the valid
    /// flags and counts in `s`: writes `nn_xy [N]`, `nn_yx [M]` (first index on ties,
    /// [`NO_NEIGHBOUR`] at masked points or when the other cloud has no valid point).
    /// Compiled for `isa` as a whole — the copies, both sweeps and the sums — so that on an
    /// AVX2 machine none of it runs as baseline x86-64 code.
    pub(super) fn nearest_both_on<T: Real>(
        isa: Isa,
        s: &mut PairScratch<T>,
        xp: &[T],
        yp: &[T],
        nn_xy: &mut [u32],
        nn_yx: &mut [u32],
    ) -> PairSums = nearest_both_lanes::<lanes>;
}

/// The body of [`nearest_both_on`] on the lane type `V` (used by the f32 sweeps).
#[inline(always)]
fn nearest_both_lanes<T: Real, V: Lanes>(
    s: &mut PairScratch<T>,
    xp: &[T],
    yp: &[T],
    nn_xy: &mut [u32],
    nn_yx: &mut [u32],
) -> PairSums {
    let d = s.d;
    let finite = to_lanes(xp, d, &mut s.xl) & to_lanes(yp, d, &mut s.yl);
    let into_x = Sweep {
        lanes: &s.xl,
        lane_valid: &s.vx,
        stream: yp,
        stream_valid: &s.vy,
        stream_count: s.count_y,
        ids: &s.ids,
        d,
    };
    let sum_x = into_x.run::<V>(&mut s.best, &mut s.near, nn_xy);
    let into_y = Sweep {
        lanes: &s.yl,
        lane_valid: &s.vy,
        stream: xp,
        stream_valid: &s.vx,
        stream_count: s.count_x,
        ids: &s.ids,
        d,
    };
    let sum_y = into_y.run::<V>(&mut s.best, &mut s.near, nn_yx);
    PairSums {
        sum_x,
        sum_y,
        finite,
    }
}

/// Copy point-major `points [P, D]` into coordinate-major `lanes [D, P_pad]` (P_pad =
/// lanes.len() / D), zeros in the padding; returns whether every coordinate is finite.
#[inline(always)]
fn to_lanes<T: Real>(points: &[T], d: usize, lanes: &mut [T]) -> bool {
    match d {
        2 => to_lanes_d::<T, 2>(points, 2, lanes),
        3 => to_lanes_d::<T, 3>(points, 3, lanes),
        _ => to_lanes_d::<T, 0>(points, d, lanes),
    }
}

/// [`to_lanes`] with the coordinate count fixed at compile time (`DC` > 0) or not (0).
#[inline(always)]
fn to_lanes_d<T: Real, const DC: usize>(points: &[T], d: usize, lanes: &mut [T]) -> bool {
    let d = if DC > 0 { DC } else { d };
    let pad = lanes.len() / d;
    let count = points.len() / d;
    // point by point (D stores per point): the compiler's vectorised column-by-column
    // gather of the strided coordinates measured slower
    for (i, p) in points.chunks_exact(d).enumerate() {
        for (k, &v) in p.iter().enumerate() {
            lanes[k * pad + i] = v;
        }
    }
    for column in lanes.chunks_exact_mut(pad) {
        column[count..].fill(T::zero());
    }
    all_finite(points)
}

/// Whether every value is finite, as one branch-free pass: for f32 the largest exponent
/// field (all ones only for ±∞ and NaN), for f64 a fold of `is_finite`.
#[inline(always)]
fn all_finite<T: Real>(values: &[T]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    match T::as_f32_slice(values) {
        Some(v) => v.iter().fold(0, |top, x| top.max(x.to_bits() & EXPONENT)) < EXPONENT,
        None => values.iter().fold(true, |ok, v| ok & v.is_finite()),
    }
}

/// One direction of a pair: every valid point of the *lane* cloud (coordinate-major, padded,
/// see [`to_lanes`]) finds its nearest valid point of the *streamed* cloud (point-major).
#[derive(Clone, Copy)]
struct Sweep<'a, T> {
    lanes: &'a [T],
    lane_valid: &'a [bool],
    stream: &'a [T],
    stream_valid: &'a [bool],
    stream_count: usize,
    ids: &'a [f32],
    d: usize,
}

impl<T: Real> Sweep<'_, T> {
    /// Writes each lane point's nearest index into `nn` ([`NO_NEIGHBOUR`] where masked) and
    /// returns Σ_i min_j ‖p_i − q_j‖² over valid i (f64). f32 runs on the lane type `V`
    /// ([`Sweep::lanes_f32`]), f64 the exact loop.
    #[inline(always)]
    fn run<V: Lanes>(&self, best: &mut [T], near: &mut [u32], nn: &mut [u32]) -> f64 {
        if self.stream_count == 0 {
            nn.fill(NO_NEIGHBOUR);
            return 0.0;
        }
        let simd = (
            T::as_f32_slice(self.lanes),
            T::as_f32_slice(self.stream),
            T::as_f32_slice_mut(best),
        );
        let fast = if let (Some(lanes), Some(stream), Some(best)) = simd {
            let f32_sweep = Sweep {
                lanes,
                stream,
                lane_valid: self.lane_valid,
                stream_valid: self.stream_valid,
                stream_count: self.stream_count,
                ids: self.ids,
                d: self.d,
            };
            f32_sweep.lanes_f32::<V>(best, near);
            true
        } else {
            self.exact(best, near);
            false
        };
        let mut sum = valid_sum(best, near, self.lane_valid, nn);
        if fast && sum.is_infinite() {
            // a nearest distance of +∞: the sign-picked indices may not be the first on ties
            self.exact(best, near);
            sum = valid_sum(best, near, self.lane_valid, nn);
        }
        sum
    }

    /// The textbook sweep, on arrays of [`LANES`]: each lane block is seeded with the first
    /// valid streamed point and keeps any later one that is strictly nearer. Writes `best`
    /// and `near` for every lane. The f64 path, and the f32 path's exact fallback.
    #[inline(always)]
    fn exact(&self, best: &mut [T], near: &mut [u32]) {
        let (lanes, d) = (self.lanes, self.d);
        let pad = lanes.len() / d;
        let dist = |block: usize, q: &[T]| {
            let mut acc = [T::zero(); LANES];
            for (k, &qk) in q.iter().enumerate().take(d) {
                let col = &lanes[k * pad + block * LANES..][..LANES];
                for l in 0..LANES {
                    let diff = col[l] - qk;
                    acc[l] += diff * diff;
                }
            }
            acc
        };
        let points = || {
            self.stream
                .chunks_exact(d)
                .zip(self.stream_valid)
                .enumerate()
                .filter(|(_, (_, &v))| v)
                .map(|(j, (q, _))| (j as u32, q))
        };
        let Some((first, q0)) = points().next() else {
            return; // (the caller handles a stream with no valid point)
        };
        for block in 0..pad / LANES {
            let mut bv = dist(block, q0);
            let mut av = [first; LANES];
            for (j, q) in points().skip(1) {
                let dv = dist(block, q);
                for l in 0..LANES {
                    if dv[l] < bv[l] {
                        (bv[l], av[l]) = (dv[l], j);
                    }
                }
            }
            let lo = block * LANES;
            best[lo..lo + LANES].copy_from_slice(&bv);
            near[lo..lo + LANES].copy_from_slice(&av);
        }
    }
}

/// Σ best_i over valid lane points in f64 (four partial sums, so no long chain of dependent
/// additions); writes `nn [count]`: `near` at valid points, [`NO_NEIGHBOUR`] elsewhere.
#[inline(always)]
fn valid_sum<T: Real>(best: &[T], near: &[u32], lane_valid: &[bool], nn: &mut [u32]) -> f64 {
    let term = |b: T, v: bool| if v { b.to_f64() } else { 0.0 };
    let (mut s0, mut s1, mut s2, mut s3) = (0f64, 0f64, 0f64, 0f64);
    let count = nn.len();
    let full = count / 4 * 4;
    for (b, v) in best[..full].chunks_exact(4).zip(lane_valid.chunks_exact(4)) {
        s0 += term(b[0], v[0]);
        s1 += term(b[1], v[1]);
        s2 += term(b[2], v[2]);
        s3 += term(b[3], v[3]);
    }
    for (&b, &v) in best[full..count].iter().zip(&lane_valid[full..]) {
        s0 += term(b, v);
    }
    for ((k, &a), &v) in nn.iter_mut().zip(near).zip(lane_valid) {
        *k = if v { a } else { NO_NEIGHBOUR };
    }
    (s0 + s1) + (s2 + s3)
}

impl Sweep<'_, f32> {
    /// The f32 sweep on explicit 8-lane vectors `V` ([`crate::simd`]), the coordinate loop
    /// unrolled for D = 2, 3, 4; the lane blocks in groups of up to [`GROUP`], each group
    /// swept by the stream once. Writes `best` and `near` for every lane.
    #[inline(always)]
    fn lanes_f32<V: Lanes>(&self, best: &mut [f32], near: &mut [u32]) {
        match self.d {
            2 => self.groups::<2, V>(best, near),
            3 => self.groups::<3, V>(best, near),
            4 => self.groups::<4, V>(best, near),
            _ => self.groups::<0, V>(best, near),
        }
    }

    /// [`Sweep::lanes_f32`] for `DC` = D known at compile time (0 = `d` at run time).
    #[inline(always)]
    fn groups<const DC: usize, V: Lanes>(&self, best: &mut [f32], near: &mut [u32]) {
        let blocks = self.lanes.len() / self.d / LANES;
        let mut b0 = 0;
        while b0 < blocks {
            // (no closures or dyn here: they would not be compiled for AVX2, see
            // `simd::dispatch!`)
            let g = (blocks - b0).min(GROUP);
            let (bv, av) = match g {
                1 => self.group::<DC, V, 1>(b0).widen(),
                _ => self.group::<DC, V, GROUP>(b0).widen(),
            };
            for k in 0..g {
                let lo = (b0 + k) * LANES;
                bv[k].store(&mut best[lo..]);
                for (dst, a) in near[lo..lo + LANES].iter_mut().zip(av[k].to_array()) {
                    *dst = a.to_bits();
                }
            }
            b0 += g;
        }
    }

    /// Coordinate `k` of lane block `block`.
    #[inline(always)]
    fn column<V: Lanes>(&self, block: usize, k: usize) -> V {
        let pad = self.lanes.len() / self.d;
        V::load(&self.lanes[k * pad + block * LANES..])
    }

    /// The valid streamed points against lane blocks `b0 .. b0 + G`.
    #[inline(always)]
    fn group<const DC: usize, V: Lanes, const G: usize>(&self, b0: usize) -> Kept<V, G> {
        let d = if DC > 0 { DC } else { self.d };
        let mut best = [V::splat(f32::INFINITY); G];
        let mut index = [V::zero(); G];
        let stream = self
            .stream
            .chunks_exact(d)
            .zip(self.stream_valid)
            .zip(self.ids);
        if DC > 0 {
            // the group's coordinates, read once (what does not fit in registers stays in L1
            // as memory operands)
            let mut cols = [[V::zero(); DC]; G];
            for (g, col) in cols.iter_mut().enumerate() {
                for (k, c) in col.iter_mut().enumerate() {
                    *c = self.column(b0 + g, k);
                }
            }
            for ((q, &valid), &id) in stream {
                if !valid {
                    continue; // (masks are mostly a valid prefix: a predictable branch)
                }
                let jv = V::splat(id);
                let mut qv = [V::zero(); DC];
                for (v, &c) in qv.iter_mut().zip(q) {
                    *v = V::splat(c);
                }
                for g in 0..G {
                    let mut dv = V::zero();
                    for k in 0..DC {
                        let diff = qv[k] - cols[g][k];
                        dv = diff.mul_add(diff, dv);
                    }
                    keep(dv, jv, &mut best[g], &mut index[g]);
                }
            }
        } else {
            for ((q, &valid), &id) in stream {
                if !valid {
                    continue;
                }
                let jv = V::splat(id);
                for g in 0..G {
                    let mut dv = V::zero();
                    for (k, &qk) in q.iter().enumerate() {
                        let diff = V::splat(qk) - self.column(b0 + g, k);
                        dv = diff.mul_add(diff, dv);
                    }
                    keep(dv, jv, &mut best[g], &mut index[g]);
                }
            }
        }
        Kept { best, index }
    }
}

/// A group's nearest distances and their indices (as raw bits), one vector per block.
struct Kept<V, const G: usize> {
    best: [V; G],
    index: [V; G],
}

impl<V: Lanes, const G: usize> Kept<V, G> {
    /// The same, padded to [`GROUP`] blocks (the unused ones zero).
    #[inline(always)]
    fn widen(self) -> ([V; GROUP], [V; GROUP]) {
        let (mut b, mut a) = ([V::zero(); GROUP], [V::zero(); GROUP]);
        b[..G].copy_from_slice(&self.best);
        a[..G].copy_from_slice(&self.index);
        (b, a)
    }
}

/// One streamed point against one lane block: keep it where strictly nearer (see the
/// module doc: the index is picked by the sign of d − best).
#[inline(always)]
fn keep<V: Lanes>(dv: V, jv: V, best: &mut V, index: &mut V) {
    let t = dv - *best;
    *best = dv.min(*best);
    *index = V::select_by_sign(t, jv, *index);
}

/// The CPU backward: `gx [B, N, D]`, `gy [B, M, D]` of L = Σ_b g_b C_b, from the forward's
/// neighbours and counts (`counts [B, 2]`, `gs [B]` as f64).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Real>(
    xs: &[T],
    ys: &[T],
    nn_xy: &[u32],
    nn_yx: &[u32],
    counts: &[f64],
    gs: &[f64],
    (b, n, m, d): (usize, usize, usize, usize),
    mean: bool,
) -> (Vec<T>, Vec<T>) {
    let (len_x, len_y) = (b * n * d, b * m * d);
    if len_x == 0 || len_y == 0 {
        // a cloud with no points: every pair is empty, so every gradient is 0
        return (vec![T::zero(); len_x], vec![T::zero(); len_y]);
    }
    // The outputs are zeroed chunk by chunk inside the parallel loop, by the thread that then
    // writes the chunk, instead of by one serial memset of the whole buffers first.
    let (mut gx, mut gy) = (Vec::with_capacity(len_x), Vec::with_capacity(len_y));
    gx.spare_capacity_mut()[..len_x]
        .par_chunks_mut(n * d)
        .zip(gy.spare_capacity_mut()[..len_y].par_chunks_mut(m * d))
        .enumerate()
        .with_min_len((4096 / ((n + m) * d)).max(1))
        .for_each(|(p, (gxu, gyu))| {
            let (gxp, gyp) = (filled(gxu, T::zero()), filled(gyu, T::zero()));
            let (cx, cy) = (counts[2 * p], counts[2 * p + 1]);
            if cx == 0.0 || cy == 0.0 {
                return; // an empty pair: its gradient rows stay zero
            }
            let wx = T::from_f64(2.0 * gs[p] * if mean { 1.0 / cx } else { 1.0 });
            let wy = T::from_f64(2.0 * gs[p] * if mean { 1.0 / cy } else { 1.0 });
            let (xp, yp) = (
                &xs[p * n * d..(p + 1) * n * d],
                &ys[p * m * d..(p + 1) * m * d],
            );
            let (nx, ny) = (&nn_xy[p * n..(p + 1) * n], &nn_yx[p * m..(p + 1) * m]);
            match d {
                3 => pair_grad::<T, 3>(xp, yp, nx, ny, wx, wy, 3, gxp, gyp),
                _ => pair_grad::<T, 0>(xp, yp, nx, ny, wx, wy, d, gxp, gyp),
            }
        });
    // SAFETY: the chunks above cover the first len_x (len_y) slots exactly, and `filled`
    // initialised every one of them before anything else ran (a panic would unwind past
    // this line, leaving the lengths at 0).
    unsafe {
        gx.set_len(len_x);
        gy.set_len(len_y);
    }
    (gx, gy)
}

/// One pair's gradients (`DC` = D fixed at compile time, or 0 for `d` at run time), added
/// into the zeroed `gxp [N·D]`, `gyp [M·D]`: for each valid x_i with neighbour y_j, the term
/// o = wx·(x_i − y_j) goes to x_i and −o to y_j; then the same for each valid y_j with
/// neighbour x_i. (Points marked [`NO_NEIGHBOUR`] get nothing of their own.)
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pair_grad<T: Real, const DC: usize>(
    xp: &[T],
    yp: &[T],
    nn_x: &[u32],
    nn_y: &[u32],
    wx: T,
    wy: T,
    d: usize,
    gxp: &mut [T],
    gyp: &mut [T],
) {
    let d = if DC > 0 { DC } else { d };
    // one direction: the points `p` with their neighbours in `q`
    let scatter = |p: &[T], q: &[T], nn: &[u32], w: T, gp: &mut [T], gq: &mut [T]| {
        for ((pi, gi), &j) in p.chunks_exact(d).zip(gp.chunks_exact_mut(d)).zip(nn) {
            // a masked point (NO_NEIGHBOUR) has no term; any other index out of range (only a
            // hand-made ChamferOutput can hold one) is skipped too, with no overflow on the way
            let Some(end) = (j != NO_NEIGHBOUR)
                .then(|| (j as usize + 1).checked_mul(d))
                .flatten()
            else {
                continue;
            };
            let at = end - d;
            let (Some(qj), Some(gj)) = (q.get(at..end), gq.get_mut(at..end)) else {
                continue;
            };
            for k in 0..d {
                let o = w * (pi[k] - qj[k]);
                gi[k] += o;
                gj[k] += -o;
            }
        }
    };
    scatter(xp, yp, nn_x, wx, gxp, gyp);
    scatter(yp, xp, nn_y, wy, gyp, gxp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Isa;

    /// The f32 sweep gives the same bits (distances and neighbours) on every instruction set
    /// this CPU has, for D = 2..5 and with masked points, and agrees with the f64 sweep.
    #[test]
    fn pair_sweeps_are_the_same_on_every_isa() {
        let mut rng = crate::rng::Rng::new(11);
        for d in 2..=5 {
            let (n, m) = (37, 29);
            let draw = |rng: &mut crate::rng::Rng, len: usize| -> Vec<f32> {
                let t = rng.normal(&[len], 0.0, 1.0, crate::device::Device::Cpu);
                t.unwrap().to_vec().unwrap()
            };
            let (xs, ys) = (draw(&mut rng, n * d), draw(&mut rng, m * d));
            // masked points on both sides, the first of y among them
            let vx: Vec<bool> = (0..n).map(|i| i % 5 != 3).collect();
            let vy: Vec<bool> = (0..m).map(|j| j % 7 != 0).collect();
            fn run<T: Real>(
                isa: Isa,
                (xs, ys): (&[T], &[T]),
                (vx, vy): (&[bool], &[bool]),
                d: usize,
            ) -> (f64, f64, Vec<u32>, Vec<u32>) {
                let (n, m) = (vx.len(), vy.len());
                let mut s = PairScratch::<T>::new(n, m, d);
                s.vx.copy_from_slice(vx);
                s.vy.copy_from_slice(vy);
                s.count_x = vx.iter().filter(|&&v| v).count();
                s.count_y = vy.iter().filter(|&&v| v).count();
                let (mut nxy, mut nyx) = (vec![0u32; n], vec![0u32; m]);
                let r = nearest_both_on(isa, &mut s, xs, ys, &mut nxy, &mut nyx);
                assert!(r.finite);
                (r.sum_x, r.sum_y, nxy, nyx)
            }
            let reference = run::<f32>(Isa::PORTABLE, (&xs, &ys), (&vx, &vy), d);
            for isa in Isa::available() {
                let got = run::<f32>(isa, (&xs, &ys), (&vx, &vy), d);
                assert_eq!(got, reference, "{isa}, D {d}");
            }
            let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let (xs64, ys64) = (widen(&xs), widen(&ys));
            let got = run::<f64>(crate::simd::isa(), (&xs64, &ys64), (&vx, &vy), d);
            assert_eq!(
                (&got.2, &got.3),
                (&reference.2, &reference.3),
                "D {d}: f64 neighbours"
            );
            for (b, r) in [(got.0, reference.0), (got.1, reference.1)] {
                assert!((b - r).abs() <= 1e-5 * (1.0 + b), "D {d}: {b} vs {r}");
            }
        }
    }

    /// Squared distances that all overflow to +∞: the sign-picked keep cannot order them,
    /// so the exact sweep runs again and every point gets the *first* valid neighbour, on
    /// every instruction set; a NaN or ∞ coordinate is reported as not finite.
    #[test]
    fn overflowing_sweeps_keep_the_first_neighbour_and_inputs_are_tested() {
        let xs = [1e20f32, 0.0, 2e20, 0.0, 3e20, 0.0];
        let ys = [-1e20f32, 0.0, -2e20, 0.0, -3e20, 0.0, -4e20, 0.0];
        let vx = [true, true, true];
        let vy = [false, true, true, true];
        for isa in Isa::available() {
            let mut s = PairScratch::<f32>::new(3, 4, 2);
            s.vx.copy_from_slice(&vx);
            s.vy.copy_from_slice(&vy);
            (s.count_x, s.count_y) = (3, 3);
            let (mut nxy, mut nyx) = (vec![0u32; 3], vec![0u32; 4]);
            let r = nearest_both_on(isa, &mut s, &xs, &ys, &mut nxy, &mut nyx);
            assert!(r.finite, "{isa}");
            assert_eq!((r.sum_x, r.sum_y), (f64::INFINITY, f64::INFINITY), "{isa}");
            assert_eq!(nxy, [1, 1, 1], "{isa}");
            assert_eq!(nyx, [NO_NEIGHBOUR, 0, 0, 0], "{isa}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut ys_bad = ys;
                ys_bad[5] = bad;
                let r = nearest_both_on(isa, &mut s, &xs, &ys_bad, &mut nxy, &mut nyx);
                assert!(!r.finite, "{isa}: {bad}");
            }
        }
    }
}
