//! One error type for the whole library: every fallible call returns `jetgen::Result<T>`.
//!
//! User input (shapes, files, devices) never panics; it becomes one of these variants with
//! enough context (op name, shapes, device, kernel name) to act on.

use thiserror::Error;

/// Everything that can go wrong in jetgen.
#[derive(Debug, Error)]
pub enum Error {
    /// Shapes that do not fit the operation, e.g. `matmul [2,3] x [4,5]`.
    #[error("shape error in {op}: {msg}")]
    Shape { op: &'static str, msg: String },
    /// Operands live on different devices.
    #[error("device mismatch in {op}: {a} vs {b}")]
    DeviceMismatch {
        op: &'static str,
        a: String,
        b: String,
    },
    /// The element type is not supported by this op/device (e.g. f64 on CUDA).
    #[error("dtype error in {op}: {msg}")]
    DType { op: &'static str, msg: String },
    /// CUDA was requested but is not usable here (no driver, no GPU, library missing).
    #[error("CUDA unavailable: {0}")]
    CudaUnavailable(String),
    /// A CUDA call failed; `what` names the kernel or driver call.
    #[error("CUDA error in {what}: {msg}")]
    Cuda { what: String, msg: String },
    /// `backward()` was called on a tensor that is not a scalar.
    #[error("backward() needs a scalar (one element) loss, got shape {shape:?}")]
    NotScalar { shape: Vec<usize> },
    /// A second derivative was asked through a once-differentiable fused op.
    #[error("cannot differentiate the gradient of {op}: {op} is once-differentiable (its backward is a fused kernel that is not itself differentiable)")]
    NotDifferentiable { op: &'static str },
    /// NaN or infinity found where finite numbers are required.
    #[error("non-finite values in {what}: {count} of {total} elements are NaN or inf")]
    NonFinite {
        what: String,
        count: usize,
        total: usize,
    },
    /// An argument outside its valid range (negative probability, unknown name, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An iterative solver failed (did not converge, cycled, lost positivity).
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// A file could not be read or written.
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    /// Underlying I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    /// Shorthand for [`Error::File`].
    pub fn file(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().display().to_string(),
            msg: msg.into(),
        }
    }
}
