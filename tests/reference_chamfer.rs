//! Chamfer distance against the PyTorch float64 reference (tests/vectors/chamfer: B = 64,
//! N = 30, M = 25, D = 3; masked variant with random valid positions, batch 0 with one valid
//! x and batch 2 with one valid y; masked points hold random coordinates), plus invariants
//! and robustness.

mod common;

use common::{assert_close, npy, npy_tensor_f64, vectors_dir};
use jetgen::ops::chamfer::{
    chamfer, chamfer_backward, BatchReduction, PointReduction, NO_NEIGHBOUR,
};
use jetgen::{DType, Device, Rng, Tape, Tensor};

fn load(name: &str) -> Tensor {
    npy_tensor_f64(&vectors_dir().join("chamfer").join(format!("{name}.npy")))
}

fn check(dtype: DType, atol: f64, rtol: f64) {
    let (x, y) = (
        load("x").to_dtype(dtype).unwrap(),
        load("y").to_dtype(dtype).unwrap(),
    );
    let (mx, my) = (
        load("mask_x").to_dtype(dtype).unwrap(),
        load("mask_y").to_dtype(dtype).unwrap(),
    );
    for masked in [false, true] {
        for (red, tag) in [(PointReduction::Sum, "sum"), (PointReduction::Mean, "mean")] {
            let prefix = if masked { "masked_" } else { "" };
            let (mask_x, mask_y) = if masked {
                (Some(&mx), Some(&my))
            } else {
                (None, None)
            };
            let out = chamfer(&x, &y, mask_x, mask_y, red).unwrap();
            let what = |s: &str| format!("{dtype:?} {prefix}{tag} {s}");
            assert_close(
                &out.distance.to_vec_f64().unwrap(),
                &npy(&vectors_dir().join(format!("chamfer/{prefix}dist_{tag}.npy"))).0,
                atol,
                rtol,
                &what("distance"),
            );
            let ones = Tensor::full(&[64], 1.0, Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (gx, gy) = chamfer_backward(&x, &y, &out, red, &ones).unwrap();
            assert_close(
                &gx.to_vec_f64().unwrap(),
                &npy(&vectors_dir().join(format!("chamfer/{prefix}grad_x_{tag}.npy"))).0,
                atol,
                rtol,
                &what("grad x"),
            );
            assert_close(
                &gy.to_vec_f64().unwrap(),
                &npy(&vectors_dir().join(format!("chamfer/{prefix}grad_y_{tag}.npy"))).0,
                atol,
                rtol,
                &what("grad y"),
            );
            // neighbour indices at valid points
            let (want_xy, _) = npy(&vectors_dir().join(format!("chamfer/{prefix}nn_xy.npy")));
            let (want_yx, _) = npy(&vectors_dir().join(format!("chamfer/{prefix}nn_yx.npy")));
            let mxv = mx.to_vec().unwrap();
            let myv = my.to_vec().unwrap();
            for (k, &j) in out.nn_xy.to_vec().unwrap().iter().enumerate() {
                if !masked || mxv[k] != 0.0 {
                    assert_eq!(j as f64, want_xy[k], "nn_xy[{k}]");
                } else {
                    assert_eq!(j, NO_NEIGHBOUR);
                }
            }
            for (k, &i) in out.nn_yx.to_vec().unwrap().iter().enumerate() {
                if !masked || myv[k] != 0.0 {
                    assert_eq!(i as f64, want_yx[k], "nn_yx[{k}]");
                }
            }
        }
    }
}

#[test]
fn matches_pytorch_f64() {
    check(DType::F64, 1e-12, 1e-12);
}

#[test]
fn matches_pytorch_f32() {
    check(DType::F32, 1e-5, 1e-5);
}

fn cloud(rng: &mut Rng, b: usize, n: usize, d: usize) -> Tensor {
    rng.normal(&[b, n, d], 0.0, 1.0, Device::Cpu).unwrap()
}

#[test]
fn invariant_under_permutation_and_padding() {
    let mut rng = Rng::new(1);
    let (x, y) = (cloud(&mut rng, 3, 7, 2), cloud(&mut rng, 3, 5, 2));
    let base = chamfer(&x, &y, None, None, PointReduction::Mean)
        .unwrap()
        .distance
        .to_vec()
        .unwrap();
    // permute the points of x within each cloud
    let perm = [3usize, 0, 6, 1, 5, 2, 4];
    let xv = x.to_vec().unwrap();
    let mut xp = xv.clone();
    for b in 0..3 {
        for (k, &p) in perm.iter().enumerate() {
            xp[(b * 7 + k) * 2..(b * 7 + k) * 2 + 2]
                .copy_from_slice(&xv[(b * 7 + p) * 2..(b * 7 + p) * 2 + 2]);
        }
    }
    let xp = Tensor::from_slice(&xp, &[3, 7, 2], Device::Cpu).unwrap();
    let permuted = chamfer(&xp, &y, None, None, PointReduction::Mean)
        .unwrap()
        .distance
        .to_vec()
        .unwrap();
    assert_close(
        &permuted.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &base.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
        1e-6,
        "permuted",
    );
    // append 4 padded points with wild coordinates to y
    let yv = y.to_vec().unwrap();
    let mut padded = Vec::new();
    let mut mask = Vec::new();
    for b in 0..3 {
        padded.extend_from_slice(&yv[b * 10..(b + 1) * 10]);
        padded.extend_from_slice(&[1e3, -1e3, 0.0, 0.0, 5.0, 5.0, -7.0, 2.0]);
        mask.extend([1.0; 5]);
        mask.extend([0.0; 4]);
    }
    let yp = Tensor::from_slice(&padded, &[3, 9, 2], Device::Cpu).unwrap();
    let my = Tensor::from_slice(&mask, &[3, 9], Device::Cpu).unwrap();
    let with_padding = chamfer(&x, &yp, None, Some(&my), PointReduction::Mean)
        .unwrap()
        .distance
        .to_vec()
        .unwrap();
    assert_eq!(with_padding, base);
}

#[test]
fn degenerate_clouds() {
    let mut rng = Rng::new(2);
    let (x, y) = (cloud(&mut rng, 3, 4, 3), cloud(&mut rng, 3, 6, 3));
    // pair 0: x fully padded; pair 1: single valid y; pair 2: normal
    let mx = Tensor::from_slice(
        &[0., 0., 0., 0., 1., 1., 1., 1., 1., 1., 1., 1.],
        &[3, 4],
        Device::Cpu,
    )
    .unwrap();
    let my = Tensor::from_slice(
        &[
            1., 1., 1., 1., 1., 1., 0., 0., 1., 0., 0., 0., 1., 1., 1., 1., 1., 1.,
        ],
        &[3, 6],
        Device::Cpu,
    )
    .unwrap();
    let tape = Tape::new();
    let (vx, vy) = (tape.var(x.clone()), tape.var(y.clone()));
    let d = vx
        .chamfer(
            &vy,
            Some(&mx),
            Some(&my),
            PointReduction::Mean,
            BatchReduction::None,
        )
        .unwrap();
    let dv = d.value().to_vec().unwrap();
    assert_eq!(dv[0], 0.0, "an empty cloud contributes 0");
    assert!(dv.iter().all(|v| v.is_finite()));
    let grads = d.sum_all().unwrap().backward().unwrap();
    let gx = grads.get(&vx).unwrap().to_vec().unwrap();
    assert!(gx.iter().all(|v| v.is_finite()));
    assert!(
        gx[..12].iter().all(|&v| v == 0.0),
        "no gradient into an empty pair"
    );
    // identical clouds: distance 0
    let same = chamfer(&x, &x, None, None, PointReduction::Sum)
        .unwrap()
        .distance
        .to_vec()
        .unwrap();
    assert!(same.iter().all(|&v| v == 0.0));
    // NaN input: a clear error
    let mut xv = x.to_vec().unwrap();
    xv[5] = f32::NAN;
    let bad = Tensor::from_slice(&xv, &[3, 4, 3], Device::Cpu).unwrap();
    let err = chamfer(&bad, &y, None, None, PointReduction::Sum).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    // shape errors
    assert!(chamfer(
        &x,
        &cloud(&mut rng, 2, 6, 3),
        None,
        None,
        PointReduction::Sum
    )
    .is_err());
    assert!(chamfer(&x, &y, Some(&my), None, PointReduction::Sum).is_err());
}

#[test]
fn large_clouds_match_brute_force() {
    let mut rng = Rng::new(3);
    let (x, y) = (cloud(&mut rng, 2, 300, 4), cloud(&mut rng, 2, 257, 4));
    let out = chamfer(&x, &y, None, None, PointReduction::Sum).unwrap();
    let (xv, yv) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    for b in 0..2 {
        let mut total = 0.0;
        for i in 0..300 {
            total += (0..257)
                .map(|j| {
                    (0..4)
                        .map(|k| (xv[(b * 300 + i) * 4 + k] - yv[(b * 257 + j) * 4 + k]).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
        }
        for j in 0..257 {
            total += (0..300)
                .map(|i| {
                    (0..4)
                        .map(|k| (xv[(b * 300 + i) * 4 + k] - yv[(b * 257 + j) * 4 + k]).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
        }
        let got = out.distance.to_vec_f64().unwrap()[b];
        assert!((got - total).abs() < 1e-3 * total, "{got} vs {total}");
    }
}

/// Integer coordinates make every squared distance exact in f32 and f64, and full of ties,
/// so the f32 SIMD sweep and the generic (f64) sweep must agree bit for bit: same distances,
/// same first-index-on-ties neighbours, same gradients. Odd sizes, masks and D from 1 to 9
/// cover the unrolled (D = 2, 3, 4) and run-time-D paths and the lane padding.
#[test]
fn simd_and_generic_sweeps_agree_exactly() {
    let mut rng = Rng::new(11);
    for (b, n, m, d) in [
        (5, 1, 1, 3),
        (4, 7, 9, 1),
        (3, 8, 8, 2),
        (6, 30, 25, 3),
        (3, 17, 33, 4),
        (2, 13, 5, 5),
        (2, 41, 40, 9),
    ] {
        let ints = |rng: &mut Rng, p: usize| {
            let u = rng.uniform(&[b, p, d], 0.0, 5.0, Device::Cpu).unwrap();
            let v: Vec<f64> = u.to_vec_f64().unwrap().iter().map(|v| v.floor()).collect();
            Tensor::from_cpu_vec(v, &[b, p, d]).unwrap()
        };
        let mask = |rng: &mut Rng, p: usize| {
            let u = rng.uniform(&[b, p], 0.0, 1.0, Device::Cpu).unwrap();
            let v: Vec<f64> = u
                .to_vec_f64()
                .unwrap()
                .iter()
                .map(|&v| (v < 0.8) as u8 as f64)
                .collect();
            Tensor::from_cpu_vec(v, &[b, p]).unwrap()
        };
        let (x64, y64) = (ints(&mut rng, n), ints(&mut rng, m));
        let (mx, my) = (mask(&mut rng, n), mask(&mut rng, m));
        let (x32, y32) = (
            x64.to_dtype(DType::F32).unwrap(),
            y64.to_dtype(DType::F32).unwrap(),
        );
        let g = Tensor::full(&[b], 1.0, Device::Cpu).unwrap();
        let (mx32, my32) = (
            mx.to_dtype(DType::F32).unwrap(),
            my.to_dtype(DType::F32).unwrap(),
        );
        for masks in [false, true] {
            let pick = |a: &Tensor, b: &Tensor| {
                if masks {
                    (Some(a.clone()), Some(b.clone()))
                } else {
                    (None, None)
                }
            };
            let ((ma, mb), (ma32, mb32)) = (pick(&mx, &my), pick(&mx32, &my32));
            let o64 = chamfer(&x64, &y64, ma.as_ref(), mb.as_ref(), PointReduction::Sum).unwrap();
            let o32 = chamfer(
                &x32,
                &y32,
                ma32.as_ref(),
                mb32.as_ref(),
                PointReduction::Sum,
            )
            .unwrap();
            let case = format!("B{b} N{n} M{m} D{d} masks {masks}");
            assert_eq!(
                o64.distance.to_vec_f64().unwrap(),
                o32.distance.to_vec_f64().unwrap(),
                "{case}"
            );
            assert_eq!(
                o64.nn_xy.to_vec().unwrap(),
                o32.nn_xy.to_vec().unwrap(),
                "{case}"
            );
            assert_eq!(
                o64.nn_yx.to_vec().unwrap(),
                o32.nn_yx.to_vec().unwrap(),
                "{case}"
            );
            let g64 = chamfer_backward(&x64, &y64, &o64, PointReduction::Sum, &g).unwrap();
            let g32 = chamfer_backward(
                &x32,
                &y32,
                &o32,
                PointReduction::Sum,
                &g.to_dtype(DType::F32).unwrap(),
            )
            .unwrap();
            assert_eq!(
                g64.0.to_vec_f64().unwrap(),
                g32.0.to_vec_f64().unwrap(),
                "{case}"
            );
            assert_eq!(
                g64.1.to_vec_f64().unwrap(),
                g32.1.to_vec_f64().unwrap(),
                "{case}"
            );
        }
    }
}

/// Coordinates so large that squared distances overflow f32: the distance is +∞ (an honest
/// answer), and every valid point still has a neighbour.
#[test]
fn overflowing_distances_give_infinity_not_a_finite_number() {
    let x = Tensor::from_slice(&[1e20f32, 0.0, -1e20, 0.0], &[1, 2, 2], Device::Cpu).unwrap();
    let y = Tensor::from_slice(&[-1e20f32, 0.0, 3e20, 0.0], &[1, 2, 2], Device::Cpu).unwrap();
    let out = chamfer(&x, &y, None, None, PointReduction::Sum).unwrap();
    assert_eq!(out.distance.to_vec().unwrap()[0], f32::INFINITY);
    assert!(out
        .nn_xy
        .to_vec()
        .unwrap()
        .iter()
        .all(|&i| i != NO_NEIGHBOUR));
    assert!(out
        .nn_yx
        .to_vec()
        .unwrap()
        .iter()
        .all(|&i| i != NO_NEIGHBOUR));
}

#[test]
fn clouds_with_no_points_give_zero_distance_counts_and_gradients() {
    // N = 0 (and M = 0) as shapes, not only through masks: B pairs of which one side holds
    // no points at all
    for (n, m) in [(0, 5), (5, 0), (0, 0)] {
        for dtype in [DType::F32, DType::F64] {
            let mut rng = Rng::new(7);
            let x = cloud(&mut rng, 3, n, 3).to_dtype(dtype).unwrap();
            let y = cloud(&mut rng, 3, m, 3).to_dtype(dtype).unwrap();
            let out = chamfer(&x, &y, None, None, PointReduction::Mean).unwrap();
            assert_eq!(out.distance.to_vec_f64().unwrap(), vec![0.0; 3]);
            assert_eq!(out.nn_xy.shape(), &[3, n]);
            assert_eq!(out.nn_yx.shape(), &[3, m]);
            let counts = out.counts.to_vec_f64().unwrap();
            for p in 0..3 {
                assert_eq!(counts[2 * p..2 * p + 2], [n as f64, m as f64], "{n}x{m}");
            }
            let g = Tensor::full(&[3], 1.0, Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (gx, gy) = chamfer_backward(&x, &y, &out, PointReduction::Mean, &g).unwrap();
            assert_eq!(gx.shape(), x.shape());
            assert!(gx.to_vec_f64().unwrap().iter().all(|&v| v == 0.0));
            assert!(gy.to_vec_f64().unwrap().iter().all(|&v| v == 0.0));
        }
    }
}
