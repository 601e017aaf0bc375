//! Every kernel of every `kernels/*.cu`, launched with the shapes that reach each of its launch
//! configurations, against the CPU twin: odd sizes spanning several blocks, both line modes of
//! the reductions (a warp per line, a thread per line), the warp-sized to full blocks of the
//! Chamfer dispatch, one and three Sinkhorn problems per pair, every RQS bin-count
//! specialisation and a run-time one, masks and empty clouds, NaN/±inf where the op defines
//! them. Device buffers are poisoned (NaN) before kernels write them.
//!
//! Under the CUDA-on-CPU executor (`--features cuda-emu`) the test then reads the executor's
//! launch table and fails when a kernel of kernels/*.cu was never launched, when the executor
//! compiled a different set of kernels than the sources hold, or when a dispatch block size was
//! not reached. On a real GPU that last part is skipped (with a message); without one the
//! whole test is (REQUIRE_GPU=1 makes that a failure).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{assert_close, cuda_or_skip};
use jetgen::ops::chamfer::{chamfer, chamfer_backward, PointReduction};
use jetgen::ops::elementwise::{self, BinaryOp, UnaryOp};
use jetgen::ops::index::{self, Indices};
use jetgen::ops::rqs::{rqs, rqs_backward, RqsConfig};
use jetgen::ops::sinkhorn::{sinkhorn, sinkhorn_backward, Cost, SinkhornConfig};
use jetgen::ops::{movement, reduce};
use jetgen::{Device, Rng, Tensor};

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// `t` on the GPU and back compared with the CPU value.
fn same(gpu: &Tensor, cpu: &Tensor, atol: f64, rtol: f64, what: &str) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shapes");
    assert_close(&f64s(gpu), &f64s(cpu), atol, rtol, what);
}

fn normal(rng: &mut Rng, shape: &[usize], std: f32) -> Tensor {
    rng.normal(shape, 0.0, std, Device::Cpu).unwrap()
}

/// `x` with some entries replaced by NaN, ±inf, ±0 and huge values (every `every`-th).
fn with_specials(x: &Tensor, every: usize) -> Tensor {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e30,
        -1e30,
        1e-30,
    ];
    let mut v = x.to_vec().unwrap();
    for (k, i) in (0..v.len()).step_by(every).enumerate() {
        v[i] = specials[k % specials.len()];
    }
    Tensor::from_slice(&v, x.shape(), Device::Cpu).unwrap()
}

fn elementwise_cases(gpu: Device) {
    let mut rng = Rng::new(21);
    let n = 1037; // five blocks of 256, the last one partial
    let x = normal(&mut rng, &[n], 2.0);
    let pos = Tensor::from_slice(
        &x.to_vec()
            .unwrap()
            .iter()
            .map(|v| v.abs() + 0.1)
            .collect::<Vec<_>>(),
        &[n],
        Device::Cpu,
    )
    .unwrap();
    let g = normal(&mut rng, &[n], 1.0);
    use UnaryOp::*;
    let ops = [
        (Neg, false),
        (Exp, false),
        (Log, true),
        (Sqrt, true),
        (Square, false),
        (Pow(1.7), true),
        (Abs, false),
        (Relu, false),
        (LeakyRelu(0.1), false),
        (Elu(1.0), false),
        (Tanh, false),
        (Sigmoid, false),
        (Softplus, false),
        (Clamp(-1.0, 0.5), false),
        (AddScalar(0.3), false),
        (MulScalar(-1.7), false),
        (Recip, true),
        (Sin, false),
        (Cos, false),
        (Sinh, false),
        (Cosh, false),
    ];
    for (op, positive) in ops {
        let x = if positive { &pos } else { &x };
        let y = elementwise::unary(op, x).unwrap();
        let yd = elementwise::unary(op, &x.to_device(gpu).unwrap()).unwrap();
        same(&yd, &y, 1e-5, 1e-5, &format!("{op:?} forward"));
        let dx = elementwise::unary_backward(op, x, &y, &g).unwrap();
        let dxd = elementwise::unary_backward(
            op,
            &x.to_device(gpu).unwrap(),
            &yd,
            &g.to_device(gpu).unwrap(),
        )
        .unwrap();
        same(&dxd, &dx, 1e-5, 1e-5, &format!("{op:?} backward"));
        if !matches!(op, Sin | Cos) {
            // sin/cos reduce their argument in f32 on CUDA (exact for |x| ≲ 1e4 only)
            let xs = with_specials(x, 7);
            let ys = elementwise::unary(op, &xs).unwrap();
            let ysd = elementwise::unary(op, &xs.to_device(gpu).unwrap()).unwrap();
            same(&ysd, &ys, 1e-5, 1e-5, &format!("{op:?} on NaN/inf/0/huge"));
        }
    }
    // broadcasting through every stride pattern of a 4-d layout, NaN in either operand
    let a = with_specials(&normal(&mut rng, &[3, 1, 5, 7], 1.0), 11);
    let b = with_specials(&normal(&mut rng, &[1, 4, 1, 7], 1.0), 5);
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
    ] {
        let c = elementwise::binary(op, &a, &b).unwrap();
        let cd = elementwise::binary(op, &a.to_device(gpu).unwrap(), &b.to_device(gpu).unwrap())
            .unwrap();
        same(
            &cd,
            &c,
            1e-6,
            1e-6,
            &format!("{op:?} broadcast [3,1,5,7] x [1,4,1,7]"),
        );
    }
    let cond = Tensor::from_slice(&[1.0, 0.0, f32::NAN, 0.0], &[4, 1], Device::Cpu).unwrap();
    let sa = with_specials(&normal(&mut rng, &[4, 9], 1.0), 4);
    let sb = normal(&mut rng, &[9], 1.0);
    let s = elementwise::select(&cond, &sa, &sb).unwrap();
    let sd = elementwise::select(
        &cond.to_device(gpu).unwrap(),
        &sa.to_device(gpu).unwrap(),
        &sb.to_device(gpu).unwrap(),
    )
    .unwrap();
    same(
        &sd,
        &s,
        0.0,
        0.0,
        "select with a broadcast condition (NaN counts as true)",
    );
    for (len, value) in [(1usize, -3.5f32), (257, f32::NAN), (1000, 0.25)] {
        let f = Tensor::full(&[len], value, gpu).unwrap();
        same(
            &f,
            &Tensor::full(&[len], value, Device::Cpu).unwrap(),
            0.0,
            0.0,
            "fill",
        );
    }
}

fn reduce_cases(gpu: Device) {
    let mut rng = Rng::new(22);
    // [13, 5]: 13 warp-lines, 5 of them in a second block whose other warps exit at once, and
    // fewer elements than lanes; [9, 1000]: long lines; [3, 300, 7] / [2, 5, 300]: a thread per
    // line, more lines than one block.
    let shapes: [(&[usize], usize); 5] = [
        (&[13, 5], 1),
        (&[9, 1000], 1),
        (&[3, 300, 7], 1),
        (&[2, 5, 300], 1),
        (&[1, 1], 0),
    ];
    for (shape, axis) in shapes {
        let x = with_specials(&normal(&mut rng, shape, 2.0), 29);
        // ties: quantise so that equal maxima occur, then keep a few specials
        let xq = Tensor::from_slice(
            &x.to_vec()
                .unwrap()
                .iter()
                .map(|v| {
                    if v.is_finite() {
                        (v * 2.0).round() / 2.0
                    } else {
                        *v
                    }
                })
                .collect::<Vec<_>>(),
            shape,
            Device::Cpu,
        )
        .unwrap();
        let xd = xq.to_device(gpu).unwrap();
        let what = |k: &str| format!("{k} {shape:?} axis {axis}");
        let finite = normal(&mut rng, shape, 2.0);
        let fd = finite.to_device(gpu).unwrap();
        same(
            &reduce::sum_axis(&fd, axis, false).unwrap(),
            &reduce::sum_axis(&finite, axis, false).unwrap(),
            1e-4,
            1e-5,
            &what("sum"),
        );
        same(
            &reduce::sum_axis(&xd, axis, true).unwrap(),
            &reduce::sum_axis(&xq, axis, true).unwrap(),
            1e-4,
            1e-5,
            &what("sum with NaN/inf"),
        );
        let (m, am) = reduce::max_axis(&xq, axis, false).unwrap();
        let (md, amd) = reduce::max_axis(&xd, axis, false).unwrap();
        same(&md, &m, 0.0, 0.0, &what("max (NaN wins, ties)"));
        assert_eq!(
            amd.to_vec().unwrap(),
            am.to_vec().unwrap(),
            "{}",
            what("argmax: first of ties")
        );
        let g = normal(&mut rng, m.shape(), 1.0);
        same(
            &reduce::onehot_scatter(&g.to_device(gpu).unwrap(), &amd, shape, axis).unwrap(),
            &reduce::onehot_scatter(&g, &am, shape, axis).unwrap(),
            0.0,
            0.0,
            &what("max backward (one-hot scatter)"),
        );
        same(
            &reduce::logsumexp_axis(&xd, axis, false).unwrap(),
            &reduce::logsumexp_axis(&xq, axis, false).unwrap(),
            1e-5,
            1e-5,
            &what("logsumexp with NaN/inf"),
        );
        for log in [false, true] {
            same(
                &reduce::softmax_axis(&fd, axis, log).unwrap(),
                &reduce::softmax_axis(&finite, axis, log).unwrap(),
                1e-5,
                1e-5,
                &what(if log { "log_softmax" } else { "softmax" }),
            );
        }
        for reverse in [false, true] {
            same(
                &reduce::cumsum_axis(&fd, axis, reverse).unwrap(),
                &reduce::cumsum_axis(&finite, axis, reverse).unwrap(),
                1e-4,
                1e-5,
                &what(if reverse { "suffix sum" } else { "prefix sum" }),
            );
        }
    }
    // a line that is all -inf, one with +inf, one with NaN
    let rows = Tensor::from_slice(
        &[
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            1.0,
            f32::INFINITY,
            2.0,
            1.0,
            f32::NAN,
            3.0,
        ],
        &[3, 3],
        Device::Cpu,
    )
    .unwrap();
    same(
        &reduce::logsumexp_axis(&rows.to_device(gpu).unwrap(), 1, false).unwrap(),
        &reduce::logsumexp_axis(&rows, 1, false).unwrap(),
        0.0,
        0.0,
        "logsumexp of -inf, +inf and NaN lines",
    );
    // non-finite counts: specials at block edges and at the end, exact integers
    let n = 70_001;
    let mut v = vec![0.5f32; n];
    for (k, i) in [0usize, 255, 256, 511, 65_535, 65_536, n - 1]
        .into_iter()
        .enumerate()
    {
        v[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][k % 3];
    }
    let t = Tensor::from_slice(&v, &[n], gpu).unwrap();
    assert_eq!(t.count_non_finite().unwrap(), 7, "count of NaN/inf");
    assert_eq!(
        Tensor::full(&[1], 1.0, gpu)
            .unwrap()
            .count_non_finite()
            .unwrap(),
        0
    );
}

fn index_and_movement_cases(gpu: Device) {
    let mut rng = Rng::new(23);
    let x = normal(&mut rng, &[3, 31, 5], 1.0);
    let xd = x.to_device(gpu).unwrap();
    // repeated and unsorted indices along the middle and the first axis
    for (axis, idx) in [
        (
            1usize,
            Indices::new(vec![30, 0, 7, 7, 12, 0], &[6]).unwrap(),
        ),
        (0, Indices::new(vec![2, 2, 0], &[3]).unwrap()),
    ] {
        let s = index::index_select(&x, axis, &idx).unwrap();
        let sd = index::index_select(&xd, axis, &idx.to_device(gpu).unwrap()).unwrap();
        same(&sd, &s, 0.0, 0.0, &format!("index_select axis {axis}"));
        let g = normal(&mut rng, s.shape(), 1.0);
        same(
            &index::index_add(
                &g.to_device(gpu).unwrap(),
                x.shape(),
                axis,
                &idx.to_device(gpu).unwrap(),
            )
            .unwrap(),
            &index::index_add(&g, x.shape(), axis, &idx).unwrap(),
            1e-6,
            1e-6,
            &format!("index_add axis {axis}"),
        );
    }
    let gidx = Indices::new(
        (0..3 * 4 * 5).map(|i| (i * 13 % 31) as u32).collect(),
        &[3, 4, 5],
    )
    .unwrap();
    let gt = index::gather(&x, 1, &gidx).unwrap();
    let gtd = index::gather(&xd, 1, &gidx.to_device(gpu).unwrap()).unwrap();
    same(&gtd, &gt, 0.0, 0.0, "gather");
    let g = normal(&mut rng, gt.shape(), 1.0);
    same(
        &index::scatter_add(
            &g.to_device(gpu).unwrap(),
            x.shape(),
            1,
            &gidx.to_device(gpu).unwrap(),
        )
        .unwrap(),
        &index::scatter_add(&g, x.shape(), 1, &gidx).unwrap(),
        1e-6,
        1e-6,
        "scatter_add",
    );
    let y = normal(&mut rng, &[2, 3, 5, 7], 1.0);
    let yd = y.to_device(gpu).unwrap();
    same(
        &movement::permute(&yd, &[3, 1, 0, 2]).unwrap(),
        &movement::permute(&y, &[3, 1, 0, 2]).unwrap(),
        0.0,
        0.0,
        "permute",
    );
    same(
        &movement::narrow(&yd, 2, 1, 3).unwrap(),
        &movement::narrow(&y, 2, 1, 3).unwrap(),
        0.0,
        0.0,
        "narrow",
    );
    let b = normal(&mut rng, &[3, 1, 7], 1.0);
    same(
        &movement::broadcast_to(&b.to_device(gpu).unwrap(), &[2, 3, 5, 7]).unwrap(),
        &movement::broadcast_to(&b, &[2, 3, 5, 7]).unwrap(),
        0.0,
        0.0,
        "broadcast_to",
    );
    let parts: Vec<Tensor> = [1usize, 4, 2]
        .iter()
        .map(|&k| normal(&mut rng, &[2, 3, k, 7], 1.0))
        .collect();
    let dparts: Vec<Tensor> = parts.iter().map(|p| p.to_device(gpu).unwrap()).collect();
    same(
        &movement::concat(&dparts.iter().collect::<Vec<_>>(), 2).unwrap(),
        &movement::concat(&parts.iter().collect::<Vec<_>>(), 2).unwrap(),
        0.0,
        0.0,
        "concat of three",
    );
    same(
        &movement::pad_axis(&yd, &[2, 3, 9, 7], 2, 3).unwrap(),
        &movement::pad_axis(&y, &[2, 3, 9, 7], 2, 3).unwrap(),
        0.0,
        0.0,
        "pad_axis",
    );
}

fn random_and_optim_cases(gpu: Device) {
    use jetgen::nn::{Adam, AdamConfig, Param};
    for n in [1usize, 257, 4097] {
        let mut cpu = Rng::new(77);
        let mut dev = Rng::new(77);
        let _ = cpu.uniform(&[5], 0.0, 1.0, Device::Cpu).unwrap(); // a non-zero counter offset
        let _ = dev.uniform(&[5], 0.0, 1.0, gpu).unwrap();
        assert_eq!(
            dev.uniform(&[n], -1.0, 2.0, gpu).unwrap().to_vec().unwrap(),
            cpu.uniform(&[n], -1.0, 2.0, Device::Cpu)
                .unwrap()
                .to_vec()
                .unwrap(),
            "uniforms n={n} must be bit-identical"
        );
        same(
            &dev.normal(&[n], 0.5, 2.0, gpu).unwrap(),
            &cpu.normal(&[n], 0.5, 2.0, Device::Cpu).unwrap(),
            1e-6,
            1e-6,
            &format!("normals n={n}"),
        );
    }
    for decoupled in [false, true] {
        let mut finals = Vec::new();
        for dev in [Device::Cpu, gpu] {
            let p = Param::new("w", Rng::new(3).normal(&[333], 0.0, 1.0, dev).unwrap());
            let mut opt = Adam::new(
                vec![p.clone()],
                AdamConfig {
                    lr: 0.01,
                    weight_decay: 0.05,
                    decoupled,
                    ..Default::default()
                },
            );
            for s in 0..3 {
                p.set_grad(Some(
                    Rng::new(40 + s).normal(&[333], 0.0, 1.0, dev).unwrap(),
                ));
                opt.step().unwrap();
            }
            finals.push(f64s(&p.value()));
        }
        assert_close(
            &finals[1],
            &finals[0],
            1e-6,
            1e-5,
            &format!("adam decoupled={decoupled}"),
        );
    }
    scale_inplace_case(gpu);
}

/// `scale_inplace` (kernels/optim.cu) is not called by jetgen's ops; it is launched directly.
fn scale_inplace_case(gpu: Device) {
    use jetgen::device::cuda::{backend, grid_for, PushKernelArg};
    let Device::Cuda(ordinal) = gpu else {
        unreachable!()
    };
    let be = backend(ordinal).unwrap();
    let n = 1001usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 100.0).collect();
    let mut buf = be.htod(&x).unwrap();
    let f = be.function("optim", "scale_inplace").unwrap();
    let (nn, s) = (n as u32, -1.5f32);
    let mut b = be.stream.launch_builder(&f);
    b.arg(&nn).arg(&s).arg(&mut buf);
    // SAFETY: (n, s, x[n]) is scale_inplace's signature; buf holds n floats.
    be.check_launch("scale_inplace", unsafe { b.launch(grid_for(n)) })
        .unwrap();
    let got = be.dtoh(&buf, n).unwrap();
    let want: Vec<f32> = x.iter().map(|v| v * s).collect();
    assert_eq!(got, want, "scale_inplace");
}

fn rqs_cases(gpu: Device) {
    let mut rng = Rng::new(24);
    // every compile-time bin count (4, 5, 6, 8, 10, 16) and two run-time ones
    for bins in [3usize, 4, 5, 6, 7, 8, 10, 16] {
        let n = 301; // two blocks, the second partial
        let cfg = RqsConfig::new(bins, 2.0);
        let mut xv = normal(&mut rng, &[n], 1.5).to_vec().unwrap();
        // the tail bounds themselves, just outside and just inside
        xv[..6].copy_from_slice(&[-2.0, 2.0, -2.0000002, 2.0000002, -1.9999999, 1.9999999]);
        let x = Tensor::from_slice(&xv, &[n], Device::Cpu).unwrap();
        let uw = normal(&mut rng, &[n, bins], 1.0);
        let uh = normal(&mut rng, &[n, bins], 1.0);
        let ud = normal(&mut rng, &[n, bins - 1], 1.0);
        let dev: Vec<Tensor> = [&x, &uw, &uh, &ud]
            .iter()
            .map(|t| t.to_device(gpu).unwrap())
            .collect();
        for inverse in [false, true] {
            let what = format!("rqs K={bins} inverse={inverse}");
            let (y, ld) = rqs(&x, &uw, &uh, &ud, &cfg, inverse).unwrap();
            let (yd, ldd) = rqs(&dev[0], &dev[1], &dev[2], &dev[3], &cfg, inverse).unwrap();
            same(&yd, &y, 1e-5, 1e-5, &format!("{what} output"));
            same(&ldd, &ld, 1e-4, 1e-4, &format!("{what} logdet"));
            let g = normal(&mut rng, &[2 * n], 1.0);
            let gc = rqs_backward(&x, &uw, &uh, &ud, &cfg, inverse, &g).unwrap();
            let gd = rqs_backward(
                &dev[0],
                &dev[1],
                &dev[2],
                &dev[3],
                &cfg,
                inverse,
                &g.to_device(gpu).unwrap(),
            )
            .unwrap();
            for (k, (a, b)) in gd.iter().zip(&gc).enumerate() {
                same(a, b, 1e-4, 1e-4, &format!("{what} grad {k}"));
            }
        }
        // NaN inputs are an error on both devices (the op defines no value for them)
        let mut bad = xv.clone();
        bad[7] = f32::NAN;
        let bad = Tensor::from_slice(&bad, &[n], Device::Cpu).unwrap();
        assert!(rqs(&bad, &uw, &uh, &ud, &cfg, false).is_err());
        assert!(rqs(
            &bad.to_device(gpu).unwrap(),
            &dev[1],
            &dev[2],
            &dev[3],
            &cfg,
            false
        )
        .is_err());
    }
}

/// The fused message-passing kernels (`kernels/message.cu`) against the CPU twin: edge input
/// (value and slope), its gradient, the masked aggregate and its gradient, on odd sizes
/// spanning several blocks, N ≠ M, masks with padded senders, an empty cloud, an empty batch.
fn message_cases(gpu: Device) {
    use jetgen::ops::message::{
        aggregate, aggregate_backward, edge_input, edge_input_backward, EdgeMode,
    };
    for (b, n, m, h) in [
        (0usize, 3usize, 3usize, 4usize),
        (1, 1, 1, 1),
        (3, 7, 7, 5),
        (2, 30, 30, 33),
        (2, 1, 31, 19),
        (4, 13, 9, 96),
    ] {
        let mut rng = Rng::new((b * 977 + n * 31 + m * 7 + h) as u64);
        let a = normal(&mut rng, &[b, n, h], 1.0);
        let c = normal(&mut rng, &[b, n, h], 1.0);
        let g = normal(&mut rng, &[b, n, n, h], 1.0);
        let (ad, cd, gd) = (
            a.to_device(gpu).unwrap(),
            c.to_device(gpu).unwrap(),
            g.to_device(gpu).unwrap(),
        );
        let what = format!("message b{b} n{n} m{m} h{h}");
        for alpha in [0.2, 1.0] {
            for mode in [EdgeMode::Value, EdgeMode::Slope] {
                same(
                    &edge_input(&ad, &cd, alpha, mode).unwrap(),
                    &edge_input(&a, &c, alpha, mode).unwrap(),
                    1e-6,
                    1e-6,
                    &format!("{what} edge_input {mode:?} α{alpha}"),
                );
            }
            let (da, dc) = edge_input_backward(&a, &c, alpha, &g).unwrap();
            let (dad, dcd) = edge_input_backward(&ad, &cd, alpha, &gd).unwrap();
            same(&dad, &da, 1e-5, 1e-5, &format!("{what} ∂a α{alpha}"));
            same(&dcd, &dc, 1e-5, 1e-5, &format!("{what} ∂c α{alpha}"));
        }
        // senders: jet 0 empty, then every third padded
        let mv: Vec<f32> = (0..b * m)
            .map(|k| if k < m || k % 3 == 1 { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::from_slice(&mv, &[b, m], Device::Cpu).unwrap();
        let msgs = normal(&mut rng, &[b, n, m, h], 1.0);
        let gout = normal(&mut rng, &[b, n, h], 1.0);
        let (maskd, msgsd, goutd) = (
            mask.to_device(gpu).unwrap(),
            msgs.to_device(gpu).unwrap(),
            gout.to_device(gpu).unwrap(),
        );
        same(
            &aggregate(&msgsd, &maskd).unwrap(),
            &aggregate(&msgs, &mask).unwrap(),
            1e-5,
            1e-5,
            &format!("{what} aggregate"),
        );
        same(
            &aggregate_backward(&goutd, &maskd, m).unwrap(),
            &aggregate_backward(&gout, &mask, m).unwrap(),
            0.0,
            0.0,
            &format!("{what} aggregate ∂m"),
        );
    }
}

/// The fused edge network (`kernels/edge_mlp.cu` around cuBLAS) against the CPU twin: value
/// and every gradient, with and without dropout (the same units dropped on both devices),
/// jets with no real sender, one-particle jets, padded senders holding NaN, odd widths, and
/// a batch that spans two CUDA chunks.
fn edge_mlp_cases(gpu: Device) {
    use jetgen::ops::edge_mlp::cuda::CUDA_CHUNK_ROWS;
    use jetgen::ops::edge_mlp::{edge_mlp_backward, edge_mlp_forward, EdgeDropout};
    for (b, n, widths) in [
        (0usize, 3usize, vec![4usize, 5]),
        (1, 1, vec![3, 2]),
        (5, 7, vec![5, 7, 6]),
        (3, 30, vec![9, 11, 13, 3]),
        // two chunks: 19 full jets reach CUDA_CHUNK_ROWS, the 20th is the second chunk
        (20, 30, vec![3, 4]),
    ] {
        assert!(b * n * n < 2 * CUDA_CHUNK_ROWS + 900);
        let mut rng = Rng::new((b * 131 + n * 17 + widths.len()) as u64);
        let h0 = widths[0];
        let a = normal(&mut rng, &[b, n, h0], 1.0);
        // padded senders: jet 0 has none real (when b > 1), then every fourth particle
        let mv: Vec<f32> = (0..b * n)
            .map(|k| {
                if (b > 1 && k < n) || (n > 1 && k % 4 == 3) {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let mut cv = normal(&mut rng, &[b, n, h0], 1.0).to_vec_f64().unwrap();
        for (k, &m) in mv.iter().enumerate() {
            if m == 0.0 {
                cv[k * h0] = f64::NAN; // a padded sender's value never reaches the output
            }
        }
        let cv: Vec<f32> = cv.iter().map(|&v| v as f32).collect();
        let c = Tensor::from_slice(&cv, &[b, n, h0], Device::Cpu).unwrap();
        let mask = Tensor::from_slice(&mv, &[b, n], Device::Cpu).unwrap();
        let layers: Vec<(Tensor, Tensor)> = widths
            .windows(2)
            .map(|w| {
                (
                    normal(&mut rng, &[w[1], w[0]], 0.6),
                    normal(&mut rng, &[w[1]], 0.3),
                )
            })
            .collect();
        let hl = *widths.last().unwrap();
        let g = normal(&mut rng, &[b, n, hl], 1.0);
        let to = |t: &Tensor| t.to_device(gpu).unwrap();
        let (ad, cd, maskd, gd) = (to(&a), to(&c), to(&mask), to(&g));
        let layers_d: Vec<(Tensor, Tensor)> =
            layers.iter().map(|(w, bb)| (to(w), to(bb))).collect();
        let host: Vec<(&Tensor, &Tensor)> = layers.iter().map(|(w, bb)| (w, bb)).collect();
        let dev: Vec<(&Tensor, &Tensor)> = layers_d.iter().map(|(w, bb)| (w, bb)).collect();
        for drop in [None, Some(EdgeDropout { p: 0.3, seed: 77 })] {
            let what = format!("edge_mlp b{b} n{n} widths {widths:?} dropout {drop:?}");
            same(
                &edge_mlp_forward(&ad, &cd, &dev, &maskd, 0.2, drop).unwrap(),
                &edge_mlp_forward(&a, &c, &host, &mask, 0.2, drop).unwrap(),
                1e-5,
                1e-5,
                &format!("{what} value"),
            );
            let gh = edge_mlp_backward(&a, &c, &host, &mask, 0.2, drop, &g).unwrap();
            let gg = edge_mlp_backward(&ad, &cd, &dev, &maskd, 0.2, drop, &gd).unwrap();
            assert_eq!(gh.len(), gg.len(), "{what}: gradient count");
            for (k, (x, y)) in gg.iter().zip(&gh).enumerate() {
                same(x, y, 1e-4, 1e-4, &format!("{what} gradient {k}"));
            }
        }
    }
}

fn chamfer_cases(gpu: Device) {
    // block sizes: N ≤ 32 → one warp, 33 → 64, 257/300 → 256 in two blocks; M > 256 → several
    // shared-memory tiles; D = 1..8 (each template instance)
    let shapes = [
        (0usize, 5usize, 4usize, 3usize), // an empty batch: nothing to launch
        (3, 1, 1, 1),
        (2, 32, 33, 2),
        (2, 33, 31, 3),
        (3, 257, 300, 4),
        (2, 300, 5, 5),
        (2, 17, 513, 6),
        (1, 40, 40, 7),
        (2, 64, 129, 8),
    ];
    for (b, n, m, d) in shapes {
        let mut rng = Rng::new((b * 1000 + n * 10 + m + d) as u64);
        let x = normal(&mut rng, &[b, n, d], 1.0);
        let y = normal(&mut rng, &[b, m, d], 1.0);
        // pair 0: x empty; pair 1 (if any): y empty; otherwise every third point padded
        let mxv: Vec<f32> = (0..b * n)
            .map(|k| {
                if k < n {
                    0.0
                } else {
                    (k % 3 != 2) as u8 as f32
                }
            })
            .collect();
        let myv: Vec<f32> = (0..b * m)
            .map(|k| {
                if (m..2 * m).contains(&k) && b > 2 {
                    0.0
                } else {
                    (k % 4 != 1) as u8 as f32
                }
            })
            .collect();
        let mx = Tensor::from_slice(&mxv, &[b, n], Device::Cpu).unwrap();
        let my = Tensor::from_slice(&myv, &[b, m], Device::Cpu).unwrap();
        let g = rng.uniform(&[b], 0.5, 1.5, Device::Cpu).unwrap();
        let (xd, yd, gd) = (
            x.to_device(gpu).unwrap(),
            y.to_device(gpu).unwrap(),
            g.to_device(gpu).unwrap(),
        );
        let (mxd, myd) = (mx.to_device(gpu).unwrap(), my.to_device(gpu).unwrap());
        for red in [PointReduction::Sum, PointReduction::Mean] {
            for masked in [false, true] {
                let what = format!("chamfer b{b} n{n} m{m} d{d} {red:?} masked={masked}");
                let (mc, mdv) = if masked {
                    ((Some(&mx), Some(&my)), (Some(&mxd), Some(&myd)))
                } else {
                    ((None, None), (None, None))
                };
                let cpu = chamfer(&x, &y, mc.0, mc.1, red).unwrap();
                let dev = chamfer(&xd, &yd, mdv.0, mdv.1, red).unwrap();
                same(&dev.distance, &cpu.distance, 1e-4, 1e-5, &what);
                same(
                    &dev.counts,
                    &cpu.counts,
                    0.0,
                    0.0,
                    &format!("{what} counts"),
                );
                assert_eq!(
                    dev.nn_xy.to_vec().unwrap(),
                    cpu.nn_xy.to_vec().unwrap(),
                    "{what} nn_xy"
                );
                assert_eq!(
                    dev.nn_yx.to_vec().unwrap(),
                    cpu.nn_yx.to_vec().unwrap(),
                    "{what} nn_yx"
                );
                let (gxc, gyc) = chamfer_backward(&x, &y, &cpu, red, &g).unwrap();
                let (gxd, gyd) = chamfer_backward(&xd, &yd, &dev, red, &gd).unwrap();
                same(&gxd, &gxc, 1e-5, 1e-4, &format!("{what} grad x"));
                same(&gyd, &gyc, 1e-5, 1e-4, &format!("{what} grad y"));
            }
        }
    }
}

fn sinkhorn_cases(gpu: Device) {
    // nq > 128 (the gradient kernel's two blocks), N ≠ M, D = 1 and 5, an empty pair, padding
    for (bs, n, m, d) in [(3usize, 130usize, 7usize, 1usize), (2, 9, 41, 5)] {
        let mut rng = Rng::new((n * 31 + m) as u64);
        let x = rng.uniform(&[bs, n, d], 0.0, 1.0, Device::Cpu).unwrap();
        let y = rng.uniform(&[bs, m, d], 0.0, 1.0, Device::Cpu).unwrap();
        let weights = |rng: &mut Rng, k: usize, empty_pair: usize| {
            let mut w = rng
                .uniform(&[bs * k], 0.5, 1.5, Device::Cpu)
                .unwrap()
                .to_vec()
                .unwrap();
            for (i, v) in w.iter_mut().enumerate() {
                if i / k == empty_pair || (i % 3 == 1 && k > 1) {
                    *v = 0.0;
                }
            }
            for row in w.chunks_mut(k) {
                let s: f32 = row.iter().sum();
                if s > 0.0 {
                    row.iter_mut().for_each(|v| *v /= s);
                }
            }
            Tensor::from_slice(&w, &[bs, k], Device::Cpu).unwrap()
        };
        let a = weights(&mut rng, n, 0); // pair 0: x empty
        let b = weights(&mut rng, m, 1); // pair 1: y empty
        let g = rng.uniform(&[bs], 0.5, 1.5, Device::Cpu).unwrap();
        let dev: Vec<Tensor> = [&x, &y, &a, &b, &g]
            .iter()
            .map(|t| t.to_device(gpu).unwrap())
            .collect();
        for (cost, debias, tolerance) in [
            (Cost::SquaredEuclidean, true, None),
            (Cost::Euclidean, false, Some(1e-4)),
            (Cost::HalfSquaredEuclidean, true, Some(1e-4)),
        ] {
            let cfg = SinkhornConfig {
                cost,
                debias,
                tolerance,
                scaling: tolerance.map(|_| 0.8),
                ..SinkhornConfig::new(0.05, 60)
            };
            let what =
                format!("sinkhorn b{bs} n{n} m{m} d{d} {cost:?} debias={debias} tol={tolerance:?}");
            let cpu = sinkhorn(&x, &y, &a, &b, &cfg).unwrap();
            let gd = sinkhorn(&dev[0], &dev[1], &dev[2], &dev[3], &cfg).unwrap();
            same(&gd.ot, &cpu.ot, 1e-4, 1e-3, &format!("{what} ot"));
            same(
                &gd.transport_cost,
                &cpu.transport_cost,
                1e-4,
                1e-3,
                &format!("{what} cost"),
            );
            same(&gd.f, &cpu.f, 1e-4, 1e-3, &format!("{what} f"));
            same(&gd.g, &cpu.g, 1e-4, 1e-3, &format!("{what} g"));
            if debias {
                same(
                    gd.divergence.as_ref().unwrap(),
                    cpu.divergence.as_ref().unwrap(),
                    1e-4,
                    1e-3,
                    &format!("{what} divergence"),
                );
            }
            for divergence in [false, debias] {
                let gc = sinkhorn_backward(&x, &y, &a, &b, &cpu, &cfg, divergence, &g).unwrap();
                let gg = sinkhorn_backward(
                    &dev[0], &dev[1], &dev[2], &dev[3], &gd, &cfg, divergence, &dev[4],
                )
                .unwrap();
                // pairs 0 and 1 have an empty cloud: value 0, so every gradient is exactly 0
                for (k, t) in gg.iter().enumerate() {
                    let per_pair = t.numel() / bs;
                    let v = t.to_vec().unwrap();
                    assert!(
                        v[..2 * per_pair].iter().all(|&e| e == 0.0),
                        "{what} divergence={divergence} grad {k}: pairs with an empty cloud must have zero gradient"
                    );
                }
                for (k, (c, v)) in gc.iter().zip(&gg).enumerate() {
                    same(
                        v,
                        c,
                        1e-4,
                        1e-3,
                        &format!("{what} divergence={divergence} grad {k}"),
                    );
                }
            }
        }
    }
}

/// The fused EPiC updates (kernels/epic.cu) against their CPU twins: values and every input
/// and weight gradient, with padded particles, a jet without particles, and widths beyond
/// one block of threads.
fn epic_cases(gpu: Device) {
    use jetgen::autograd::CreateGraph;
    use jetgen::ops::epic::{epic_global, epic_particle};
    use jetgen::{Tape, Var};
    let mut rng = Rng::new(40);
    for (b, p, h, g, e, h1) in [(3, 5, 7, 3, 4, 9), (2, 33, 130, 10, 32, 129)] {
        let mask: Vec<f32> = (0..b * p)
            .map(|k| {
                let (jet, part) = (k / p, k % p);
                f32::from(jet != 1 && part % 4 != 3)
            })
            .collect();
        let mask_c = Tensor::from_slice(&mask, &[b, p], Device::Cpu).unwrap();
        let mask_g = mask_c.to_device(gpu).unwrap();
        let mut hv = normal(&mut rng, &[b, p, h], 1.0).to_vec().unwrap();
        for (k, v) in hv.iter_mut().enumerate() {
            *v *= mask[k / h];
        }
        let hx = Tensor::from_slice(&hv, &[b, p, h], Device::Cpu).unwrap();
        for particle in [false, true] {
            let inputs = if particle {
                vec![
                    hx.clone(),
                    normal(&mut rng, &[b, g], 1.0),
                    normal(&mut rng, &[b, e], 1.0),
                    normal(&mut rng, &[h1, h + g + e], 0.3),
                    normal(&mut rng, &[h1], 0.3),
                    normal(&mut rng, &[h, h1], 0.3),
                    normal(&mut rng, &[h], 0.3),
                ]
            } else {
                vec![
                    hx.clone(),
                    normal(&mut rng, &[b, g], 1.0),
                    normal(&mut rng, &[b, e], 1.0),
                    normal(&mut rng, &[h1, 2 * h + g + e], 0.3),
                    normal(&mut rng, &[h1], 0.3),
                    normal(&mut rng, &[g, h1], 0.3),
                    normal(&mut rng, &[g], 0.3),
                ]
            };
            let out_shape = if particle { vec![b, p, h] } else { vec![b, g] };
            let cot = normal(&mut rng, &out_shape, 1.0);
            let run = |device: Device, mask: &Tensor| -> (Tensor, Vec<Tensor>) {
                let tape = Tape::new();
                let vars: Vec<Var> = inputs
                    .iter()
                    .map(|x| tape.var(x.to_device(device).unwrap()))
                    .collect();
                let w = [&vars[3], &vars[4], &vars[5], &vars[6]];
                let y = if particle {
                    epic_particle(&vars[0], &vars[1], &vars[2], w, mask, 0.01).unwrap()
                } else {
                    epic_global(&vars[0], &vars[1], &vars[2], w, mask, 0.01, 0.01).unwrap()
                };
                let refs: Vec<&Var> = vars.iter().collect();
                let c = tape.constant(cot.to_device(device).unwrap());
                let grads = tape.vjp(&y, &c, &refs, CreateGraph::No).unwrap();
                (
                    y.value().clone(),
                    grads.iter().map(|v| v.value().clone()).collect(),
                )
            };
            let (yc, gc) = run(Device::Cpu, &mask_c);
            let (yg, gg) = run(gpu, &mask_g);
            let what = format!(
                "epic {} b{b} p{p} h{h}",
                if particle { "particle" } else { "global" }
            );
            same(&yg, &yc, 1e-4, 1e-4, &what);
            for (k, (g_dev, g_cpu)) in gg.iter().zip(&gc).enumerate() {
                same(g_dev, g_cpu, 1e-3, 1e-3, &format!("{what} grad {k}"));
            }
        }
    }
}

/// The executor's launch table ("name\tlaunches\tblock sizes" lines, then "compiled\tname\t
/// module" lines), or None when the driver is not the CUDA-on-CPU stand-in.
fn emulator_launch_table() -> Option<String> {
    type Report = unsafe extern "C" fn() -> *const std::ffi::c_char;
    // SAFETY: the driver library is loaded (a backend exists); the symbol, when present, is
    // the stand-in's `const char* jg_emu_launch_report(void)`.
    unsafe {
        let lib = cudarc::driver::sys::culib();
        let f = lib.get::<Report>(b"jg_emu_launch_report\0").ok()?;
        Some(std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned())
    }
}

/// Every `extern "C" __global__` entry of the embedded kernel sources, with its family.
fn source_kernels() -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    for m in jetgen::device::cuda::KERNEL_MODULES {
        let code: String = m
            .source
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in code.match_indices("__global__") {
            let rest = code[i + "__global__".len()..].trim_start();
            let rest = rest.strip_prefix("void").unwrap_or(rest).trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name, m.name);
        }
    }
    out
}

fn check_launch_table() {
    let Some(table) = emulator_launch_table() else {
        eprintln!("every_kernel_is_launched: launch-table check skipped: the CUDA driver is not the cuda-emu stand-in");
        return;
    };
    let mut launched: BTreeMap<String, (u64, BTreeSet<u32>)> = BTreeMap::new();
    let mut compiled = BTreeSet::new();
    for line in table.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["compiled", name, _module] => {
                compiled.insert(name.to_string());
            }
            [name, count, sizes] => {
                let sizes = sizes
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect();
                launched.insert(name.to_string(), (count.parse().unwrap(), sizes));
            }
            _ => panic!("unexpected launch-table line {line:?}"),
        }
    }
    let sources = source_kernels();
    let in_sources: BTreeSet<String> = sources.keys().cloned().collect();
    assert_eq!(
        compiled, in_sources,
        "the executor compiled a different set of kernels than kernels/*.cu holds"
    );
    let never: Vec<String> = sources
        .iter()
        .filter(|(k, _)| !launched.contains_key(*k))
        .map(|(k, m)| format!("{m}::{k}"))
        .collect();
    assert!(never.is_empty(), "kernels no test launched: {never:?}");
    // the block sizes the dispatch code chooses
    let want: [(&str, &[u32]); 4] = [
        ("chamfer_nn", &[32, 64, 256]),
        ("chamfer_grad", &[32, 64, 256]),
        ("sinkhorn_grad", &[128]),
        ("reduce_sum", &[256]),
    ];
    for (k, sizes) in want {
        for s in sizes {
            assert!(
                launched[k].1.contains(s),
                "{k} never launched with {s} threads per block: {:?}",
                launched[k].1
            );
        }
    }
    eprintln!("launch table:\n{table}");
}

#[test]
#[ignore = "needs a CUDA GPU or the cuda-emu stand-in: run with --include-ignored"]
fn every_kernel_is_launched_and_matches_cpu() {
    let Some(gpu) = cuda_or_skip("every_kernel_is_launched_and_matches_cpu") else {
        return;
    };
    jetgen::device::cuda::set_poison_allocations(true);
    elementwise_cases(gpu);
    reduce_cases(gpu);
    index_and_movement_cases(gpu);
    random_and_optim_cases(gpu);
    rqs_cases(gpu);
    chamfer_cases(gpu);
    message_cases(gpu);
    edge_mlp_cases(gpu);
    sinkhorn_cases(gpu);
    epic_cases(gpu);
    jetgen::device::cuda::set_poison_allocations(false);
    check_launch_table();
}
