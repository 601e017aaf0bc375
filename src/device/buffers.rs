//! Device-buffer utilities that are not ops: filling a buffer with a constant and counting
//! its non-finite elements. Tensor construction and validation use them; they record
//! nothing on a tape and have no backward.

use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::device::cuda::{grid_for, CudaBackend};
use crate::error::{Error, Result};
use crate::tensor::CudaBuffer;

/// `n` as the kernels' u32 element count, or an error naming `what`.
fn count_u32(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        Error::invalid(format!(
            "{what}: {n} elements exceed the CUDA kernels' 2^32 limit"
        ))
    })
}

/// Set the first `n` elements of a device buffer to `value` (kernel `elementwise/fill`).
pub fn fill(be: &CudaBackend, out: &mut CudaSlice<f32>, n: usize, value: f32) -> Result<()> {
    if n > out.len() {
        return Err(Error::invalid(format!(
            "fill: {n} elements asked of a buffer of {}",
            out.len()
        )));
    }
    let f = be.function("elementwise", "fill")?;
    let nn = count_u32("fill", n)?;
    let mut lb = be.stream.launch_builder(&f);
    lb.arg(&nn).arg(&value).arg(out);
    // SAFETY: out holds at least n elements (checked above).
    be.check_launch("fill", unsafe { lb.launch(grid_for(n)) })
}

/// NaN/∞ counts of several device buffers (`(buffer, elements)`, all on one device): one
/// counting launch per buffer (kernel `reduce/count_nonfinite`) into its own slot, then a
/// single read-back (one host sync for all of an op's inputs instead of one per input).
pub fn count_non_finite_many(bufs: &[(&CudaBuffer, usize)]) -> Result<Vec<usize>> {
    let Some((first, _)) = bufs.first() else {
        return Ok(Vec::new());
    };
    let be = &first.backend;
    let mut counts = be.alloc_zeros::<u32>(bufs.len())?;
    let f = be.function("reduce", "count_nonfinite")?;
    for (slot, (buf, n)) in bufs.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        if *n > buf.slice.len() {
            return Err(Error::invalid(format!(
                "count_non_finite: {n} elements asked of a buffer of {}",
                buf.slice.len()
            )));
        }
        let nn = count_u32("count_non_finite", *n)?;
        let mut count = counts.slice_mut(slot..slot + 1);
        let mut b = be.stream.launch_builder(&f);
        b.arg(&nn).arg(&buf.slice).arg(&mut count);
        // SAFETY: the buffer holds n elements (checked); `count` is one slot of `counts`.
        be.check_launch("count_nonfinite", unsafe {
            b.launch(grid_for((*n).min(1 << 20)))
        })?;
    }
    Ok(be
        .dtoh(&counts, bufs.len())?
        .into_iter()
        .map(|c| c as usize)
        .collect())
}
