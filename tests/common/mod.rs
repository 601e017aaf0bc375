//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod critic;
pub mod mutate;

use std::path::{Path, PathBuf};

use jetgen::{Device, Tensor};

/// Reference vectors copied into the repository (from ../shared/vectors); `JETGEN_VECTORS`
/// overrides the location (the GPU bundle runs test executables away from the checkout).
pub fn vectors_dir() -> PathBuf {
    match std::env::var_os("JETGEN_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"),
    }
}

/// The built-in sample (data/sample); `JETGEN_SAMPLE_DIR` overrides it (the GPU bundle runs
/// test executables away from the checkout).
pub fn sample_dir() -> PathBuf {
    match std::env::var_os("JETGEN_SAMPLE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample"),
    }
}

/// Read a `.npy` file as f64 values and its shape (f64, f32, i64 and bool arrays).
pub fn npy(path: &Path) -> (Vec<f64>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let arr = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = arr.shape().iter().map(|&d| d as usize).collect();
    let dtype = arr.dtype();
    let descr = match &dtype {
        npyz::DType::Plain(t) => t.to_string(),
        other => panic!("unsupported dtype {other:?}"),
    };
    let data: Vec<f64> = match descr.as_str() {
        "<f8" => arr.into_vec::<f64>().unwrap(),
        "<f4" => arr
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        "<i8" => arr
            .into_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        "|b1" => arr
            .into_vec::<bool>()
            .unwrap()
            .into_iter()
            .map(|v| v as u8 as f64)
            .collect(),
        d => panic!("unsupported npy dtype {d} in {}", path.display()),
    };
    (data, shape)
}

/// A `.npy` file as an f32 tensor on `device`.
pub fn npy_tensor(path: &Path, device: Device) -> Tensor {
    let (data, shape) = npy(path);
    let f: Vec<f32> = data.iter().map(|&v| v as f32).collect();
    Tensor::from_slice(&f, &shape, device).unwrap()
}

/// A `.npy` file as an f64 CPU tensor.
pub fn npy_tensor_f64(path: &Path) -> Tensor {
    let (data, shape) = npy(path);
    Tensor::from_f64(&data, &shape).unwrap()
}

/// The CUDA device to test on, or `None` (after printing why) when there is none.
/// With `REQUIRE_GPU=1` a missing GPU is a test failure.
pub fn cuda_or_skip(test: &str) -> Option<Device> {
    match jetgen::device::cuda::driver_available() {
        Ok(_) => Some(Device::Cuda(0)),
        Err(e) => {
            if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: REQUIRE_GPU=1 but no usable GPU: {e}");
            }
            eprintln!("{test}: skipped: no GPU ({e})");
            None
        }
    }
}

/// Assert `|a − b| ≤ atol + rtol·|b|` elementwise, NaN/inf positions equal.
pub fn assert_close(a: &[f64], b: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0f64);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if !y.is_finite() || !x.is_finite() {
            assert!(
                (x.is_nan() && y.is_nan()) || x == y,
                "{what}[{i}]: non-finite mismatch {x} vs {y}"
            );
            continue;
        }
        let err = (x - y).abs() - (atol + rtol * y.abs());
        if err > worst.1 {
            worst = (i, err);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!(
            "{what}[{i}]: {} vs reference {} (atol {atol}, rtol {rtol})",
            a[i], b[i]
        );
    }
}
