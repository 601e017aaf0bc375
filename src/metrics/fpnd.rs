//! Fréchet ParticleNet Distance (Kansal et al. 2021) as jetnet 0.2.5's `fpnd` defines it, with
//! jetnet's trained ParticleNet and real-jet statistics (MIT, converted by
//! `assets/fpnd/convert.py`, compiled into the library) — no Python needed.
//!
//! Input: JetNet-30 jets, features normalised as jetnet's `fpnd_norm`:
//! η/1.6212, φ/0.5207, pT/0.8935 − 0.5 (padded particles are fed too, as (0, 0, −0.5)).
//! ParticleNet: three EdgeConv blocks (k = 16 nearest neighbours within the jet, self
//! excluded; on (η, φ) in the first block, on all current features after), each an edge MLP
//! 3 × (Linear → BatchNorm (eval) → ReLU) on [x_i, x_j − x_i], averaged over the neighbours
//! and concatenated before the block's input (widths 3 → 67 → 195 → 451); mean over the 30
//! particles; fc1 451 → 256. FPND = Fréchet distance between the Gaussian fits of these
//! 256-d activations of (at most 50,000) jets and jetnet's stored statistics of real jets of
//! the same class.
//!
//! Implementation: BatchNorm folded into the Linear layers; the first edge layer uses
//! W[x_i, x_j − x_i] = (W_a − W_b)x_i + W_b x_j, computed per node, not per edge; jets in
//! parallel chunks. Deviation: kNN ties (only among identical particles, i.e. padding) go to
//! the lower index, where torch_cluster's order is unspecified.

use std::sync::OnceLock;

use rayon::prelude::*;
use safetensors::SafeTensors;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::fpd_kpd::{frechet_distance, mean_cov};

static WEIGHTS: &[u8] = include_bytes!("../../assets/fpnd/particlenet_jetnet30.safetensors");

/// jetnet's FPND sample size.
pub const FPND_MAX_JETS: usize = 50_000;
const K: usize = 16;
const P: usize = 30;
const MAXES: [f32; 3] = [1.621_198_5, 0.520_724_9, 0.893_471_7];

/// A Linear layer with BatchNorm folded in: y = W x + b, W row-major `[out, in]`.
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

/// One EdgeConv block: the first layer split into node terms, then two dense layers.
struct EdgeBlock {
    width: usize,
    /// First layer split per node: (W_a − W_b) with the bias, and W_b with a zero bias.
    node_self: Dense,
    node_nbr: Dense,
    layers: [Dense; 2],
}

/// jetnet's trained ParticleNet (JetNet-30) with the real-jet activation statistics.
pub struct ParticleNet {
    blocks: Vec<EdgeBlock>,
    fc1: Dense,
    stats: Vec<(char, Vec<f64>, Vec<f64>)>,
}

/// The little-endian bytes of one stored tensor.
fn tensor_bytes<'a>(st: &SafeTensors<'a>, name: &str) -> Result<&'a [u8]> {
    st.tensor(name)
        .map(|t| t.data())
        .map_err(|e| Error::invalid(format!("ParticleNet weights: {name}: {e}")))
}

fn tensor_f32(st: &SafeTensors, name: &str) -> Result<Vec<f32>> {
    Ok(tensor_bytes(st, name)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn tensor_f64(st: &SafeTensors, name: &str) -> Result<Vec<f64>> {
    Ok(tensor_bytes(st, name)?
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .collect())
}

/// Linear `prefix.{li}` followed by BatchNorm `prefix.{bi}` (eval, ε = 1e-5), folded.
fn folded(st: &SafeTensors, prefix: &str, li: usize, bi: usize, n_in: usize) -> Result<Dense> {
    let w = tensor_f32(st, &format!("{prefix}.{li}.weight"))?;
    let b = tensor_f32(st, &format!("{prefix}.{li}.bias"))?;
    let gamma = tensor_f32(st, &format!("{prefix}.{bi}.weight"))?;
    let beta = tensor_f32(st, &format!("{prefix}.{bi}.bias"))?;
    let rm = tensor_f32(st, &format!("{prefix}.{bi}.running_mean"))?;
    let rv = tensor_f32(st, &format!("{prefix}.{bi}.running_var"))?;
    let n_out = b.len();
    if w.len() != n_out * n_in {
        return Err(Error::invalid(format!(
            "ParticleNet weights: {prefix}.{li} has the wrong shape"
        )));
    }
    let mut wf = w;
    let mut bf = vec![0f32; n_out];
    for o in 0..n_out {
        let s = gamma[o] / (rv[o] + 1e-5).sqrt();
        wf[o * n_in..(o + 1) * n_in]
            .iter_mut()
            .for_each(|v| *v *= s);
        bf[o] = (b[o] - rm[o]) * s + beta[o];
    }
    Ok(Dense {
        w: wf,
        b: bf,
        n_in,
        n_out,
    })
}

/// C[rows, W.n_out] = A[rows, W.n_in] · Wᵀ + b, then ReLU if asked.
fn dense(a: &[f32], rows: usize, d: &Dense, relu: bool) -> Vec<f32> {
    let mut c = vec![0f32; rows * d.n_out];
    if rows > 0 {
        // SAFETY: a holds rows·n_in, W n_out·n_in (read transposed: strides 1, n_in), c
        // rows·n_out.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                d.n_in,
                d.n_out,
                1.0,
                a.as_ptr(),
                d.n_in as isize,
                1,
                d.w.as_ptr(),
                1,
                d.n_in as isize,
                0.0,
                c.as_mut_ptr(),
                d.n_out as isize,
                1,
            );
        }
    }
    for row in c.chunks_exact_mut(d.n_out) {
        for (v, b) in row.iter_mut().zip(&d.b) {
            *v += b;
            if relu && *v < 0.0 {
                *v = 0.0;
            }
        }
    }
    c
}

impl ParticleNet {
    /// The built-in JetNet-30 model (parsed once).
    pub fn jetnet30() -> Result<&'static ParticleNet> {
        static NET: OnceLock<std::result::Result<ParticleNet, String>> = OnceLock::new();
        NET.get_or_init(|| Self::parse(WEIGHTS).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::invalid(e.clone()))
    }

    fn parse(bytes: &[u8]) -> Result<ParticleNet> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::invalid(format!("ParticleNet weights: {e}")))?;
        let mut blocks = Vec::new();
        let mut n_in = 3;
        for (i, width) in [64usize, 128, 256].into_iter().enumerate() {
            let p = format!("edge_nets.{i}.model");
            let first = folded(&st, &p, 0, 1, 2 * n_in)?;
            let (mut w_self, mut w_nbr) = (vec![0f32; width * n_in], vec![0f32; width * n_in]);
            for o in 0..width {
                for f in 0..n_in {
                    let (wa, wb) = (first.w[o * 2 * n_in + f], first.w[o * 2 * n_in + n_in + f]);
                    w_self[o * n_in + f] = wa - wb;
                    w_nbr[o * n_in + f] = wb;
                }
            }
            let layers = [folded(&st, &p, 3, 4, width)?, folded(&st, &p, 6, 7, width)?];
            let node_self = Dense {
                w: w_self,
                b: first.b,
                n_in,
                n_out: width,
            };
            let node_nbr = Dense {
                w: w_nbr,
                b: vec![0.0; width],
                n_in,
                n_out: width,
            };
            blocks.push(EdgeBlock {
                width,
                node_self,
                node_nbr,
                layers,
            });
            n_in += width;
        }
        let fc1 = Dense {
            w: tensor_f32(&st, "fc1.0.weight")?,
            b: tensor_f32(&st, "fc1.0.bias")?,
            n_in,
            n_out: 256,
        };
        let stats = "gqt"
            .chars()
            .map(|c| {
                Ok((
                    c,
                    tensor_f64(&st, &format!("mu_{c}"))?,
                    tensor_f64(&st, &format!("sigma_{c}"))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(ParticleNet { blocks, fc1, stats })
    }

    /// The 256-d activations (fc1 output, before ReLU) of every jet, `[n_jets, 256]`.
    /// Errors unless the jets have 30 particles.
    pub fn activations(&self, data: &JetNetData) -> Result<Vec<f32>> {
        if data.n_particles != P {
            return Err(Error::invalid(format!(
                "FPND needs JetNet-30 jets (30 particles), got {}",
                data.n_particles
            )));
        }
        const CHUNK: usize = 32;
        let chunks: Vec<Vec<f32>> = data
            .particles
            .par_chunks(CHUNK * P * 4)
            .map(|jets| self.forward_chunk(jets))
            .collect();
        Ok(chunks.concat())
    }

    fn forward_chunk(&self, jets: &[f32]) -> Vec<f32> {
        let n_jets = jets.len() / (P * 4);
        let nodes = n_jets * P;
        // jetnet's fpnd_norm
        let mut x: Vec<f32> = jets
            .chunks_exact(4)
            .flat_map(|r| [r[0] / MAXES[0], r[1] / MAXES[1], r[2] / MAXES[2] - 0.5])
            .collect();
        let mut width = 3;
        for (bi, block) in self.blocks.iter().enumerate() {
            let knn_dims = if bi == 0 { 2 } else { width };
            let nbrs = knn(&x, width, knn_dims, n_jets);
            let node_self = dense(&x, nodes, &block.node_self, false);
            let node_nbr = dense(&x, nodes, &block.node_nbr, false);
            let h = block.width;
            let mut edges = vec![0f32; nodes * K * h];
            for i in 0..nodes {
                for (k, &j) in nbrs[i * K..(i + 1) * K].iter().enumerate() {
                    let e = &mut edges[(i * K + k) * h..(i * K + k + 1) * h];
                    for ((v, a), b) in e
                        .iter_mut()
                        .zip(&node_self[i * h..(i + 1) * h])
                        .zip(&node_nbr[j * h..(j + 1) * h])
                    {
                        *v = (a + b).max(0.0);
                    }
                }
            }
            let e2 = dense(&edges, nodes * K, &block.layers[0], true);
            let e3 = dense(&e2, nodes * K, &block.layers[1], true);
            let mut next = Vec::with_capacity(nodes * (h + width));
            for i in 0..nodes {
                let mut mean = vec![0f32; h];
                for k in 0..K {
                    mean.iter_mut()
                        .zip(&e3[(i * K + k) * h..(i * K + k + 1) * h])
                        .for_each(|(m, v)| *m += v);
                }
                next.extend(mean.iter().map(|m| m / K as f32));
                next.extend_from_slice(&x[i * width..(i + 1) * width]);
            }
            x = next;
            width += h;
        }
        // mean over the particles, then fc1
        let mut pooled = vec![0f32; n_jets * width];
        for (jet, out) in x
            .chunks_exact(P * width)
            .zip(pooled.chunks_exact_mut(width))
        {
            for node in jet.chunks_exact(width) {
                out.iter_mut().zip(node).for_each(|(o, v)| *o += v);
            }
            out.iter_mut().for_each(|o| *o /= P as f32);
        }
        dense(&pooled, n_jets, &self.fc1, false)
    }

    /// Stored real-jet statistics (μ, Σ) of class `g`, `q` or `t`.
    pub fn real_stats(&self, jet_type: char) -> Result<(&[f64], &[f64])> {
        self.stats
            .iter()
            .find(|s| s.0 == jet_type)
            .map(|s| (&s.1[..], &s.2[..]))
            .ok_or_else(|| {
                Error::invalid(format!("FPND jet type must be g, q or t, got '{jet_type}'"))
            })
    }
}

/// The K nearest neighbours (Euclidean on the first `dims` of `width` features, self
/// excluded, ties to the lower index) of every node, within its jet; global node indices.
fn knn(x: &[f32], width: usize, dims: usize, n_jets: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(n_jets * P * K);
    let mut d = [(0f32, 0usize); P];
    for jet in 0..n_jets {
        let base = jet * P;
        for i in 0..P {
            let xi = &x[(base + i) * width..(base + i) * width + dims];
            for (j, slot) in d.iter_mut().enumerate() {
                let xj = &x[(base + j) * width..(base + j) * width + dims];
                let dist: f32 = xi.iter().zip(xj).map(|(a, b)| (a - b) * (a - b)).sum();
                *slot = (if j == i { f32::INFINITY } else { dist }, j);
            }
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out.extend(d[..K].iter().map(|&(_, j)| base + j));
        }
    }
    out
}

/// FPND of `data` (its first ≤ 50,000 jets) against jetnet's real jets of class `jet_type`
/// (`g`, `q` or `t`): the Fréchet distance of the ParticleNet activations' Gaussian fits.
pub fn fpnd(data: &JetNetData, jet_type: char) -> Result<f64> {
    let net = ParticleNet::jetnet30()?;
    let (mu_real, sigma_real) = net.real_stats(jet_type)?;
    let n = data.n_jets.min(FPND_MAX_JETS);
    let mut head = data.clone();
    head.n_jets = n;
    head.particles.truncate(n * P * 4);
    head.jets.truncate(n * 4);
    if n < 2 {
        return Err(Error::invalid("FPND needs at least 2 jets"));
    }
    let act: Vec<f64> = net.activations(&head)?.into_iter().map(f64::from).collect();
    let (mu, sigma) = mean_cov(&act, n, 256);
    let sigma_r = nalgebra::DMatrix::from_row_slice(256, 256, sigma_real);
    Ok(frechet_distance(mu_real, &sigma_r, &mu, &sigma))
}
