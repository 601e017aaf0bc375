//! Shapes, strides and broadcasting rules (NumPy semantics), shared by every op.

use crate::error::{Error, Result};

/// Most dimensions a strided kernel handles (tensors here are at most 4-D in practice).
pub const MAX_DIMS: usize = 8;

/// Number of elements of a shape (1 for a scalar `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major (C order) strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Resolve a possibly negative axis (`-1` = last) against `ndim`.
pub fn normalize_axis(op: &'static str, axis: isize, ndim: usize) -> Result<usize> {
    let resolved = if axis < 0 { axis + ndim as isize } else { axis };
    if resolved < 0 || resolved as usize >= ndim {
        return Err(Error::shape(
            op,
            format!("axis {axis} out of range for a {ndim}-d tensor"),
        ));
    }
    Ok(resolved as usize)
}

/// NumPy broadcast of two shapes: align right, sizes must be equal or 1.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let ndim = a.len().max(b.len());
    let mut out = vec![0; ndim];
    for i in 0..ndim {
        let da = if i + a.len() >= ndim {
            a[i + a.len() - ndim]
        } else {
            1
        };
        let db = if i + b.len() >= ndim {
            b[i + b.len() - ndim]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("cannot broadcast {a:?} with {b:?}"),
                ));
            }
        };
    }
    Ok(out)
}

/// Strides that read a contiguous tensor of shape `src` as if it had the (broadcast) shape
/// `out`: broadcast axes get stride 0.
pub fn broadcast_strides(src: &[usize], out: &[usize]) -> Vec<usize> {
    let src_strides = contiguous_strides(src);
    let offset = out.len() - src.len();
    (0..out.len())
        .map(|d| {
            if d < offset || src[d - offset] == 1 {
                0
            } else {
                src_strides[d - offset]
            }
        })
        .collect()
}

/// Split a shape around `axis` into `(outer, n, inner)`: the view every single-axis
/// reduction/scan works on.
pub fn outer_axis_inner(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// A strided view for kernels: `shape` with one stride list per operand, dims merged where
/// possible so that contiguous cases collapse to 1-D.
#[derive(Clone, Debug, PartialEq)]
pub struct StridedLayout {
    pub shape: Vec<usize>,
    pub strides: Vec<Vec<usize>>,
}

impl StridedLayout {
    /// Build a layout over `shape` for operands with the given strides, merging adjacent dims
    /// `d, d+1` whenever every operand has `stride[d] == stride[d+1] * shape[d+1]`.
    pub fn new(shape: &[usize], strides: Vec<Vec<usize>>) -> Self {
        let mut merged_shape: Vec<usize> = Vec::new();
        let mut merged: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
        for d in 0..shape.len() {
            if shape[d] == 1 {
                continue; // size-1 dims never affect addressing
            }
            let can_merge = !merged_shape.is_empty()
                && strides
                    .iter()
                    .zip(&merged)
                    .all(|(s, m)| *m.last().unwrap() == s[d] * shape[d]);
            if can_merge {
                *merged_shape.last_mut().unwrap() *= shape[d];
                for (m, s) in merged.iter_mut().zip(&strides) {
                    *m.last_mut().unwrap() = s[d];
                }
            } else {
                merged_shape.push(shape[d]);
                for (m, s) in merged.iter_mut().zip(&strides) {
                    m.push(s[d]);
                }
            }
        }
        StridedLayout {
            shape: merged_shape,
            strides: merged,
        }
    }

    /// Length of the innermost (merged) dimension: elements `r·len .. (r+1)·len` of the
    /// output form row `r`, and within a row operand `k` advances by `inner_stride(k)`.
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Stride of operand `k` along the innermost dimension (0 for a scalar layout).
    pub fn inner_stride(&self, k: usize) -> usize {
        self.strides[k].last().copied().unwrap_or(0)
    }

    /// Offset of linear (row-major) output index `i` in operand `k`.
    #[inline]
    pub fn offset(&self, k: usize, mut i: usize) -> usize {
        let strides = &self.strides[k];
        let mut off = 0;
        for d in (0..self.shape.len()).rev() {
            let n = self.shape[d];
            off += (i % n) * strides[d];
            i /= n;
        }
        off
    }
}

/// Check `shape` has `ndim` dims and report a shape error mentioning `what` otherwise.
pub fn expect_ndim(op: &'static str, what: &str, shape: &[usize], ndim: usize) -> Result<()> {
    if shape.len() != ndim {
        return Err(Error::shape(
            op,
            format!("{what} must be {ndim}-d, got {shape:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        assert_eq!(
            broadcast_shapes("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert!(broadcast_shapes("t", &[3, 2], &[3]).is_err());
        assert_eq!(broadcast_strides(&[4, 1], &[3, 4, 5]), vec![0, 1, 0]);
    }

    #[test]
    fn layout_merges_contiguous_dims() {
        let l = StridedLayout::new(&[2, 3, 4], vec![vec![12, 4, 1], vec![12, 4, 1]]);
        assert_eq!(l.shape, vec![24]);
        let b = StridedLayout::new(&[2, 3, 4], vec![vec![12, 4, 1], vec![0, 0, 1]]);
        assert_eq!(b.shape, vec![6, 4]);
        assert_eq!(b.offset(1, 5), 1);
    }
}
