//! CUDA runtime: context and stream per device, kernel modules compiled once per device
//! and cached, cuBLAS handle, host↔device copies and checked kernel launches.
//!
//! cudarc loads `libcuda` dynamically and *panics* if it is missing, so every entry point
//! first checks `is_culib_present()` and turns absence into [`Error::CudaUnavailable`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
pub use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::error::{Error, Result};

/// One kernel family as embedded by `build.rs`: the CUDA source (headers inlined), and where
/// nvcc was available at build time, PTX for compute_90 and an sm_90 cubin.
pub struct KernelModule {
    pub name: &'static str,
    pub source: &'static str,
    pub ptx: Option<&'static str>,
    pub cubin: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Look up an embedded kernel module by family name (`"elementwise"`, `"reduce"`, ...).
pub fn kernel_module(name: &str) -> Result<&'static KernelModule> {
    KERNEL_MODULES
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| Error::Cuda {
            what: name.into(),
            msg: "no such kernel module embedded".into(),
        })
}

/// Device-name prefix of the stand-in driver built by the `cuda-emu` feature (kernels/emu):
/// the CUDA kernels executed on the CPU, exact about semantics and very slow.
pub const EMULATOR_NAME_PREFIX: &str = "jetgen cuda-emu";

/// Static facts about a GPU, for `jetgen info`.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub total_mem: usize,
    pub compute_capability: (i32, i32),
}

fn driver_err(what: impl Into<String>) -> impl FnOnce(cudarc::driver::DriverError) -> Error {
    let what = what.into();
    move |e| Error::Cuda {
        what,
        msg: format!("{e:?}"),
    }
}

/// Ok when `libcuda` can be loaded and reports at least one device.
pub fn driver_available() -> Result<usize> {
    // SAFETY: only probes whether the shared library can be dlopen'ed.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::CudaUnavailable(
            "no CUDA driver found (libcuda.so not loadable)".into(),
        ));
    }
    // a library that loads but lacks the driver's symbols makes cudarc panic: caught
    // without printing anything (see crate::quiet_panic)
    let count = crate::quiet_panic::catch_quietly(CudaContext::device_count)
        .map_err(|e| {
            Error::CudaUnavailable(format!(
                "libcuda loads but is not a usable CUDA driver ({})",
                e.split(" at ").next().unwrap_or(&e)
            ))
        })?
        .map_err(|e| Error::CudaUnavailable(format!("CUDA driver error: {e:?}")))?;
    if count <= 0 {
        return Err(Error::CudaUnavailable(
            "CUDA driver present but no GPU found".into(),
        ));
    }
    Ok(count as usize)
}

/// Name, memory and compute capability of GPU `ordinal`.
pub fn device_info(ordinal: usize) -> Result<DeviceInfo> {
    let be = backend(ordinal)?;
    Ok(DeviceInfo {
        name: be.ctx.name().map_err(driver_err("cuDeviceGetName"))?,
        total_mem: be.ctx.total_mem().map_err(driver_err("cuDeviceTotalMem"))?,
        compute_capability: be
            .ctx
            .compute_capability()
            .map_err(driver_err("compute_capability"))?,
    })
}

/// Per-device state: context, the stream all jetgen work is queued on, compiled modules
/// and the cuBLAS handle. Obtain with [`backend`].
pub struct CudaBackend {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
    blas: Mutex<Option<Arc<CudaBlas>>>,
    /// `JETGEN_CUDA_SYNC=1`: synchronise after every launch so asynchronous faults are
    /// reported with the name of the kernel that caused them.
    sync_each_launch: bool,
}

impl CudaBackend {
    /// Milliseconds of device time that `f`'s work takes on this backend's stream: CUDA events
    /// recorded before and after it (timing events), then a wait for the second. Host-side
    /// syncs inside `f` (e.g. an op's input checks) count, as they stall the stream.
    pub fn time_events<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, f64)> {
        let timed = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let err = |e: cudarc::driver::DriverError| Error::Cuda {
            what: "timing with CUDA events".into(),
            msg: format!("{e:?}"),
        };
        let start = self.stream.record_event(timed).map_err(err)?;
        let out = f()?;
        let end = self.stream.record_event(timed).map_err(err)?;
        let ms = start.elapsed_ms(&end).map_err(err)?;
        Ok((out, ms as f64))
    }
}

static POISON: AtomicBool = AtomicBool::new(false);

/// Fill every new uninitialised device buffer with NaN bits (testing aid; slow).
pub fn set_poison_allocations(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

static BACKENDS: OnceLock<Mutex<HashMap<usize, Arc<CudaBackend>>>> = OnceLock::new();

/// The (cached) backend for GPU `ordinal`; errors when CUDA is unusable.
pub fn backend(ordinal: usize) -> Result<Arc<CudaBackend>> {
    let count = driver_available()?;
    if ordinal >= count {
        return Err(Error::CudaUnavailable(format!(
            "GPU {ordinal} requested but only {count} present"
        )));
    }
    let mut map = BACKENDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(be) = map.get(&ordinal) {
        return Ok(be.clone());
    }
    let ctx = CudaContext::new(ordinal)
        .map_err(driver_err(format!("creating context on GPU {ordinal}")))?;
    let stream = ctx.default_stream();
    let be = Arc::new(CudaBackend {
        ordinal,
        ctx,
        stream,
        modules: Mutex::new(HashMap::new()),
        functions: Mutex::new(HashMap::new()),
        blas: Mutex::new(None),
        sync_each_launch: std::env::var("JETGEN_CUDA_SYNC").is_ok_and(|v| v == "1"),
    });
    map.insert(ordinal, be.clone());
    Ok(be)
}

impl CudaBackend {
    /// Load (once) the module `module` and return its function `name`.
    pub fn function(&self, module: &'static str, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(module, name))
        {
            return Ok(f.clone());
        }
        let m = self.module(module)?;
        let f = m
            .load_function(name)
            .map_err(driver_err(format!("loading kernel {module}::{name}")))?;
        self.functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((module, name), f.clone());
        Ok(f)
    }

    fn module(&self, name: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(name) {
            return Ok(m.clone());
        }
        let km = kernel_module(name)?;
        let (major, minor) = self
            .ctx
            .compute_capability()
            .map_err(driver_err("compute_capability"))?;
        // Prefer the build-time cubin on sm_90, then build-time PTX, then NVRTC at run time.
        let mut attempts: Vec<String> = Vec::new();
        let mut loaded = None;
        if let (Some(cubin), (9, 0)) = (km.cubin, (major, minor)) {
            match self
                .ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(cubin.to_vec()))
            {
                Ok(m) => loaded = Some(m),
                Err(e) => attempts.push(format!("cubin: {e:?}")),
            }
        }
        if loaded.is_none() && major >= 9 {
            if let Some(ptx) = km.ptx {
                match self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)) {
                    Ok(m) => loaded = Some(m),
                    Err(e) => attempts.push(format!("ptx: {e:?}")),
                }
            }
        }
        if loaded.is_none() {
            let ptx = nvrtc_compile(km, major, minor)?;
            loaded = Some(self.ctx.load_module(ptx).map_err(|e| Error::Cuda {
                what: format!("loading module {name}"),
                msg: format!("{e:?} (earlier attempts: {attempts:?})"),
            })?);
        }
        let m = loaded.expect("set above");
        modules.insert(name, m.clone());
        Ok(m)
    }

    /// The cuBLAS handle bound to this backend's stream.
    pub fn blas(&self) -> Result<Arc<CudaBlas>> {
        let mut blas = self.blas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = blas.as_ref() {
            return Ok(b.clone());
        }
        // SAFETY: probes whether libcublas can be dlopen'ed.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::CudaUnavailable(
                "libcublas not found (needed for matmul on CUDA)".into(),
            ));
        }
        let b = Arc::new(CudaBlas::new(self.stream.clone()).map_err(|e| Error::Cuda {
            what: "cublasCreate".into(),
            msg: format!("{e:?}"),
        })?);
        *blas = Some(b.clone());
        Ok(b)
    }

    /// Allocate `n` uninitialised elements. With [`set_poison_allocations`] on, the buffer
    /// is first filled with all-ones bits (NaN for f32), so a kernel that forgets to write
    /// an element is caught by parity tests.
    pub fn alloc<T: DeviceRepr>(&self, n: usize) -> Result<CudaSlice<T>> {
        // SAFETY: every caller writes all `n` elements before reading them.
        let mut slice = unsafe { self.stream.alloc::<T>(n.max(1)) }
            .map_err(|e| oom_or(e, n * std::mem::size_of::<T>()))?;
        if POISON.load(Ordering::Relaxed) {
            let bytes = n.max(1) * std::mem::size_of::<T>();
            let (ptr, _sync) =
                cudarc::driver::DevicePtrMut::device_ptr_mut(&mut slice, &self.stream);
            // SAFETY: ptr addresses `bytes` bytes just allocated on this stream.
            unsafe {
                cudarc::driver::result::memset_d8_async(ptr, 0xFF, bytes, self.stream.cu_stream())
            }
            .map_err(driver_err("poisoning allocation"))?;
        }
        Ok(slice)
    }

    /// Allocate `n` zeroed elements.
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| oom_or(e, n * std::mem::size_of::<T>()))
    }

    /// Copy a host slice to a new device buffer.
    pub fn htod<T: DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        if data.is_empty() {
            return self.alloc(1);
        }
        self.stream
            .clone_htod(data)
            .map_err(|e| oom_or(e, std::mem::size_of_val(data)))
    }

    /// Copy `n` elements from caller-owned device memory at `src` (on this device, in its
    /// primary context) into a new buffer, on this backend's stream.
    ///
    /// # Safety
    /// `src` must address at least `n` valid elements of `T` on this device, not being
    /// written concurrently.
    pub unsafe fn copy_from_raw<T: DeviceRepr>(&self, src: u64, n: usize) -> Result<CudaSlice<T>> {
        let mut out = self.alloc::<T>(n)?;
        {
            let (dst, _sync) = cudarc::driver::DevicePtrMut::device_ptr_mut(&mut out, &self.stream);
            // SAFETY: both ranges hold n elements (caller contract, fresh buffer).
            unsafe { self.dtod::<T>(dst, src, n, "device-to-device copy from caller memory") }?;
        }
        Ok(out)
    }

    /// Copy the first `n` elements of `data` to caller-owned device memory at `dst` and wait
    /// until the copy (and everything queued before it) has finished.
    ///
    /// # Safety
    /// `dst` must address at least `n` writable elements of `T` on this device.
    pub unsafe fn copy_to_raw<T: DeviceRepr>(
        &self,
        data: &CudaSlice<T>,
        dst: u64,
        n: usize,
    ) -> Result<()> {
        let (src, _sync) = cudarc::driver::DevicePtr::device_ptr(data, &self.stream);
        // SAFETY: both ranges hold n elements (caller contract, our buffer).
        unsafe { self.dtod::<T>(dst, src, n, "device-to-device copy to caller memory") }?;
        self.synchronize()
    }

    /// Queue a copy of `n` elements of `T` from device address `src` to `dst` on this stream.
    ///
    /// # Safety
    /// Both addresses must hold `n` elements of `T` on this device.
    unsafe fn dtod<T>(&self, dst: u64, src: u64, n: usize, what: &'static str) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        // SAFETY: per the contract.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst,
                src,
                n * std::mem::size_of::<T>(),
                self.stream.cu_stream(),
            )
        }
        .map_err(driver_err(what))
    }

    /// Copy the first `n` elements of a device buffer back to the host.
    pub fn dtoh<T: DeviceRepr + Default + Clone>(
        &self,
        data: &CudaSlice<T>,
        n: usize,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::default(); n];
        if n > 0 {
            self.stream
                .memcpy_dtoh(&data.slice(0..n), &mut out)
                .map_err(driver_err("device-to-host copy"))?;
        }
        Ok(out)
    }

    /// Wait for all queued work.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_err("stream synchronize"))
    }

    /// Turn a launch result into a jetgen error naming the kernel; with `JETGEN_CUDA_SYNC=1`
    /// also synchronise so asynchronous faults are attributed to this kernel.
    pub fn check_launch<T>(
        &self,
        kernel: &str,
        result: std::result::Result<T, cudarc::driver::DriverError>,
    ) -> Result<()> {
        result.map_err(driver_err(format!("launching kernel {kernel}")))?;
        if self.sync_each_launch {
            self.stream
                .synchronize()
                .map_err(driver_err(format!("kernel {kernel} (after launch)")))?;
        }
        Ok(())
    }
}

fn oom_or(e: cudarc::driver::DriverError, bytes: usize) -> Error {
    let msg = format!("{e:?}");
    if msg.contains("OUT_OF_MEMORY") {
        Error::Cuda {
            what: "allocation".into(),
            msg: format!("out of GPU memory allocating {bytes} bytes"),
        }
    } else {
        Error::Cuda {
            what: "allocation/copy".into(),
            msg,
        }
    }
}

/// Compile an embedded kernel source with NVRTC for the device's architecture.
fn nvrtc_compile(km: &KernelModule, major: i32, minor: i32) -> Result<cudarc::nvrtc::Ptx> {
    // SAFETY: probes whether libnvrtc can be dlopen'ed.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::CudaUnavailable(format!(
            "kernel module '{}' was not precompiled and libnvrtc is not loadable",
            km.name
        )));
    }
    let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(km.source, opts).map_err(|e| Error::Cuda {
        what: format!("NVRTC compile of {}", km.name),
        msg: format!("{e:?}"),
    })
}

/// Launch configuration for `n` independent threads, 256 per block.
pub fn grid_for(n: usize) -> LaunchConfig {
    let threads = 256u32;
    let blocks = (n.max(1) as u64)
        .div_ceil(threads as u64)
        .min(u32::MAX as u64) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}
