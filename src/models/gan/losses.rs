//! The adversarial losses, on critic outputs recorded on one tape. With real jets x_r,
//! generated x_g (and an independent second generated batch x′_g for CramerGAN), and
//! x̂ = εx_r + (1 − ε)x_g, ε ~ U(0, 1) per jet:
//! * LSGAN (MPGAN `ls`): D = sigmoid(out); L_D = mean (D(x_r) − 1)² + mean D(x_g)²,
//!   L_G = mean (D(x_g) − 1)²;
//! * WGAN-GP: L_D = mean D(x_g) − mean D(x_r) + λ·GP(D), L_G = −mean D(x_g);
//! * CramerGAN: f(x) = ‖h(x) − h(x′_g)‖ − ‖h(x)‖; L_G = mean f(x_r) − mean f(x_g),
//!   L_D = −L_G + λ·GP(f);
//!
//! with GP(f) = mean_b (‖∂(Σ_b f(x̂_b))/∂x̂_b‖₂ − 1)², the input gradient recorded on the tape
//! ([`CreateGraph::Yes`]) so that ∂GP/∂θ is the true second-order gradient.

use crate::autograd::{CreateGraph, Tape, Var};
use crate::error::Result;

/// ‖x_b‖₂ of each row of `[B, K]` → `[B]`.
pub fn row_norm(x: &Var) -> Result<Var> {
    x.square()?.sum(&[1], false)?.sqrt()
}

/// mean_b (‖∂(Σ f(x̂))/∂x̂_b‖₂ − 1)² for `f` applied to the leaf `x_hat [B, D]`.
pub fn gradient_penalty(tape: &Tape, f: impl Fn(&Var) -> Result<Var>, x_hat: &Var) -> Result<Var> {
    let out = f(x_hat)?.sum_all()?;
    let g = tape.grad(&out, &[x_hat], CreateGraph::Yes)?.remove(0);
    row_norm(&g)?.add_scalar(-1.0)?.square()?.mean_all()
}

/// The Cramér critic f(x) = ‖h(x) − h(x′)‖ − ‖h(x)‖ per row, from `h(x)` and `h(x′)`
/// (`[B, K]` each) → `[B]`.
pub fn cramer_critic(hx: &Var, hx2: &Var) -> Result<Var> {
    row_norm(&hx.sub(hx2)?)?.sub(&row_norm(hx)?)
}

/// The LSGAN discriminator loss from raw outputs (before the sigmoid).
pub fn ls_discriminator(real_out: &Var, fake_out: &Var) -> Result<Var> {
    let r = real_out.sigmoid()?.add_scalar(-1.0)?.square()?.mean_all()?;
    let f = fake_out.sigmoid()?.square()?.mean_all()?;
    r.add(&f)
}

/// The LSGAN generator loss from raw outputs on generated jets.
pub fn ls_generator(fake_out: &Var) -> Result<Var> {
    fake_out.sigmoid()?.add_scalar(-1.0)?.square()?.mean_all()
}
