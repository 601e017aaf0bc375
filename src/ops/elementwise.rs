//! Elementwise ops: unary functions y = f(x) with their derivatives, NumPy-broadcasting
//! binary arithmetic, and `select` (where).

use cudarc::driver::PushKernelArg;

use crate::autograd::{Op, Var};
use crate::device::cuda::grid_for;
use crate::error::{Error, Result};
use crate::ops::{for_each_chunk, n_u32, Strided3, PAR_MIN};
use crate::real::Real;
use crate::shape::{broadcast_shapes, broadcast_strides, numel, StridedLayout};
use crate::tensor::{Storage, Tensor};
use crate::with_real;

/// Elements per rayon task for elementwise loops.
const CHUNK: usize = PAR_MIN;

/// A unary function with up to two scalar parameters. The code is the kernel's switch case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// −x
    Neg,
    /// eˣ
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// x²
    Square,
    /// xᵖ
    Pow(f64),
    /// |x| (derivative 0 at 0)
    Abs,
    /// max(x, 0)
    Relu,
    /// x for x > 0, αx otherwise
    LeakyRelu(f64),
    /// x for x > 0, α(eˣ − 1) otherwise
    Elu(f64),
    /// tanh x
    Tanh,
    /// 1 / (1 + e⁻ˣ), evaluated without overflow
    Sigmoid,
    /// ln(1 + eˣ) = max(x,0) + ln(1 + e^−|x|)
    Softplus,
    /// min(max(x, lo), hi); gradient passes where lo ≤ x ≤ hi
    Clamp(f64, f64),
    /// x + c
    AddScalar(f64),
    /// c·x
    MulScalar(f64),
    /// 1/x
    Recip,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// sinh x
    Sinh,
    /// cosh x
    Cosh,
}

impl UnaryOp {
    fn code_params(self) -> (i32, f32, f32) {
        use UnaryOp::*;
        let (code, p0, p1) = match self {
            Neg => (0, 0., 0.),
            Exp => (1, 0., 0.),
            Log => (2, 0., 0.),
            Sqrt => (3, 0., 0.),
            Square => (4, 0., 0.),
            Pow(p) => (5, p, 0.),
            Abs => (6, 0., 0.),
            Relu => (7, 0., 0.),
            LeakyRelu(a) => (8, a, 0.),
            Elu(a) => (9, a, 0.),
            Tanh => (10, 0., 0.),
            Sigmoid => (11, 0., 0.),
            Softplus => (12, 0., 0.),
            Clamp(lo, hi) => (13, lo, hi),
            AddScalar(c) => (14, c, 0.),
            MulScalar(c) => (15, c, 0.),
            Recip => (16, 0., 0.),
            Sin => (17, 0., 0.),
            Cos => (18, 0., 0.),
            Sinh => (19, 0., 0.),
            Cosh => (20, 0., 0.),
        };
        (code, p0 as f32, p1 as f32)
    }

    /// y = f(x) for one scalar (the CPU reference).
    #[inline(always)]
    pub fn apply<T: Real>(self, x: T) -> T {
        use UnaryOp::*;
        let zero = T::zero();
        let one = T::one();
        let p = T::from_f64;
        match self {
            Neg => -x,
            Exp => x.exp(),
            Log => x.ln(),
            Sqrt => x.sqrt(),
            Square => x * x,
            Pow(e) => x.powf(p(e)),
            Abs => x.abs(),
            Relu => {
                if x > zero {
                    x
                } else {
                    zero
                }
            }
            LeakyRelu(a) => {
                if x > zero {
                    x
                } else {
                    p(a) * x
                }
            }
            Elu(a) => {
                if x > zero {
                    x
                } else {
                    p(a) * (x.exp() - one)
                }
            }
            Tanh => x.tanh(),
            Sigmoid => sigmoid(x),
            Softplus => (if x > zero { x } else { zero }) + (-x.abs()).exp().ln_1p(),
            Clamp(lo, hi) => {
                let v = if x < p(lo) { p(lo) } else { x };
                if v > p(hi) {
                    p(hi)
                } else {
                    v
                }
            }
            AddScalar(c) => x + p(c),
            MulScalar(c) => x * p(c),
            Recip => one / x,
            Sin => x.sin(),
            Cos => x.cos(),
            Sinh => x.sinh(),
            Cosh => x.cosh(),
        }
    }

    /// dL/dx from x, y = f(x) and g = dL/dy (the CPU reference of the backward kernel).
    #[inline(always)]
    pub fn grad<T: Real>(self, x: T, y: T, g: T) -> T {
        use UnaryOp::*;
        let zero = T::zero();
        let one = T::one();
        let p = T::from_f64;
        match self {
            Neg => -g,
            Exp => g * y,
            Log => g / x,
            Sqrt => g * T::from_f64(0.5) / y,
            Square => T::from_f64(2.0) * x * g,
            Pow(e) => g * p(e) * x.powf(p(e) - one),
            Abs => {
                if x > zero {
                    g
                } else if x < zero {
                    -g
                } else {
                    zero
                }
            }
            Relu => {
                if x > zero {
                    g
                } else {
                    zero
                }
            }
            LeakyRelu(a) => {
                if x > zero {
                    g
                } else {
                    p(a) * g
                }
            }
            Elu(a) => {
                if x > zero {
                    g
                } else {
                    g * (y + p(a))
                }
            }
            Tanh => g * (one - y * y),
            Sigmoid => g * y * (one - y),
            Softplus => g * sigmoid(x),
            Clamp(lo, hi) => {
                if x >= p(lo) && x <= p(hi) {
                    g
                } else {
                    zero
                }
            }
            AddScalar(_) => g,
            MulScalar(c) => g * p(c),
            Recip => -g * y * y,
            Sin => g * x.cos(),
            Cos => -g * x.sin(),
            Sinh => g * x.cosh(),
            Cosh => g * x.sinh(),
        }
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    let one = T::one();
    if x >= T::zero() {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

/// Run `$body` with `$op` bound to a copy of `$value` whose variant is a compile-time
/// constant in each arm, so the per-element `match` in `apply`/`grad` folds away and every
/// op gets its own tight (vectorisable) loop.
macro_rules! specialize_unary {
    ($value:expr, $op:ident => $body:expr) => {{
        use UnaryOp::*;
        match $value {
            Neg => {
                let $op = Neg;
                $body
            }
            Exp => {
                let $op = Exp;
                $body
            }
            Log => {
                let $op = Log;
                $body
            }
            Sqrt => {
                let $op = Sqrt;
                $body
            }
            Square => {
                let $op = Square;
                $body
            }
            Pow(p) => {
                let $op = Pow(p);
                $body
            }
            Abs => {
                let $op = Abs;
                $body
            }
            Relu => {
                let $op = Relu;
                $body
            }
            LeakyRelu(a) => {
                let $op = LeakyRelu(a);
                $body
            }
            Elu(a) => {
                let $op = Elu(a);
                $body
            }
            Tanh => {
                let $op = Tanh;
                $body
            }
            Sigmoid => {
                let $op = Sigmoid;
                $body
            }
            Softplus => {
                let $op = Softplus;
                $body
            }
            Clamp(lo, hi) => {
                let $op = Clamp(lo, hi);
                $body
            }
            AddScalar(c) => {
                let $op = AddScalar(c);
                $body
            }
            MulScalar(c) => {
                let $op = MulScalar(c);
                $body
            }
            Recip => {
                let $op = Recip;
                $body
            }
            Sin => {
                let $op = Sin;
                $body
            }
            Cos => {
                let $op = Cos;
                $body
            }
            Sinh => {
                let $op = Sinh;
                $body
            }
            Cosh => {
                let $op = Cosh;
                $body
            }
        }
    }};
}

macro_rules! specialize_binary {
    ($value:expr, $op:ident => $body:expr) => {{
        match $value {
            BinaryOp::Add => {
                let $op = BinaryOp::Add;
                $body
            }
            BinaryOp::Sub => {
                let $op = BinaryOp::Sub;
                $body
            }
            BinaryOp::Mul => {
                let $op = BinaryOp::Mul;
                $body
            }
            BinaryOp::Div => {
                let $op = BinaryOp::Div;
                $body
            }
            BinaryOp::Maximum => {
                let $op = BinaryOp::Maximum;
                $body
            }
        }
    }};
}

/// Binary arithmetic with NumPy broadcasting. The code is the kernel's switch case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// max(a, b), NaN-propagating from a
    Maximum,
}

impl UnaryOp {
    /// `out[i] = f(xs[i])`; the op is matched once, outside the loop, and the loop runs on
    /// the instruction set [`crate::simd::isa`] picks.
    pub fn apply_slice<T: Real>(self, xs: &[T], out: &mut [T]) {
        unary_slice(crate::simd::isa(), self, xs, out)
    }
    /// `out[i] = grad(xs[i], ys[i], gs[i])`; the op is matched once, outside the loop, and
    /// the loop runs on the instruction set [`crate::simd::isa`] picks.
    pub fn grad_slice<T: Real>(self, xs: &[T], ys: &[T], gs: &[T], out: &mut [T]) {
        unary_grad_slice(crate::simd::isa(), self, xs, ys, gs, out)
    }
}

crate::simd::dispatch! {
    /// [`UnaryOp::apply_slice`] compiled for `isa`.
    fn unary_slice<T: Real>(isa: Isa, op: UnaryOp, xs: &[T], out: &mut [T]) = unary_slice_body;
}

#[inline(always)]
fn unary_slice_body<T: Real>(op: UnaryOp, xs: &[T], out: &mut [T]) {
    specialize_unary!(op, op => for (o, &x) in out.iter_mut().zip(xs) { *o = op.apply(x); })
}

crate::simd::dispatch! {
    /// [`UnaryOp::grad_slice`] compiled for `isa`.
    fn unary_grad_slice<T: Real>(
        isa: Isa,
        op: UnaryOp,
        xs: &[T],
        ys: &[T],
        gs: &[T],
        out: &mut [T],
    ) = unary_grad_slice_body;
}

#[inline(always)]
fn unary_grad_slice_body<T: Real>(op: UnaryOp, xs: &[T], ys: &[T], gs: &[T], out: &mut [T]) {
    specialize_unary!(op, op => for (((o, &x), &y), &g) in out.iter_mut().zip(xs).zip(ys).zip(gs) { *o = op.grad(x, y, g); })
}

impl BinaryOp {
    fn code(self) -> i32 {
        self as i32
    }
    /// One output row: `out[j] = a[oa + j·sa] (op) b[ob + j·sb]`, with contiguous and
    /// row-broadcast fast paths; the op is matched once, outside the loop.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_row<T: Real>(
        self,
        out: &mut [T],
        a: &[T],
        oa: usize,
        sa: usize,
        b: &[T],
        ob: usize,
        sb: usize,
    ) {
        let len = out.len();
        specialize_binary!(self, op => {
            if sa == 1 && sb == 1 {
                for ((o, &x), &y) in out.iter_mut().zip(&a[oa..oa + len]).zip(&b[ob..ob + len]) { *o = op.apply(x, y); }
            } else if sa == 1 && sb == 0 {
                let y = b[ob];
                for (o, &x) in out.iter_mut().zip(&a[oa..oa + len]) { *o = op.apply(x, y); }
            } else if sa == 0 && sb == 1 {
                let x = a[oa];
                for (o, &y) in out.iter_mut().zip(&b[ob..ob + len]) { *o = op.apply(x, y); }
            } else {
                for (j, o) in out.iter_mut().enumerate() { *o = op.apply(a[oa + j * sa], b[ob + j * sb]); }
            }
        })
    }

    /// a (op) b for one scalar pair.
    #[inline(always)]
    pub fn apply<T: Real>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => a.max_nan(b),
        }
    }
}

// ------------------------------------------------------------------ tensor-level forward

/// y = f(x) elementwise.
pub fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    match x.storage() {
        Storage::Cuda(buf) => {
            let be = &buf.backend;
            let n = x.numel();
            let mut out = be.alloc::<f32>(n)?;
            let (code, p0, p1) = op.code_params();
            let f = be.function("elementwise", "unary_forward")?;
            let nn = n_u32("unary", n)?;
            let mut b = be.stream.launch_builder(&f);
            b.arg(&code)
                .arg(&p0)
                .arg(&p1)
                .arg(&nn)
                .arg(&buf.slice)
                .arg(&mut out);
            // SAFETY: argument list matches the kernel signature; buffers hold n elements.
            be.check_launch("unary_forward", unsafe { b.launch(grid_for(n)) })?;
            Ok(Tensor::from_cuda(out, be.clone(), x.shape()))
        }
        _ => with_real!(x, T => {
            let xs = x.cpu::<T>()?;
            let mut out = vec![T::zero(); xs.len()];
            for_each_chunk(&mut out, CHUNK, |c, o| op.apply_slice(&xs[c * CHUNK..c * CHUNK + o.len()], o));
            Tensor::from_cpu_vec(out, x.shape())
        }),
    }
}

/// dL/dx of y = f(x) given x, y and g = dL/dy (all the same shape).
pub fn unary_backward(op: UnaryOp, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    for t in [y, g] {
        x.same_place("unary_backward", t)?;
        if t.shape() != x.shape() {
            return Err(Error::shape(
                "unary_backward",
                format!(
                    "x {:?}, y and g must share one shape, got {:?}",
                    x.shape(),
                    t.shape()
                ),
            ));
        }
    }
    match x.storage() {
        Storage::Cuda(buf) => {
            let be = &buf.backend;
            let n = x.numel();
            let mut out = be.alloc::<f32>(n)?;
            let (code, p0, p1) = op.code_params();
            let f = be.function("elementwise", "unary_backward")?;
            let nn = n_u32("unary_backward", n)?;
            let mut b = be.stream.launch_builder(&f);
            b.arg(&code).arg(&p0).arg(&p1).arg(&nn);
            b.arg(&buf.slice)
                .arg(&y.cuda()?.slice)
                .arg(&g.cuda()?.slice)
                .arg(&mut out);
            // SAFETY: argument list matches the kernel signature; buffers hold n elements.
            be.check_launch("unary_backward", unsafe { b.launch(grid_for(n)) })?;
            Ok(Tensor::from_cuda(out, be.clone(), x.shape()))
        }
        _ => with_real!(x, T => {
            let (xs, ys, gs) = (x.cpu::<T>()?, y.cpu::<T>()?, g.cpu::<T>()?);
            let mut out = vec![T::zero(); xs.len()];
            for_each_chunk(&mut out, CHUNK, |c, o| {
                let r = c * CHUNK..c * CHUNK + o.len();
                op.grad_slice(&xs[r.clone()], &ys[r.clone()], &gs[r], o)
            });
            Tensor::from_cpu_vec(out, x.shape())
        }),
    }
}

/// `out = a (op) b` with NumPy broadcasting; out has the broadcast shape.
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.same_place("binary op", b)?;
    let shape = broadcast_shapes("binary op", a.shape(), b.shape())?;
    let layout = StridedLayout::new(
        &shape,
        vec![
            broadcast_strides(a.shape(), &shape),
            broadcast_strides(b.shape(), &shape),
        ],
    );
    let n = numel(&shape);
    match a.storage() {
        Storage::Cuda(buf) => {
            let be = &buf.backend;
            let mut out = be.alloc::<f32>(n)?;
            let l = Strided3::from_layout("binary", &layout)?;
            let f = be.function("elementwise", "binary_forward")?;
            let (code, nn) = (op.code(), n_u32("binary", n)?);
            let mut lb = be.stream.launch_builder(&f);
            lb.arg(&code)
                .arg(&l)
                .arg(&nn)
                .arg(&buf.slice)
                .arg(&b.cuda()?.slice)
                .arg(&mut out);
            // SAFETY: the layout addresses only elements inside a and b.
            be.check_launch("binary_forward", unsafe { lb.launch(grid_for(n)) })?;
            Ok(Tensor::from_cuda(out, be.clone(), &shape))
        }
        _ => with_real!(a, T => {
            let (xs, ys) = (a.cpu::<T>()?, b.cpu::<T>()?);
            let out = map_rows(&layout, n, |out_row, offs, st| op.apply_row(out_row, xs, offs[0], st[0], ys, offs[1], st[1]));
            Tensor::from_cpu_vec(out, &shape)
        }),
    }
}

/// Fill an output of `n` elements row by row (rows of `layout.row_len()`), in parallel;
/// `f(out_row, operand_offsets, operand_inner_strides)` computes one row. Only one index
/// decomposition per row, so broadcasting costs no divisions in the inner loop.
pub(crate) fn map_rows<T: Real>(
    layout: &StridedLayout,
    n: usize,
    f: impl Fn(&mut [T], &[usize; 3], &[usize; 3]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); n];
    if n == 0 {
        return out;
    }
    let row = layout.row_len().max(1);
    let k = layout.strides.len();
    let strides: [usize; 3] =
        std::array::from_fn(|i| if i < k { layout.inner_stride(i) } else { 0 });
    let rows_per_task = (CHUNK / row).max(1);
    for_each_chunk(&mut out, rows_per_task * row, |t, chunk| {
        for (r, out_row) in chunk.chunks_mut(row).enumerate() {
            let start = (t * rows_per_task + r) * row;
            let offs: [usize; 3] =
                std::array::from_fn(|i| if i < k { layout.offset(i, start) } else { 0 });
            f(out_row, &offs, &strides);
        }
    });
    out
}

/// `out = cond ≠ 0 ? a : b` with broadcasting over all three. The unselected value is never
/// used in arithmetic, so NaN/inf there cannot leak.
pub fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    cond.same_place("select", a)?;
    a.same_place("select", b)?;
    let shape = broadcast_shapes(
        "select",
        &broadcast_shapes("select", cond.shape(), a.shape())?,
        b.shape(),
    )?;
    let layout = StridedLayout::new(
        &shape,
        vec![
            broadcast_strides(cond.shape(), &shape),
            broadcast_strides(a.shape(), &shape),
            broadcast_strides(b.shape(), &shape),
        ],
    );
    let n = numel(&shape);
    match a.storage() {
        Storage::Cuda(buf) => {
            let be = &buf.backend;
            let mut out = be.alloc::<f32>(n)?;
            let l = Strided3::from_layout("select", &layout)?;
            let f = be.function("elementwise", "select_forward")?;
            let nn = n_u32("select", n)?;
            let mut lb = be.stream.launch_builder(&f);
            lb.arg(&l)
                .arg(&nn)
                .arg(&cond.cuda()?.slice)
                .arg(&buf.slice)
                .arg(&b.cuda()?.slice)
                .arg(&mut out);
            // SAFETY: the layout addresses only elements inside cond, a and b.
            be.check_launch("select_forward", unsafe { lb.launch(grid_for(n)) })?;
            Ok(Tensor::from_cuda(out, be.clone(), &shape))
        }
        _ => with_real!(a, T => {
            let (cs, xs, ys) = (cond.cpu::<T>()?, a.cpu::<T>()?, b.cpu::<T>()?);
            let out = map_rows(&layout, n, |out_row, offs, st| {
                for (j, o) in out_row.iter_mut().enumerate() {
                    *o = if cs[offs[0] + j * st[0]] != T::zero() { xs[offs[1] + j * st[1]] } else { ys[offs[2] + j * st[2]] };
                }
            });
            Tensor::from_cpu_vec(out, &shape)
        }),
    }
}

// ------------------------------------------------------------------ tape ops

impl Var {
    pub(crate) fn unary_op(&self, op: UnaryOp) -> Result<Var> {
        let y = unary(op, self.value())?;
        self.tape().push(Op::Unary(op), &[self], y)
    }
    /// −x
    pub fn neg(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Neg)
    }
    /// eˣ
    pub fn exp(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Exp)
    }
    /// ln x
    pub fn log(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Log)
    }
    /// √x
    pub fn sqrt(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Sqrt)
    }
    /// x²
    pub fn square(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Square)
    }
    /// xᵖ (scalar exponent)
    pub fn powf(&self, p: f64) -> Result<Var> {
        self.unary_op(UnaryOp::Pow(p))
    }
    /// |x|
    pub fn abs(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Abs)
    }
    /// max(x, 0)
    pub fn relu(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Relu)
    }
    /// x > 0 ? x : αx
    pub fn leaky_relu(&self, alpha: f64) -> Result<Var> {
        self.unary_op(UnaryOp::LeakyRelu(alpha))
    }
    /// x > 0 ? x : α(eˣ−1)
    pub fn elu(&self, alpha: f64) -> Result<Var> {
        self.unary_op(UnaryOp::Elu(alpha))
    }
    /// tanh x
    pub fn tanh(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Tanh)
    }
    /// 1/(1+e⁻ˣ)
    pub fn sigmoid(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Sigmoid)
    }
    /// ln(1+eˣ)
    pub fn softplus(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Softplus)
    }
    /// min(max(x, lo), hi)
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Var> {
        self.unary_op(UnaryOp::Clamp(lo, hi))
    }
    /// x + c
    pub fn add_scalar(&self, c: f64) -> Result<Var> {
        self.unary_op(UnaryOp::AddScalar(c))
    }
    /// c·x
    pub fn mul_scalar(&self, c: f64) -> Result<Var> {
        self.unary_op(UnaryOp::MulScalar(c))
    }
    /// sin x
    pub fn sin(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Sin)
    }
    /// cos x
    pub fn cos(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Cos)
    }
    /// sinh x
    pub fn sinh(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Sinh)
    }
    /// cosh x
    pub fn cosh(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Cosh)
    }
    /// 1/x
    pub fn recip(&self) -> Result<Var> {
        self.unary_op(UnaryOp::Recip)
    }

    pub(crate) fn binary_op(&self, op: BinaryOp, other: &Var) -> Result<Var> {
        let y = binary(op, self.value(), other.value())?;
        self.tape().push(Op::Binary(op), &[self, other], y)
    }
    /// a + b (broadcasting)
    pub fn add(&self, other: &Var) -> Result<Var> {
        self.binary_op(BinaryOp::Add, other)
    }
    /// a − b (broadcasting)
    pub fn sub(&self, other: &Var) -> Result<Var> {
        self.binary_op(BinaryOp::Sub, other)
    }
    /// a · b (broadcasting); with a 0/1 mask this is the mask-multiply for padded particles
    pub fn mul(&self, other: &Var) -> Result<Var> {
        self.binary_op(BinaryOp::Mul, other)
    }
    /// a / b (broadcasting)
    pub fn div(&self, other: &Var) -> Result<Var> {
        self.binary_op(BinaryOp::Div, other)
    }
    /// max(a, b) elementwise (broadcasting); the gradient goes to a where a ≥ b
    pub fn maximum(&self, other: &Var) -> Result<Var> {
        self.binary_op(BinaryOp::Maximum, other)
    }

    /// `cond ≠ 0 ? self : other` with broadcasting; `cond` is a constant mask.
    pub fn select(cond: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        let y = select(cond, a.value(), b.value())?;
        a.tape().push(Op::Select(cond.clone()), &[a, b], y)
    }
}

/// g · f′(x) in differentiable ops, for recorded (higher-order) backward passes: f′ as an
/// expression in x or y = f(x). Where f′ is piecewise constant (|x|, relu, leaky relu,
/// clamp) it is a constant mask — its own derivative is 0 almost everywhere.
pub(crate) fn unary_grad_graph(op: UnaryOp, x: &Var, y: &Var, g: &Var) -> Result<Var> {
    use UnaryOp::*;
    // f′(x) for a piecewise-linear f, as a constant: the fast rule applied to g = 1.
    let slope = || -> Result<Var> {
        let ones = x.value().full_like(1.0)?;
        Ok(x.constant(unary_backward(op, x.value(), y.value(), &ones)?))
    };
    match op {
        Neg => g.neg(),
        Exp => g.mul(y),
        Log => g.div(x),
        Sqrt => g.div(y)?.mul_scalar(0.5),
        Square => g.mul(x)?.mul_scalar(2.0),
        Pow(e) => g.mul(&x.powf(e - 1.0)?)?.mul_scalar(e),
        Abs | Relu | LeakyRelu(_) | Clamp(..) => g.mul(&slope()?),
        // x > 0: g; else g·(y + α)
        Elu(a) => {
            let positive = unary_backward(Relu, x.value(), y.value(), &x.value().full_like(1.0)?)?;
            Var::select(&positive, g, &g.mul(&y.add_scalar(a)?)?)
        }
        Tanh => g.sub(&g.mul(&y.square()?)?),
        Sigmoid => g.mul(&y.sub(&y.square()?)?),
        Softplus => g.mul(&x.sigmoid()?),
        AddScalar(_) => Ok(g.clone()),
        MulScalar(c) => g.mul_scalar(c),
        Recip => g.mul(&y.square()?)?.neg(),
        Sin => g.mul(&x.cos()?),
        Cos => g.mul(&x.sin()?)?.neg(),
        Sinh => g.mul(&x.cosh()?),
        Cosh => g.mul(&x.sinh()?),
    }
}

#[cfg(test)]
mod simd_tests {
    use super::*;
    use crate::simd::Isa;

    /// Every unary op's forward and backward loop gives the same bits on every instruction
    /// set this CPU has, in f32 and f64.
    #[test]
    fn unary_loops_are_the_same_on_every_isa() {
        use UnaryOp::*;
        let ops = [
            Neg,
            Exp,
            Log,
            Sqrt,
            Square,
            Pow(1.7),
            Abs,
            Relu,
            LeakyRelu(0.1),
            Elu(1.0),
            Tanh,
            Sigmoid,
            Softplus,
            Clamp(-0.5, 0.7),
            AddScalar(0.3),
            MulScalar(-2.0),
            Recip,
            Sin,
            Cos,
            Sinh,
            Cosh,
        ];
        fn check<T: Real>(op: UnaryOp) {
            let xs: Vec<T> = (0..203)
                .map(|i| T::from_f64(-9.0 + i as f64 * 0.09))
                .collect();
            let ys: Vec<T> = xs.iter().map(|&x| op.apply(x)).collect();
            let gs: Vec<T> = xs.iter().map(|&x| T::from_f64(0.5) - x).collect();
            let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            let run = |isa: Isa| {
                let (mut y, mut g) = (vec![T::zero(); xs.len()], vec![T::zero(); xs.len()]);
                unary_slice(isa, op, &xs, &mut y);
                unary_grad_slice(isa, op, &xs, &ys, &gs, &mut g);
                (bits(&y), bits(&g))
            };
            let reference = run(Isa::PORTABLE);
            assert_eq!(reference.0, bits(&ys), "{op:?}: the loop is the scalar op");
            for isa in Isa::available() {
                assert_eq!(run(isa), reference, "{op:?} on {isa}");
            }
        }
        for op in ops {
            check::<f32>(op);
            check::<f64>(op);
        }
    }
}
