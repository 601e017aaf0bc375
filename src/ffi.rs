//! The C ABI (header: `include/jetgen.h`). Every entry point catches panics, checks its
//! pointers and sizes, and reports failures as a [`JetgenStatus`] plus a thread-local
//! message from [`jetgen_last_error`]; nothing unwinds across the boundary.
//!
//! Thread safety: a `JetgenModel` may be used from several threads at once (each call builds
//! its own tape; the weights are only read). `jetgen_last_error` is per thread.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::device::Device;
use crate::error::Error;
use crate::models::train_flow::{generate, load_checkpoint, TrainedFlow};

/// Status codes (mirrored in jetgen.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JetgenStatus {
    Ok = 0,
    NullPointer = 1,
    InvalidArgument = 2,
    File = 3,
    CudaUnavailable = 4,
    Cuda = 5,
    Internal = 6,
}

/// Device choice for [`jetgen_model_load`]: -1 = auto, -2 = CPU, n ≥ 0 = CUDA device n.
pub const JETGEN_DEVICE_AUTO: c_int = -1;
pub const JETGEN_DEVICE_CPU: c_int = -2;

/// An opaque loaded model.
pub struct JetgenModel {
    model: TrainedFlow,
    device: Device,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn status_of(e: &Error) -> JetgenStatus {
    match e {
        Error::File { .. } | Error::Io(_) => JetgenStatus::File,
        Error::CudaUnavailable(_) => JetgenStatus::CudaUnavailable,
        Error::Cuda { .. } => JetgenStatus::Cuda,
        _ => JetgenStatus::InvalidArgument,
    }
}

/// Run `f`, turning errors and panics into a status and the last-error message.
fn guard(f: impl FnOnce() -> Result<(), (JetgenStatus, String)>) -> JetgenStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            JetgenStatus::Ok
        }
        Ok(Err((status, msg))) => {
            set_error(&msg);
            status
        }
        Err(_) => {
            set_error("internal error (a panic was caught at the C boundary)");
            JetgenStatus::Internal
        }
    }
}

fn err(e: Error) -> (JetgenStatus, String) {
    (status_of(&e), e.to_string())
}

/// The library version, e.g. "0.1.0" (static string).
#[no_mangle]
pub extern "C" fn jetgen_version() -> *const c_char {
    static VERSION: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();
    VERSION.as_ptr() as *const c_char
}

/// The message of the last failed call on this thread ("" after a success). Valid until the
/// next jetgen call on this thread.
#[no_mangle]
pub extern "C" fn jetgen_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Load a flow checkpoint (a run directory or its checkpoint.safetensors) onto `device`
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
        let device = match device {
            JETGEN_DEVICE_AUTO => Device::auto(),
            JETGEN_DEVICE_CPU => Device::Cpu,
            n if n >= 0 => Device::Cuda(n as usize),
            n => return Err((JetgenStatus::InvalidArgument, format!("invalid device {n}"))),
        };
        device.ensure_available().map_err(err)?;
        let p = Path::new(path);
        let ckpt = if p.is_dir() {
            p.join("checkpoint.safetensors")
        } else {
            p.to_path_buf()
        };
        let model = load_checkpoint(&ckpt, device).map_err(err)?;
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(JetgenModel { model, device })) };
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
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the pointer came from Box::into_raw in jetgen_model_load.
            drop(unsafe { Box::from_raw(model) });
        }));
    }
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
        unsafe { *out = (*model).model.n_particles };
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
        let p = m.model.n_particles;
        if n_jets == 0 || n_jets > 100_000_000 {
            return Err((
                JetgenStatus::InvalidArgument,
                format!("n_jets must be in 1..=1e8, got {n_jets}"),
            ));
        }
        let need_p = n_jets
            .checked_mul(p * 4)
            .ok_or((JetgenStatus::InvalidArgument, "size overflow".to_string()))?;
        if particles_len < need_p || jets_len < n_jets * 4 {
            return Err((
                JetgenStatus::InvalidArgument,
                format!("buffers too small: need {need_p} and {} floats, got {particles_len} and {jets_len}", n_jets * 4),
            ));
        }
        let jets =
            crate::on_thread_pool(|| generate(&m.model, n_jets, seed, m.device)).map_err(err)?;
        // SAFETY: sizes checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(jets.particles.as_ptr(), out_particles, need_p);
            std::ptr::copy_nonoverlapping(jets.jets.as_ptr(), out_jets, n_jets * 4);
        }
        Ok(())
    })
}
