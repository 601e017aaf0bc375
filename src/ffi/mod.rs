//! The C ABI (header: `include/jetgen.h`). Every entry point catches panics, checks its
//! pointers and sizes, and reports failures as a [`JetgenStatus`] plus a thread-local
//! message from [`jetgen_last_error`]; nothing unwinds across the boundary.
//!
//! Thread safety: a `jetgen_model` and a `jetgen_context` may be used from several threads
//! at once (each call builds its own tape; weights and settings are only read).
//! `jetgen_last_error` is per thread.

mod kernels;
mod model;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use crate::device::Device;
use crate::error::Error;

pub use kernels::*;
pub use model::*;

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
    /// A solver did not converge (e.g. the transport simplex hit its pivot cap).
    Numerical = 7,
}

/// Device choice for [`jetgen_model_load`]: -1 = auto, -2 = CPU, n ≥ 0 = CUDA device n.
pub const JETGEN_DEVICE_AUTO: c_int = -1;
pub const JETGEN_DEVICE_CPU: c_int = -2;

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
        Error::Numerical(_) => JetgenStatus::Numerical,
        _ => JetgenStatus::InvalidArgument,
    }
}

/// Run `f`, turning errors and panics into a status and the last-error message.
fn guard(f: impl FnOnce() -> Result<(), (JetgenStatus, String)>) -> JetgenStatus {
    // silently: a caught panic prints nothing behind the C API (crate::quiet_panic)
    match crate::quiet_panic::catch_quietly_everywhere(f) {
        Ok(Ok(())) => {
            set_error("");
            JetgenStatus::Ok
        }
        Ok(Err((status, msg))) => {
            set_error(&msg);
            status
        }
        Err(panic) => {
            set_error(&format!(
                "internal error (a panic was caught at the C boundary: {panic})"
            ));
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

/// Shorthand for an error return of kind `status`.
fn fail<T>(status: JetgenStatus, msg: impl Into<String>) -> Result<T, (JetgenStatus, String)> {
    Err((status, msg.into()))
}

/// The device of a C device code (JETGEN_DEVICE_AUTO, JETGEN_DEVICE_CPU or a CUDA ordinal),
/// checked to be usable.
fn device_of(code: c_int) -> Result<Device, (JetgenStatus, String)> {
    let device = match code {
        JETGEN_DEVICE_AUTO => Device::auto(),
        JETGEN_DEVICE_CPU => Device::Cpu,
        n if n >= 0 => Device::Cuda(n as usize),
        n => return fail(JetgenStatus::InvalidArgument, format!("invalid device {n}")),
    };
    device.ensure_available().map_err(err)?;
    Ok(device)
}

/// An opaque execution context: a device and a CPU thread pool.
pub struct JetgenContext {
    device: Device,
    pool: rayon::ThreadPool,
}

impl JetgenContext {
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Create a context on `device` with `threads` CPU threads (0 = one per core).
///
/// # Safety
/// `out` must be a valid pointer (NULL is reported).
#[no_mangle]
pub unsafe extern "C" fn jetgen_context_create(
    device: c_int,
    threads: usize,
    out: *mut *mut JetgenContext,
) -> JetgenStatus {
    guard(|| {
        if out.is_null() {
            return fail(
                JetgenStatus::NullPointer,
                "jetgen_context_create: out is NULL",
            );
        }
        if threads > 4096 {
            return fail(
                JetgenStatus::InvalidArgument,
                format!("absurd thread count {threads}"),
            );
        }
        let device = device_of(device)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| (JetgenStatus::Internal, format!("thread pool: {e}")))?;
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(JetgenContext { device, pool })) };
        Ok(())
    })
}

/// Free a context; NULL is a no-op.
///
/// # Safety
/// `ctx` must come from jetgen_context_create and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn jetgen_context_free(ctx: *mut JetgenContext) {
    if !ctx.is_null() {
        let _ = crate::quiet_panic::catch_quietly(|| {
            // SAFETY: the pointer came from Box::into_raw in jetgen_context_create.
            drop(unsafe { Box::from_raw(ctx) });
        });
    }
}

/// The context's device as a C device code (JETGEN_DEVICE_CPU or a CUDA ordinal).
///
/// # Safety
/// `ctx` and `out` must be valid pointers (NULL is reported).
#[no_mangle]
pub unsafe extern "C" fn jetgen_context_device(
    ctx: *const JetgenContext,
    out: *mut c_int,
) -> JetgenStatus {
    guard(|| {
        if ctx.is_null() || out.is_null() {
            return fail(
                JetgenStatus::NullPointer,
                "jetgen_context_device: NULL argument",
            );
        }
        // SAFETY: checked non-NULL; alive per the contract.
        let code = match unsafe { &*ctx }.device {
            Device::Cpu => JETGEN_DEVICE_CPU,
            Device::Cuda(n) => n as c_int,
        };
        // SAFETY: checked non-NULL.
        unsafe { *out = code };
        Ok(())
    })
}

/// A `len`-element slice from a caller pointer, or an error naming `what` if it is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable elements.
unsafe fn slice_in<'a, T>(
    ptr: *const T,
    len: usize,
    what: &str,
) -> Result<&'a [T], (JetgenStatus, String)> {
    if ptr.is_null() {
        return fail(JetgenStatus::NullPointer, format!("{what} is NULL"));
    }
    // SAFETY: non-NULL; the caller promises `len` elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// `n₁ · n₂ · …` with overflow and absurd-size checks (≤ 2⁴⁰ elements).
fn checked_size(what: &str, dims: &[usize]) -> Result<usize, (JetgenStatus, String)> {
    let total = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match total {
        Some(t) if t <= 1 << 40 => Ok(t),
        _ => fail(
            JetgenStatus::InvalidArgument,
            format!("{what}: size {dims:?} is too large"),
        ),
    }
}
