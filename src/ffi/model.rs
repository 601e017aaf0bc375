//! The model half of the C ABI: load a trained model of any family (dispatching on the
//! family its checkpoint records, through [`Generator`]), generate jets (with drawn or given
//! conditions), score jets by log-density.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

use super::{err, fail, guard, JetgenStatus};
use crate::data::JetNetData;
use crate::models::conditions::Conditions;
use crate::runs::generator::Generator;

/// An opaque loaded model.
pub struct JetgenModel {
    model: Box<dyn Generator>,
    /// The family name as a C string (returned by jetgen_model_family).
    family: CString,
}

/// Load a model checkpoint of any family (a run directory or its checkpoint.safetensors)
/// onto `device`
/// (JETGEN_DEVICE_AUTO, JETGEN_DEVICE_CPU or a CUDA ordinal); on success `*out` owns the
/// model (free it with jetgen_model_free).
///
/// # Safety
/// `path` must be a NUL-terminated string and `out` a valid pointer (both may be NULL, which
/// is reported as JETGEN_NULL_POINTER).
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_load(
    path: *const c_char,
    device: c_int,
    out: *mut *mut JetgenModel,
) -> JetgenStatus {
    guard(|| {
        if path.is_null() || out.is_null() {
            return Err((
                JetgenStatus::NullPointer,
                "jetgen_model_load: path and out must not be NULL".into(),
            ));
        }
        // SAFETY: checked non-NULL; the caller promises NUL termination.
        let path = unsafe { CStr::from_ptr(path) }.to_str().map_err(|_| {
            (
                JetgenStatus::InvalidArgument,
                "path is not UTF-8".to_string(),
            )
        })?;
        let device = super::device_of(device)?;
        let model = crate::runs::load_generator(Path::new(path), device).map_err(err)?;
        let family = CString::new(model.family()).map_err(|_| {
            (
                JetgenStatus::Internal,
                "family name has a NUL byte".to_string(),
            )
        })?;
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(JetgenModel { model, family })) };
        Ok(())
    })
}

/// Free a model; NULL is a no-op.
///
/// # Safety
/// `model` must come from jetgen_model_load and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_free(model: *mut JetgenModel) {
    if !model.is_null() {
        let _ = crate::quiet_panic::catch_quietly(|| {
            // SAFETY: the pointer came from Box::into_raw in jetgen_model_load.
            drop(unsafe { Box::from_raw(model) });
        });
    }
}

/// The model's family name ("flow", …): a NUL-terminated string owned by the model (valid
/// until jetgen_model_free); NULL for a NULL model.
///
/// # Safety
/// `model` must be NULL or a live model from jetgen_model_load.
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_family(model: *const JetgenModel) -> *const c_char {
    if model.is_null() {
        super::set_error("jetgen_model_family: NULL model");
        return std::ptr::null();
    }
    // SAFETY: checked non-NULL; alive per the contract.
    unsafe { (*model).family.as_ptr() }
}

/// Particles per generated jet (30 for JetNet-30 models).
///
/// # Safety
/// `model` and `out` must be valid pointers (NULL is reported).
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_num_particles(
    model: *const JetgenModel,
    out: *mut usize,
) -> JetgenStatus {
    guard(|| {
        if model.is_null() || out.is_null() {
            return Err((
                JetgenStatus::NullPointer,
                "jetgen_model_num_particles: NULL argument".into(),
            ));
        }
        // SAFETY: checked non-NULL; the model is alive per the contract.
        unsafe { *out = (*model).model.particles() };
        Ok(())
    })
}

/// Generate `n_jets` jets with `seed` (deterministic per seed) into caller-owned buffers in
/// JetNet layout: `out_particles[n_jets · P · 4]` = (η_rel, φ_rel, pT_rel, mask) and
/// `out_jets[n_jets · 4]` = (pT, η, mass, n) in relative units of the generated constituents;
/// the `*_len` arguments give the buffers' sizes in floats. Conditional models draw their
/// conditions from the training distribution.
///
/// # Safety
/// The buffers must hold the given number of floats.
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_generate(
    model: *const JetgenModel,
    n_jets: usize,
    seed: u64,
    out_particles: *mut f32,
    particles_len: usize,
    out_jets: *mut f32,
    jets_len: usize,
) -> JetgenStatus {
    guard(|| {
        if model.is_null() || out_particles.is_null() || out_jets.is_null() {
            return Err((
                JetgenStatus::NullPointer,
                "jetgen_model_generate: NULL argument".into(),
            ));
        }
        // SAFETY: checked non-NULL; alive per the contract.
        let m = unsafe { &*model };
        check_outputs(m, n_jets, particles_len, jets_len)?;
        let jets = crate::on_thread_pool(|| m.model.generate(n_jets, seed)).map_err(err)?;
        // SAFETY: sizes checked by check_outputs.
        unsafe { write_jets(&jets, out_particles, out_jets) };
        Ok(())
    })
}

/// Checks the output buffers of a generation call and returns the particle count.
fn check_outputs(
    m: &JetgenModel,
    n_jets: usize,
    particles_len: usize,
    jets_len: usize,
) -> Result<usize, (JetgenStatus, String)> {
    if n_jets == 0 || n_jets > 100_000_000 {
        return fail(
            JetgenStatus::InvalidArgument,
            format!("n_jets must be in 1..=1e8, got {n_jets}"),
        );
    }
    let need_p = super::checked_size("out_particles", &[n_jets, m.model.particles(), 4])?;
    if particles_len < need_p || jets_len < n_jets * 4 {
        return fail(
            JetgenStatus::InvalidArgument,
            format!(
                "buffers too small: need {need_p} and {} floats, got {particles_len} and {jets_len}",
                n_jets * 4
            ),
        );
    }
    Ok(need_p)
}

/// Copies generated jets into the caller's buffers (sizes already checked).
///
/// # Safety
/// The buffers must hold `jets.particles.len()` and `jets.jets.len()` floats.
unsafe fn write_jets(jets: &JetNetData, out_particles: *mut f32, out_jets: *mut f32) {
    // SAFETY: per the contract.
    unsafe {
        std::ptr::copy_nonoverlapping(jets.particles.as_ptr(), out_particles, jets.particles.len());
        std::ptr::copy_nonoverlapping(jets.jets.as_ptr(), out_jets, jets.jets.len());
    }
}

/// What a model is conditioned on: `*mass` and `*multiplicity` are set to 1 or 0.
///
/// # Safety
/// All pointers must be valid (NULL is reported).
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_conditions(
    model: *const JetgenModel,
    mass: *mut c_int,
    multiplicity: *mut c_int,
) -> JetgenStatus {
    guard(|| {
        if model.is_null() || mass.is_null() || multiplicity.is_null() {
            return fail(
                JetgenStatus::NullPointer,
                "jetgen_model_conditions: NULL argument",
            );
        }
        // SAFETY: checked non-NULL; alive per the contract.
        let c = unsafe { &*model }.model.conditioning();
        // SAFETY: checked non-NULL.
        unsafe {
            *mass = c.mass as c_int;
            *multiplicity = c.multiplicity as c_int;
        }
        Ok(())
    })
}

/// Generate one jet per given condition: `mass[n_jets]` relative jet masses m/pT (≥ 0) and,
/// for models conditioned on it, `multiplicity[n_jets]` particle counts (0..=P; NULL for
/// mass-only models). Outputs as in jetgen_model_generate; deterministic for a seed.
///
/// # Safety
/// The inputs must hold `n_jets` floats and the outputs the given number of floats.
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_generate_conditional(
    model: *const JetgenModel,
    n_jets: usize,
    seed: u64,
    mass: *const f32,
    multiplicity: *const f32,
    out_particles: *mut f32,
    particles_len: usize,
    out_jets: *mut f32,
    jets_len: usize,
) -> JetgenStatus {
    guard(|| {
        if model.is_null() || out_particles.is_null() || out_jets.is_null() {
            return fail(
                JetgenStatus::NullPointer,
                "jetgen_model_generate_conditional: NULL argument",
            );
        }
        // SAFETY: checked non-NULL; alive per the contract.
        let m = unsafe { &*model };
        check_outputs(m, n_jets, particles_len, jets_len)?;
        // SAFETY: the caller promises n_jets floats.
        let masses = unsafe { super::slice_in(mass, n_jets, "mass") }?;
        let wants_n = m.model.conditioning().multiplicity;
        let counts: Vec<f64> = match (wants_n, multiplicity.is_null()) {
            (true, true) => {
                return fail(
                    JetgenStatus::NullPointer,
                    "this model needs multiplicity[n_jets]",
                )
            }
            // SAFETY: non-NULL; the caller promises n_jets floats.
            (true, false) => unsafe { super::slice_in(multiplicity, n_jets, "multiplicity") }?
                .iter()
                .map(|&k| k as f64)
                .collect(),
            (false, false) => {
                return fail(
                    JetgenStatus::InvalidArgument,
                    "this model is not conditioned on the multiplicity: pass NULL",
                )
            }
            (false, true) => vec![m.model.particles() as f64; n_jets],
        };
        let given = Conditions {
            mass: masses.iter().map(|&x| x as f64).collect(),
            n: counts,
        };
        let jets =
            crate::on_thread_pool(|| m.model.generate_conditional(&given, seed)).map_err(err)?;
        // SAFETY: sizes checked by check_outputs.
        unsafe { write_jets(&jets, out_particles, out_jets) };
        Ok(())
    })
}

/// log p(x | m, n) of `n_jets` jets given in JetNet layout (`particles[n_jets · P · 4]`:
/// η_rel, φ_rel, pT_rel, mask; masked particles must be all zero) into `out[n_jets]`, in the
/// units of the (η_rel, φ_rel, pT_rel) vectors. Conditional models use each jet's own mass
/// and multiplicity. Non-finite inputs are JETGEN_INVALID_ARGUMENT.
///
/// # Safety
/// `particles` must hold `particles_len` floats and `out` `n_jets` doubles.
#[no_mangle]
pub unsafe extern "C" fn jetgen_model_log_prob(
    model: *const JetgenModel,
    n_jets: usize,
    particles: *const f32,
    particles_len: usize,
    out: *mut f64,
) -> JetgenStatus {
    guard(|| {
        if model.is_null() || out.is_null() {
            return fail(
                JetgenStatus::NullPointer,
                "jetgen_model_log_prob: NULL argument",
            );
        }
        // SAFETY: checked non-NULL; alive per the contract.
        let m = unsafe { &*model };
        let p = m.model.particles();
        let need = super::checked_size("particles", &[n_jets, p, 4])?;
        if n_jets == 0 || particles_len < need {
            return fail(
                JetgenStatus::InvalidArgument,
                format!("need n_jets ≥ 1 and {need} particle floats, got {n_jets} jets and {particles_len}"),
            );
        }
        // SAFETY: the caller promises particles_len ≥ need floats.
        let rows = unsafe { super::slice_in(particles, need, "particles") }?;
        // jet-level features are not used (the conditions come from the particles)
        let jets = vec![0f32; n_jets * 4];
        let data = JetNetData::new(
            rows.to_vec(),
            jets,
            n_jets,
            p,
            "jetgen_model_log_prob input",
        )
        .map_err(|e| (JetgenStatus::InvalidArgument, e.to_string()))?;
        let lp = crate::on_thread_pool(|| m.model.log_prob(&data)).map_err(err)?;
        // SAFETY: the caller promises n_jets doubles.
        unsafe { std::ptr::copy_nonoverlapping(lp.as_ptr(), out, n_jets) };
        Ok(())
    })
}
