//! The fused edge network on CUDA (f32): the CPU twin's algorithm (module doc of
//! [`super`]) with the same chunks of whole jets, each layer's GEMM in cuBLAS and every other
//! step one kernel of `kernels/edge_mlp.cu`.
//!
//! Per chunk of R pair rows (receiver-major) and layer k, forward: `edge_mlp_first` (gather
//! a_i + c_j, φ, dropout), then for k ≥ 1 the GEMM z = u^{k−1} W_kᵀ and `edge_mlp_bias_act`
//! (bias, φ, dropout), then `edge_mlp_segment_sum` over each receiver's rows. Backward: the
//! forward again, `edge_mlp_local` (G = d ⊙ φ′ ⊙ upstream, the last layer gathering ∂L/∂out
//! by receiver), and per layer three GEMMs: ∂W_k += Gᵀ u^{k−1}, ∂b_k += 1ᵀ G, upstream =
//! G W_k; finally the receiver and sender sums of G⁰ give ∂a and ∂c. The dropout multipliers
//! come from the same counter hash as on the CPU, so both devices drop the same units.
//!
//! Memory: one chunk of ≤ ~[`CUDA_CHUNK_ROWS`] rows per layer (act, and with dropout the
//! dropped copy; ≈ 60 MB per layer pair at MPGAN's widths) instead of the B·N²·ΣH values the
//! composed chain keeps on the tape. Deterministic: no atomics, every sum in index order,
//! the weight gradients accumulated chunk by chunk in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm};
use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{chunks, max_rows, Dims, EdgeDropout, Pair};
use crate::device::buffers::fill;
use crate::device::cuda::{grid_for, CudaBackend};
use crate::error::{Error, Result};
use crate::ops::matmul::row_major_gemm;
use crate::ops::n_u32;
use crate::tensor::Tensor;

/// Pair rows per CUDA chunk (whole jets are added until a chunk holds at least this many).
pub const CUDA_CHUNK_ROWS: usize = 16_384;

/// Node sums over rows `start + t·stride`, t < count, as device lists.
struct Segments {
    len: usize,
    node: CudaSlice<u32>,
    start: CudaSlice<u32>,
    stride: CudaSlice<u32>,
    count: CudaSlice<u32>,
}

impl Segments {
    /// `(node, start, stride, count)` rows uploaded.
    fn upload(be: &CudaBackend, rows: &[[u32; 4]]) -> Result<Segments> {
        let col = |k: usize| -> Vec<u32> { rows.iter().map(|r| r[k]).collect() };
        Ok(Segments {
            len: rows.len(),
            node: be.htod(&col(0))?,
            start: be.htod(&col(1))?,
            stride: be.htod(&col(2))?,
            count: be.htod(&col(3))?,
        })
    }
}

/// One chunk's pairs on the device: receiver and sender rows of each pair, and the segments
/// that sum a `[R, H]` buffer by receiver and by sender.
struct DeviceChunk {
    rows: usize,
    recv: CudaSlice<u32>,
    send: CudaSlice<u32>,
    by_receiver: Segments,
    by_sender: Segments,
}

/// The rows of each node in `nodes(pair)` order: an arithmetic progression per node (the
/// chunks are receiver-major with the same senders for every receiver of a jet).
fn segments(pairs: &[Pair], node: impl Fn(&Pair) -> usize) -> Result<Vec<[u32; 4]>> {
    let mut rows: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new(); // first, stride, count
    for (r, p) in pairs.iter().enumerate() {
        let e = rows.entry(node(p)).or_insert((r, 0, 0));
        let expected = e.0 + e.1 * e.2;
        if e.2 == 1 {
            e.1 = r - e.0;
        } else if e.2 > 1 && r != expected {
            return Err(Error::invalid(
                "internal: edge_mlp pair rows are not an arithmetic progression per node",
            ));
        }
        e.2 += 1;
    }
    let u = |v: usize| n_u32("edge_mlp", v);
    rows.into_iter()
        .map(|(n, (first, stride, count))| Ok([u(n)?, u(first)?, u(stride)?, u(count)?]))
        .collect()
}

impl DeviceChunk {
    fn upload(be: &CudaBackend, pairs: &[Pair]) -> Result<DeviceChunk> {
        let u = |v: usize| n_u32("edge_mlp", v);
        let recv = pairs
            .iter()
            .map(|p| u(p.recv))
            .collect::<Result<Vec<_>>>()?;
        let send = pairs
            .iter()
            .map(|p| u(p.send))
            .collect::<Result<Vec<_>>>()?;
        Ok(DeviceChunk {
            rows: pairs.len(),
            recv: be.htod(&recv)?,
            send: be.htod(&send)?,
            by_receiver: Segments::upload(be, &segments(pairs, |p| p.recv)?)?,
            by_sender: Segments::upload(be, &segments(pairs, |p| p.send)?)?,
        })
    }
}

/// The operands on the device: a, c, (W_k, b_k).
struct DeviceOperands<'a> {
    a: &'a CudaSlice<f32>,
    c: &'a CudaSlice<f32>,
    w: Vec<&'a CudaSlice<f32>>,
    bias: Vec<&'a CudaSlice<f32>>,
}

fn operands<'a>(inputs: &[&'a Tensor], layers: usize) -> Result<DeviceOperands<'a>> {
    let slice = |k: usize| inputs[k].cuda().map(|b| &b.slice);
    Ok(DeviceOperands {
        a: slice(0)?,
        c: slice(1)?,
        w: (0..layers)
            .map(|k| slice(2 + 2 * k))
            .collect::<Result<_>>()?,
        bias: (0..layers)
            .map(|k| slice(3 + 2 * k))
            .collect::<Result<_>>()?,
    })
}

/// Dropout as kernel arguments: (on, seed, threshold, scale).
#[derive(Clone, Copy)]
struct DropArgs {
    on: i32,
    seed: u64,
    threshold: u32,
    scale: f32,
}

impl DropArgs {
    fn new(drop: Option<&EdgeDropout>) -> DropArgs {
        match drop {
            Some(dr) => DropArgs {
                on: 1,
                seed: dr.seed,
                threshold: dr.threshold(),
                scale: dr.scale() as f32,
            },
            None => DropArgs {
                on: 0,
                seed: 0,
                threshold: 0,
                scale: 1.0,
            },
        }
    }
}

/// Device buffers reused by every chunk: `act[k]` = φ(z_k), `dropped[k]` = d_k ⊙ act[k] (with
/// dropout), `grad`/`up` (backward), `ones` (the bias-gradient GEMM), each for the largest chunk.
struct Workspace {
    act: Vec<CudaSlice<f32>>,
    dropped: Vec<CudaSlice<f32>>,
    grad: CudaSlice<f32>,
    up: CudaSlice<f32>,
    ones: CudaSlice<f32>,
}

impl Workspace {
    fn new(be: &CudaBackend, d: &Dims, rows: usize, dropout: bool, backward: bool) -> Result<Self> {
        let widest = d.widths.iter().copied().max().unwrap_or(0);
        let buf = |n: usize| be.alloc::<f32>(n.max(1));
        let mut ones = buf(if backward { rows } else { 0 })?;
        if backward && rows > 0 {
            fill(be, &mut ones, rows, 1.0)?;
        }
        Ok(Workspace {
            act: d
                .widths
                .iter()
                .map(|&h| buf(rows * h))
                .collect::<Result<_>>()?,
            dropped: d
                .widths
                .iter()
                .map(|&h| buf(if dropout { rows * h } else { 0 }))
                .collect::<Result<_>>()?,
            grad: buf(if backward { rows * widest } else { 0 })?,
            up: buf(if backward { rows * widest } else { 0 })?,
            ones,
        })
    }
}

/// u^k: the dropped-out activations with dropout, else the activations.
fn input<'a>(
    act: &'a [CudaSlice<f32>],
    dropped: &'a [CudaSlice<f32>],
    k: usize,
    drop: DropArgs,
) -> &'a CudaSlice<f32> {
    if drop.on != 0 {
        &dropped[k]
    } else {
        &act[k]
    }
}

/// Row-major `c [m, n] = op(a)·op(b) + beta·c` (op = transpose where `ta`/`tb`) in cuBLAS
/// (column-major: cᵀ = op(b)ᵀ·op(a)ᵀ).
#[allow(clippy::too_many_arguments)]
fn gemm(
    be: &CudaBackend,
    blas: &CudaBlas,
    (ta, tb): (bool, bool),
    (m, k, n): (usize, usize, usize),
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    beta: f32,
    c: &mut CudaSlice<f32>,
) -> Result<()> {
    if m * n == 0 {
        return Ok(());
    }
    if k == 0 {
        return if beta == 0.0 {
            fill(be, c, m * n, 0.0)
        } else {
            Ok(())
        };
    }
    let cfg = row_major_gemm("edge_mlp", (ta, tb), (m, k, n), beta)?;
    // SAFETY: a holds m·k, b k·n and c m·n floats (the workspace and tensors are sized by the
    // chunk's rows and the layer widths); the leading dimensions describe row-major storage.
    unsafe { blas.gemm(cfg, b, a, c) }.map_err(|e| Error::Cuda {
        what: "cublasSgemm (edge_mlp)".into(),
        msg: format!("{e:?}"),
    })
}

/// Kernel argument block shared by the per-row kernels.
struct RowArgs<'a> {
    chunk: &'a DeviceChunk,
    n: u32,
    alpha: f32,
    drop: DropArgs,
}

/// The per-call part of [`RowArgs`]: particles per jet, the leaky slope, the dropout.
#[derive(Clone, Copy)]
struct RowParams {
    n: u32,
    alpha: f32,
    drop: DropArgs,
}

impl RowParams {
    /// The argument block of one chunk.
    fn on<'c>(self, chunk: &'c DeviceChunk) -> RowArgs<'c> {
        RowArgs {
            chunk,
            n: self.n,
            alpha: self.alpha,
            drop: self.drop,
        }
    }
}

/// Launch `edge_mlp::$name` over `$total` elements (none when 0) with the element count
/// first and then `$arg`s.
macro_rules! launch_rows {
    ($be:expr, $name:literal, $total:expr, $($arg:expr),* $(,)?) => {{
        let total: usize = $total;
        if total > 0 {
            let f = $be.function("edge_mlp", $name)?;
            let t = n_u32("edge_mlp", total)?;
            let mut lb = $be.stream.launch_builder(&f);
            lb.arg(&t);
            $( lb.arg($arg); )*
            // SAFETY: every kernel reads and writes the first `total` elements of [R, H]
            // buffers of the chunk's R rows, and gathers node rows < B·N (the pair lists
            // were built from them).
            $be.check_launch($name, unsafe { lb.launch(grid_for(total)) })?;
        }
    }};
}

/// The chunk's forward into `ws.act` / `ws.dropped`.
fn chunk_forward(
    be: &CudaBackend,
    blas: &CudaBlas,
    ops: &DeviceOperands,
    d: &Dims,
    ra: &RowArgs,
    ws: &mut Workspace,
) -> Result<()> {
    let r = ra.chunk.rows;
    let DropArgs {
        on,
        seed,
        threshold,
        scale,
    } = ra.drop;
    let h0 = n_u32("edge_mlp", d.widths[0])?;
    let (act0, dropped0) = (&mut ws.act[0], &mut ws.dropped[0]);
    launch_rows!(
        be,
        "edge_mlp_first",
        r * d.widths[0],
        &h0,
        &ra.n,
        &ra.chunk.recv,
        &ra.chunk.send,
        ops.a,
        ops.c,
        &ra.alpha,
        &on,
        &seed,
        &threshold,
        &scale,
        act0,
        dropped0,
    );
    for k in 1..=d.layers() {
        let (hi, ho) = (d.widths[k - 1], d.widths[k]);
        let (done, rest) = ws.act.split_at_mut(k);
        let z = &mut rest[0];
        gemm(
            be,
            blas,
            (false, true),
            (r, hi, ho),
            input(done, &ws.dropped, k - 1, ra.drop),
            ops.w[k - 1],
            0.0,
            z,
        )?;
        let (hu, layer) = (n_u32("edge_mlp", ho)?, k as u32);
        let dropped = &mut ws.dropped[k];
        launch_rows!(
            be,
            "edge_mlp_bias_act",
            r * ho,
            &hu,
            &ra.n,
            &layer,
            &ra.chunk.recv,
            &ra.chunk.send,
            ops.bias[k - 1],
            &ra.alpha,
            &on,
            &seed,
            &threshold,
            &scale,
            &mut *z,
            dropped,
        );
    }
    Ok(())
}

/// `out[node] = Σ` of the segments' rows of `x [R, h]`.
fn segment_sum(
    be: &CudaBackend,
    seg: &Segments,
    h: usize,
    x: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    let hu = n_u32("edge_mlp", h)?;
    launch_rows!(
        be,
        "edge_mlp_segment_sum",
        seg.len * h,
        &hu,
        &seg.node,
        &seg.start,
        &seg.stride,
        &seg.count,
        x,
        out,
    );
    Ok(())
}

/// `up = d_k ⊙ φ′(act_k) ⊙ (gather ? g[recv] : up)` on the chunk's rows.
fn local_grad(
    be: &CudaBackend,
    ra: &RowArgs,
    layer: usize,
    h: usize,
    act: &CudaSlice<f32>,
    gather: Option<&CudaSlice<f32>>,
    up: &mut CudaSlice<f32>,
) -> Result<()> {
    let DropArgs {
        on,
        seed,
        threshold,
        scale,
    } = ra.drop;
    let (hu, lu) = (n_u32("edge_mlp", h)?, layer as u32);
    let gathering = gather.is_some() as i32;
    let g = gather.unwrap_or(act); // not read when not gathering
    launch_rows!(
        be,
        "edge_mlp_local",
        ra.chunk.rows * h,
        &hu,
        &ra.n,
        &lu,
        &ra.chunk.recv,
        &ra.chunk.send,
        act,
        g,
        &gathering,
        &ra.alpha,
        &on,
        &seed,
        &threshold,
        &scale,
        up,
    );
    Ok(())
}

/// Everything a call needs: backend, cuBLAS, operands, chunks uploaded, workspace.
struct Call<'a> {
    be: Arc<CudaBackend>,
    blas: Arc<CudaBlas>,
    ops: DeviceOperands<'a>,
    chunks: Vec<DeviceChunk>,
    ws: Workspace,
    rows: RowParams,
}

impl<'a> Call<'a> {
    fn new(
        inputs: &[&'a Tensor],
        d: &Dims,
        real: &[bool],
        alpha: f64,
        drop: Option<&EdgeDropout>,
        backward: bool,
    ) -> Result<Call<'a>> {
        let be = inputs[0].cuda()?.backend.clone();
        let pairs = chunks(d, real, CUDA_CHUNK_ROWS);
        let chunks = pairs
            .iter()
            .map(|p| DeviceChunk::upload(&be, p))
            .collect::<Result<Vec<_>>>()?;
        let ws = Workspace::new(&be, d, max_rows(&pairs), drop.is_some(), backward)?;
        Ok(Call {
            blas: be.blas()?,
            ops: operands(inputs, d.layers())?,
            chunks,
            ws,
            rows: RowParams {
                n: n_u32("edge_mlp", d.n)?,
                alpha: alpha as f32,
                drop: DropArgs::new(drop),
            },
            be,
        })
    }

    fn forward_chunk(&mut self, k: usize, d: &Dims) -> Result<()> {
        let ra = self.rows.on(&self.chunks[k]);
        chunk_forward(&self.be, &self.blas, &self.ops, d, &ra, &mut self.ws)
    }
}

/// The forward (module doc): `[B, N, H_L]`.
pub(super) fn forward(
    inputs: &[&Tensor],
    d: &Dims,
    real: &[bool],
    alpha: f64,
    drop: Option<&EdgeDropout>,
) -> Result<Tensor> {
    let mut call = Call::new(inputs, d, real, alpha, drop, false)?;
    let (l, hl) = (d.layers(), d.widths[d.layers()]);
    let mut out = call.be.alloc_zeros::<f32>(d.b * d.n * hl)?;
    for k in 0..call.chunks.len() {
        call.forward_chunk(k, d)?;
        let u = input(&call.ws.act, &call.ws.dropped, l, call.rows.drop);
        segment_sum(&call.be, &call.chunks[k].by_receiver, hl, u, &mut out)?;
    }
    Ok(Tensor::from_cuda(out, call.be.clone(), &[d.b, d.n, hl]))
}

/// The backward (module doc): `[∂a, ∂c, ∂W₁, ∂b₁, …]` from `g = ∂L/∂out [B, N, H_L]`.
pub(super) fn backward(
    inputs: &[&Tensor],
    d: &Dims,
    real: &[bool],
    alpha: f64,
    drop: Option<&EdgeDropout>,
    g: &Tensor,
) -> Result<Vec<Tensor>> {
    let mut call = Call::new(inputs, d, real, alpha, drop, true)?;
    let be = call.be.clone();
    let (l, h0) = (d.layers(), d.widths[0]);
    let g = &g.cuda()?.slice;
    let mut ga = be.alloc_zeros::<f32>(d.b * d.n * h0)?;
    let mut gc = be.alloc_zeros::<f32>(d.b * d.n * h0)?;
    let mut gw = (1..=l)
        .map(|k| {
            Ok((
                be.alloc_zeros::<f32>(d.widths[k] * d.widths[k - 1])?,
                be.alloc_zeros::<f32>(d.widths[k])?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    for ck in 0..call.chunks.len() {
        call.forward_chunk(ck, d)?;
        let Call {
            ops,
            chunks,
            ws,
            blas,
            rows,
            ..
        } = &mut call;
        let ra = rows.on(&chunks[ck]);
        let r = ra.chunk.rows;
        local_grad(&be, &ra, l, d.widths[l], &ws.act[l], Some(g), &mut ws.grad)?;
        for k in (1..=l).rev() {
            let (hi, ho) = (d.widths[k - 1], d.widths[k]);
            let (w_acc, b_acc) = &mut gw[k - 1];
            let u = input(&ws.act, &ws.dropped, k - 1, ra.drop);
            gemm(
                &be,
                blas,
                (true, false),
                (ho, r, hi),
                &ws.grad,
                u,
                1.0,
                w_acc,
            )?;
            gemm(
                &be,
                blas,
                (false, false),
                (1, r, ho),
                &ws.ones,
                &ws.grad,
                1.0,
                b_acc,
            )?;
            gemm(
                &be,
                blas,
                (false, false),
                (r, ho, hi),
                &ws.grad,
                ops.w[k - 1],
                0.0,
                &mut ws.up,
            )?;
            local_grad(&be, &ra, k - 1, hi, &ws.act[k - 1], None, &mut ws.up)?;
            std::mem::swap(&mut ws.grad, &mut ws.up);
        }
        segment_sum(&be, &ra.chunk.by_receiver, h0, &ws.grad, &mut ga)?;
        segment_sum(&be, &ra.chunk.by_sender, h0, &ws.grad, &mut gc)?;
    }
    let rows = [d.b, d.n, h0];
    let mut out = vec![
        Tensor::from_cuda(ga, be.clone(), &rows),
        Tensor::from_cuda(gc, be.clone(), &rows),
    ];
    for (k, (w, b)) in gw.into_iter().enumerate() {
        let (hi, ho) = (d.widths[k], d.widths[k + 1]);
        out.push(Tensor::from_cuda(w, be.clone(), &[ho, hi]));
        out.push(Tensor::from_cuda(b, be.clone(), &[ho]));
    }
    Ok(out)
}
