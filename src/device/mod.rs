//! Where tensors live: the host (`Cpu`, parallel with rayon) or a CUDA GPU.
//!
//! The CUDA driver is loaded dynamically at run time: the same binary works on machines
//! without CUDA, and asking for CUDA there gives [`Error::CudaUnavailable`], never a panic.

pub mod buffers;
pub mod cuda;

use crate::error::{Error, Result};

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU (rayon thread pool).
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;
    /// Parses `cpu`, `cuda`, `cuda:N` (use [`Device::auto`] for `auto`).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Device::Cuda(i)),
                _ => Err(Error::invalid(format!(
                    "unknown device '{s}' (use auto, cpu, cuda or cuda:N)"
                ))),
            },
        }
    }
}

/// Why [`Device::auto`] chose what it chose, for `jetgen info` and logs.
#[derive(Clone, Debug)]
pub struct DeviceChoice {
    pub device: Device,
    pub reason: String,
}

impl Device {
    /// CUDA device 0 when a driver and a GPU are usable, else the CPU. The CUDA-on-CPU stand-in
    /// driver (`cuda-emu`) is never chosen: it checks kernels, it is not fast.
    pub fn auto() -> Device {
        Self::auto_with_reason().device
    }

    /// Like [`Device::auto`], with a human-readable reason.
    pub fn auto_with_reason() -> DeviceChoice {
        match cuda::device_info(0) {
            Ok(info) if info.name.starts_with(cuda::EMULATOR_NAME_PREFIX) => DeviceChoice {
                device: Device::Cpu,
                reason: format!(
                    "{} is the CUDA-on-CPU executor, not a GPU (use --device cuda to run the kernels on it): using CPU",
                    info.name
                ),
            },
            Ok(info) => DeviceChoice {
                device: Device::Cuda(0),
                reason: format!(
                    "{} ({:.1} GiB, compute capability {}.{})",
                    info.name,
                    info.total_mem as f64 / (1u64 << 30) as f64,
                    info.compute_capability.0,
                    info.compute_capability.1
                ),
            },
            Err(Error::CudaUnavailable(why)) => DeviceChoice {
                device: Device::Cpu,
                reason: format!("{why}: using CPU"),
            },
            Err(e) => DeviceChoice {
                device: Device::Cpu,
                reason: format!("{e}: using CPU"),
            },
        }
    }

    /// Parse `auto|cpu|cuda|cuda:N`.
    pub fn parse(s: &str) -> Result<Device> {
        if s == "auto" {
            Ok(Device::auto())
        } else {
            s.parse()
        }
    }

    /// Fails with [`Error::CudaUnavailable`] when this is a CUDA device that cannot be used.
    pub fn ensure_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(i) => cuda::backend(i).map(|_| ()),
        }
    }

    /// True for `Cuda(_)`.
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}
