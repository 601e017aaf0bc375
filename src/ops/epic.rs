//! The EPiC layer (Buhmann et al., "EPiC-ly fast particle cloud generation") as two fused
//! tape ops through [`CustomOp`]: the **global update** (masked mean and sum pooling of the
//! particles, then the global MLP with its residual) and the **particle update** (the
//! per-particle MLP on [particle, global, time] with its residual and the mask). One EPiC
//! layer is `g ← epic_global(h, g, …)` then `h ← epic_particle(h, g, …)`.
//!
//! ```text
//! global:   cnt = max(Σ_p m_p, 1),  S = Σ_p m_p h_p,  q = [S/cnt, s·S, g, e]
//!           g′ = σ(W₂ σ(W₁ q + b₁) + b₂ + g)                       [B, G]
//! particle: a_p = W₃ [h_p, g′, τ] + b₃,  h′_p = m_p · σ(W₄ σ(a_p) + b₄ + h_p)   [B, P, H]
//! ```
//! σ = leaky ReLU (slope α), s = sum scale, e = the extra global inputs (time embedding,
//! context). Shapes: h `[B, P, H]`, mask `[B, P]` (a constant), g `[B, G]`, e `[B, E]`,
//! τ `[B, T]`; W₁ `[H₁, 2H + G + E]`, W₂ `[G, H₁]`, W₃ `[H₂, H + G + T]`, W₄ `[H, H₂]`.
//!
//! What fusing buys on the CPU: the particle MLP's global and time columns are applied once
//! per jet (W₃[:, H:]·[g′, τ]) instead of once per particle after broadcasting and
//! concatenating, padded particles are skipped, and no intermediate tensor is recorded —
//! one tape node per update. On CUDA each update is one block per jet (`kernels/epic.cu`,
//! [`cuda`]) plus a weight-gradient kernel. Both ops are once-differentiable; their backward
//! is hand-written (the pre-activations are saved).

mod cpu;
mod cuda;

use std::any::Any;

use crate::autograd::{saved_as, CustomForward, CustomOp, Var};
use crate::error::{Error, Result};
use crate::ops::expect_shape;
use crate::tensor::{DType, Tensor};

/// The sizes of a global update, checked against the inputs.
#[derive(Clone, Copy, Debug)]
struct GlobalDims {
    b: usize,
    p: usize,
    h: usize,
    g: usize,
    e: usize,
    h1: usize,
}

impl GlobalDims {
    fn q(&self) -> usize {
        2 * self.h + self.g + self.e
    }
    fn of(inputs: &[&Tensor], mask: &Tensor) -> Result<GlobalDims> {
        const OP: &str = "epic_global";
        if inputs.len() != 7 {
            return Err(Error::invalid("epic_global takes h, g, e, W1, b1, W2, b2"));
        }
        let hs = inputs[0].shape();
        if hs.len() != 3 {
            return Err(Error::shape(OP, format!("h must be [B, P, H], got {hs:?}")));
        }
        let (b, p, h) = (hs[0], hs[1], hs[2]);
        let g = inputs[1].shape().last().copied().unwrap_or(0);
        let e = inputs[2].shape().last().copied().unwrap_or(0);
        let h1 = inputs[3].shape().first().copied().unwrap_or(0);
        let d = GlobalDims { b, p, h, g, e, h1 };
        expect_shape(OP, "mask", mask.shape(), &[b, p])?;
        expect_shape(OP, "g", inputs[1].shape(), &[b, g])?;
        expect_shape(OP, "e", inputs[2].shape(), &[b, e])?;
        expect_shape(OP, "W1", inputs[3].shape(), &[h1, d.q()])?;
        expect_shape(OP, "b1", inputs[4].shape(), &[h1])?;
        expect_shape(OP, "W2", inputs[5].shape(), &[g, h1])?;
        expect_shape(OP, "b2", inputs[6].shape(), &[g])?;
        Ok(d)
    }
}

/// The global update's saved state: q `[B, Q]`, the pre-activations a `[B, H₁]`, c `[B, G]`
/// (on the inputs' device).
struct GlobalSaved {
    q: Tensor,
    a: Tensor,
    c: Tensor,
}

fn same_dtype(op: &'static str, inputs: &[&Tensor], mask: &Tensor) -> Result<DType> {
    let dt = inputs[0].dtype();
    if inputs.iter().any(|t| t.dtype() != dt) || mask.dtype() != dt {
        return Err(Error::DType {
            op,
            msg: "all inputs (and the mask) must have one dtype".into(),
        });
    }
    Ok(dt)
}

/// The fused global update (module doc) as a tape op.
struct EpicGlobalOp {
    mask: Tensor,
    sum_scale: f64,
    slope: f64,
}

impl CustomOp for EpicGlobalOp {
    fn name(&self) -> &'static str {
        "epic_global"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = GlobalDims::of(inputs, &self.mask)?;
        match same_dtype("epic_global", inputs, &self.mask)? {
            DType::F32 => {
                cpu::global_forward::<f32>(inputs, &self.mask, d, self.sum_scale, self.slope)
            }
            DType::F64 => {
                cpu::global_forward::<f64>(inputs, &self.mask, d, self.sum_scale, self.slope)
            }
        }
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = GlobalDims::of(inputs, &self.mask)?;
        self.mask.same_place("epic_global", inputs[0])?;
        cuda::global_forward(inputs, &self.mask, d, self.sum_scale, self.slope)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let d = GlobalDims::of(inputs, &self.mask)?;
        expect_shape("epic_global", "gradient", g.shape(), &[d.b, d.g])?;
        let s = saved_as::<GlobalSaved>(saved, "epic_global")?;
        let (m, sc, sl) = (&self.mask, self.sum_scale, self.slope);
        if inputs[0].device().is_cuda() {
            return cuda::global_backward(inputs, m, d, (sc, sl), s, g);
        }
        match same_dtype("epic_global", inputs, m)? {
            DType::F32 => cpu::global_backward::<f32>(inputs, m, d, (sc, sl), s, g),
            DType::F64 => cpu::global_backward::<f64>(inputs, m, d, (sc, sl), s, g),
        }
    }
}

/// The sizes of a particle update, checked against the inputs.
#[derive(Clone, Copy, Debug)]
struct ParticleDims {
    b: usize,
    p: usize,
    h: usize,
    g: usize,
    t: usize,
    h2: usize,
}

impl ParticleDims {
    fn x(&self) -> usize {
        self.h + self.g + self.t
    }
    fn of(inputs: &[&Tensor], mask: &Tensor) -> Result<ParticleDims> {
        const OP: &str = "epic_particle";
        if inputs.len() != 7 {
            return Err(Error::invalid(
                "epic_particle takes h, g, τ, W3, b3, W4, b4",
            ));
        }
        let hs = inputs[0].shape();
        if hs.len() != 3 {
            return Err(Error::shape(OP, format!("h must be [B, P, H], got {hs:?}")));
        }
        let (b, p, h) = (hs[0], hs[1], hs[2]);
        let g = inputs[1].shape().last().copied().unwrap_or(0);
        let t = inputs[2].shape().last().copied().unwrap_or(0);
        let h2 = inputs[3].shape().first().copied().unwrap_or(0);
        let d = ParticleDims { b, p, h, g, t, h2 };
        expect_shape(OP, "mask", mask.shape(), &[b, p])?;
        expect_shape(OP, "g", inputs[1].shape(), &[b, g])?;
        expect_shape(OP, "τ", inputs[2].shape(), &[b, t])?;
        expect_shape(OP, "W3", inputs[3].shape(), &[h2, d.x()])?;
        expect_shape(OP, "b3", inputs[4].shape(), &[h2])?;
        expect_shape(OP, "W4", inputs[5].shape(), &[h, h2])?;
        expect_shape(OP, "b4", inputs[6].shape(), &[h])?;
        Ok(d)
    }
}

/// The particle update's saved pre-activations a `[B, P, H₂]` and c `[B, P, H]`.
struct ParticleSaved {
    a: Tensor,
    c: Tensor,
}

/// The fused particle update (module doc) as a tape op.
struct EpicParticleOp {
    mask: Tensor,
    slope: f64,
}

impl CustomOp for EpicParticleOp {
    fn name(&self) -> &'static str {
        "epic_particle"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = ParticleDims::of(inputs, &self.mask)?;
        match same_dtype("epic_particle", inputs, &self.mask)? {
            DType::F32 => cpu::particle_forward::<f32>(inputs, &self.mask, d, self.slope),
            DType::F64 => cpu::particle_forward::<f64>(inputs, &self.mask, d, self.slope),
        }
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = ParticleDims::of(inputs, &self.mask)?;
        self.mask.same_place("epic_particle", inputs[0])?;
        cuda::particle_forward(inputs, &self.mask, d, self.slope)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let d = ParticleDims::of(inputs, &self.mask)?;
        expect_shape("epic_particle", "gradient", g.shape(), &[d.b, d.p, d.h])?;
        let s = saved_as::<ParticleSaved>(saved, "epic_particle")?;
        if inputs[0].device().is_cuda() {
            return cuda::particle_backward(inputs, &self.mask, d, self.slope, s, g);
        }
        match same_dtype("epic_particle", inputs, &self.mask)? {
            DType::F32 => cpu::particle_backward::<f32>(inputs, &self.mask, d, self.slope, s, g),
            DType::F64 => cpu::particle_backward::<f64>(inputs, &self.mask, d, self.slope, s, g),
        }
    }
}

/// The weights of one MLP of an EPiC update: (W_in, b_in, W_out, b_out).
pub type EpicWeights<'a> = [&'a Var; 4];

/// The fused global update g′ `[B, G]` of particles `h [B, P, H]` with `mask [B, P]`, the
/// global vector `g [B, G]` and extra inputs `e [B, E]` (module doc); CPU (f32, f64) or
/// CUDA (f32).
pub fn epic_global(
    h: &Var,
    g: &Var,
    e: &Var,
    w: EpicWeights<'_>,
    mask: &Tensor,
    sum_scale: f64,
    slope: f64,
) -> Result<Var> {
    let op = EpicGlobalOp {
        mask: mask.clone(),
        sum_scale,
        slope,
    };
    Var::custom(op, &[h, g, e, w[0], w[1], w[2], w[3]])
}

/// The fused particle update h′ `[B, P, H]` of `h [B, P, H]` with `mask [B, P]`, the new
/// global vector `g [B, G]` and the time embedding `tau [B, T]` (module doc); CPU (f32,
/// f64) or CUDA (f32).
pub fn epic_particle(
    h: &Var,
    g: &Var,
    tau: &Var,
    w: EpicWeights<'_>,
    mask: &Tensor,
    slope: f64,
) -> Result<Var> {
    let op = EpicParticleOp {
        mask: mask.clone(),
        slope,
    };
    Var::custom(op, &[h, g, tau, w[0], w[1], w[2], w[3]])
}
