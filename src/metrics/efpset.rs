//! General energy flow polynomials: any multigraph of tree-width ≤ 2 (every multigraph with
//! d ≤ 5 edges), evaluated by variable elimination in O(M²) for trees and O(M³) otherwise,
//! and the full set of 36 EFPs with d ≤ 4 that jetnet's FPD and KPD use.
//!
//! EFP_G = Σ_{i_1..i_n} z_{i_1}⋯z_{i_n} Π_{(k,l)∈E(G)} θ_{i_k i_l}, with the hadronic
//! measure, β = 1 and unnormalised pT as in [`crate::metrics::efp`]. A disconnected graph is
//! the product of its components (energyflow's "composite" EFPs).
//!
//! **Variable elimination.** Each vertex v carries the unary factor z; each edge bundle of
//! multiplicity k between u and w the pairwise factor Θ^{∘k} (elementwise power). Summing
//! out a vertex v of the current factor graph with weight w_v = z ∘ Π(unary factors of v):
//! - no neighbours: the scalar Σ_j w_j;
//! - one neighbour u through G (rows v, columns u): a unary factor on u, Σ_j G_ju w_j;
//! - two neighbours u, x through G and H: a pairwise factor on (u, x), Gᵀ diag(w) H.
//!
//! Vertices are eliminated in minimum-degree order, which never needs more than two
//! neighbours when the tree-width is ≤ 2.
//!
//! **The d ≤ 4 set.** All multigraphs without isolated vertices with 1 ≤ d ≤ 4 edges, up to
//! isomorphism (1 + 3 + 8 + 23 = 35), plus the single vertex (d = 0, EFP = Σ z): 36 EFPs,
//! energyflow's `EFPSet(("d<=", 4))` including composites. Ordered by (d, n, canonical
//! edge list), which differs from energyflow's order; FPD and KPD do not depend on it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::efp_plan::{EfpArena, EfpProgram};

/// A multigraph on vertices 0..n, edges as (u, v) with u < v, repeated for multi-edges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Graph {
    /// Number of vertices n.
    pub n_vertices: usize,
    /// Edges (u < v), sorted.
    pub edges: Vec<(usize, usize)>,
}

impl Graph {
    /// The graph with the given edges; vertices are those mentioned (at least one).
    pub fn new(edges: &[(usize, usize)]) -> Self {
        let n = edges.iter().map(|&(u, v)| u.max(v) + 1).max().unwrap_or(1);
        let mut edges: Vec<(usize, usize)> =
            edges.iter().map(|&(u, v)| (u.min(v), u.max(v))).collect();
        edges.sort_unstable();
        Graph {
            n_vertices: n,
            edges,
        }
    }

    /// Number of edges d (the EFP's degree in the angles).
    pub fn degree(&self) -> usize {
        self.edges.len()
    }

    /// The isomorphism-invariant form: the lexicographically smallest sorted edge list over
    /// all relabelings of the vertices (n! relabelings; fine for n ≤ 8).
    pub fn canonical(&self) -> Graph {
        let n = self.n_vertices;
        let mut perm: Vec<usize> = (0..n).collect();
        let mut best: Option<Vec<(usize, usize)>> = None;
        loop {
            let mut e: Vec<(usize, usize)> = self
                .edges
                .iter()
                .map(|&(u, v)| {
                    let (a, b) = (perm[u], perm[v]);
                    (a.min(b), a.max(b))
                })
                .collect();
            e.sort_unstable();
            if best.as_ref().is_none_or(|b| e < *b) {
                best = Some(e);
            }
            if !next_permutation(&mut perm) {
                break;
            }
        }
        Graph {
            n_vertices: n,
            edges: best.unwrap_or_default(),
        }
    }
}

fn next_permutation(p: &mut [usize]) -> bool {
    let Some(i) = (1..p.len()).rev().find(|&i| p[i - 1] < p[i]) else {
        return false;
    };
    let j = (i..p.len()).rev().find(|&j| p[j] > p[i - 1]).unwrap_or(i);
    p.swap(i - 1, j);
    p[i..].reverse();
    true
}

/// All multigraphs without isolated vertices with 1..=d_max edges, up to isomorphism, plus
/// the single vertex; sorted by (d, n, canonical edges). `efp_graphs(4).len() == 36`.
pub fn efp_graphs(d_max: usize) -> Vec<Graph> {
    let mut all: Vec<Graph> = vec![Graph {
        n_vertices: 1,
        edges: Vec::new(),
    }];
    let mut layer: BTreeSet<Graph> = BTreeSet::new();
    layer.insert(Graph {
        n_vertices: 0,
        edges: Vec::new(),
    });
    for _ in 0..d_max {
        let mut next = BTreeSet::new();
        for g in &layer {
            let n = g.n_vertices;
            // a new edge among existing vertices and up to two new ones
            for u in 0..n + 2 {
                for v in u + 1..n + 2 {
                    // both existing, one new (vertex n) or two new (n, n + 1): no gaps
                    let valid = v < n || (v == n && u < n) || (u == n && v == n + 1);
                    if !valid {
                        continue;
                    }
                    let mut e = g.edges.clone();
                    e.push((u, v));
                    next.insert(Graph::new(&e).canonical());
                }
            }
        }
        all.extend(next.iter().cloned());
        layer = next;
    }
    all.sort_by(|a, b| {
        (a.degree(), a.n_vertices, &a.edges).cmp(&(b.degree(), b.n_vertices, &b.edges))
    });
    all
}

/// The 36 graphs of energyflow's `EFPSet(("d<=", 4))`, built once.
pub fn efp_graphs_d4() -> &'static [Graph] {
    static SET: OnceLock<Vec<Graph>> = OnceLock::new();
    SET.get_or_init(|| efp_graphs(4))
}

/// Pairwise angles and weights of one jet, ready for [`efp`].
pub struct JetAngles {
    /// Number of particles M (pT > 0).
    pub m: usize,
    /// Weights z_i = pT_i.
    pub z: Vec<f64>,
    /// θ^{∘k} for k = 1..=k_max, each row-major M×M (index k − 1).
    pub theta_pow: Vec<Vec<f64>>,
}

impl JetAngles {
    /// From JetNet rows [η, φ, pT, ...] of `stride` values; θ_ij = (Δη² + Δφ²)^{1/2} with
    /// Δφ wrapped into [0, π]; powers up to `k_max`.
    pub fn new(rows: &[f32], stride: usize, k_max: usize) -> Self {
        let parts: Vec<[f64; 3]> = rows
            .chunks_exact(stride)
            .filter(|r| r[2] != 0.0)
            .map(|r| [r[0] as f64, r[1] as f64, r[2] as f64])
            .collect();
        let m = parts.len();
        let mut theta = vec![0f64; m * m];
        for a in 0..m {
            for b in 0..m {
                let dy = parts[a][0] - parts[b][0];
                let dphi = std::f64::consts::PI
                    - ((parts[a][1] - parts[b][1]).abs() - std::f64::consts::PI).abs();
                theta[a * m + b] = (dy * dy + dphi * dphi).sqrt();
            }
        }
        let mut theta_pow = vec![theta.clone()];
        for k in 1..k_max.max(1) {
            let next: Vec<f64> = theta_pow[k - 1]
                .iter()
                .zip(&theta)
                .map(|(p, t)| p * t)
                .collect();
            theta_pow.push(next);
        }
        JetAngles {
            m,
            z: parts.iter().map(|p| p[2]).collect(),
            theta_pow,
        }
    }
}

/// A factor of the elimination: unary over one vertex or pairwise (rows = first vertex).
/// The initial factors borrow z and the symmetric Θ^{∘k} (no copies, no transposes).
enum Factor<'a> {
    Unary(usize, Cow<'a, [f64]>),
    Pair(usize, usize, Cow<'a, [f64]>, bool),
}

/// The EFP of graph `g` for one jet, by variable elimination (see the module docs). Errors
/// if an edge multiplicity exceeds the precomputed powers or the graph needs more than
/// tree-width 2.
pub fn efp(g: &Graph, jet: &JetAngles) -> Result<f64> {
    let m = jet.m;
    let mut factors: Vec<Factor> = (0..g.n_vertices)
        .map(|v| Factor::Unary(v, Cow::Borrowed(&jet.z[..])))
        .collect();
    let mut e = 0;
    while e < g.edges.len() {
        let k = g.edges[e..]
            .iter()
            .take_while(|&&x| x == g.edges[e])
            .count();
        let pow = jet.theta_pow.get(k - 1).ok_or_else(|| {
            Error::invalid(format!(
                "efp: edge multiplicity {k} needs θ powers up to {k}"
            ))
        })?;
        factors.push(Factor::Pair(
            g.edges[e].0,
            g.edges[e].1,
            Cow::Borrowed(&pow[..]),
            true,
        ));
        e += k;
    }
    let mut alive: Vec<usize> = (0..g.n_vertices).collect();
    let mut result = 1.0;
    while !alive.is_empty() {
        // minimum-degree vertex
        let neighbours = |v: usize, fs: &[Factor]| -> BTreeSet<usize> {
            fs.iter()
                .filter_map(|f| match *f {
                    Factor::Pair(a, b, _, _) if a == v => Some(b),
                    Factor::Pair(a, b, _, _) if b == v => Some(a),
                    _ => None,
                })
                .collect()
        };
        let v = take_min_degree(&mut alive, |v| neighbours(v, &factors).len());
        let mut w = vec![1.0; m];
        // pairwise factors oriented [v][other], merged per neighbour
        let mut pairs: Vec<(usize, Cow<[f64]>)> = Vec::new();
        for f in std::mem::take(&mut factors) {
            match f {
                Factor::Unary(u, vals) if u == v => {
                    w.iter_mut().zip(vals.iter()).for_each(|(a, b)| *a *= b)
                }
                Factor::Pair(a, b, mat, symmetric) if a == v || b == v => {
                    let (other, mat) = if a == v || symmetric {
                        (if a == v { b } else { a }, mat)
                    } else {
                        (a, Cow::Owned(transpose(&mat, m)))
                    };
                    match pairs.iter_mut().find(|(o, _)| *o == other) {
                        Some((_, acc)) => acc
                            .to_mut()
                            .iter_mut()
                            .zip(mat.iter())
                            .for_each(|(x, y)| *x *= y),
                        None => pairs.push((other, mat)),
                    }
                }
                f => factors.push(f),
            }
        }
        match pairs.as_slice() {
            [] => result *= w.iter().sum::<f64>(),
            [(u, gm)] => {
                let mut out = vec![0.0; m];
                for j in 0..m {
                    let wj = w[j];
                    for (o, &x) in out.iter_mut().zip(&gm[j * m..(j + 1) * m]) {
                        *o += wj * x;
                    }
                }
                factors.push(Factor::Unary(*u, Cow::Owned(out)));
            }
            [(u, gm), (x, hm)] => {
                let mut out = vec![0.0; m * m];
                for j in 0..m {
                    for i in 0..m {
                        let gw = gm[j * m + i] * w[j];
                        if gw == 0.0 {
                            continue;
                        }
                        let row = &mut out[i * m..(i + 1) * m];
                        for (o, &h) in row.iter_mut().zip(&hm[j * m..(j + 1) * m]) {
                            *o += gw * h;
                        }
                    }
                }
                factors.push(Factor::Pair(*u, *x, Cow::Owned(out), false));
            }
            _ => {
                return Err(Error::invalid(format!(
                    "efp: graph {:?} has tree-width > 2 (not supported)",
                    g.edges
                )))
            }
        }
    }
    Ok(result)
}

/// Removes from `alive` and returns the vertex of least `degree` (the first of equals, then
/// `alive` reordered by `swap_remove`): the elimination order of [`efp`] and of the compiled
/// [`EfpProgram`], one rule for both.
pub(crate) fn take_min_degree(alive: &mut Vec<usize>, degree: impl Fn(usize) -> usize) -> usize {
    let (pos, v) = alive
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(_, v)| degree(v))
        .unwrap_or((0, 0));
    alive.swap_remove(pos);
    v
}

fn transpose(a: &[f64], m: usize) -> Vec<f64> {
    let mut t = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            t[j * m + i] = a[i * m + j];
        }
    }
    t
}

/// The EFPs of `graphs` for every jet of `data`, row-major `[n_jets, graphs.len()]`, in
/// parallel over jets: the graphs compiled into one [`EfpProgram`] (every factor two graphs
/// share computed once per jet; a composite graph is the product of its components'
/// eliminations), one arena per worker.
pub fn jet_efp_features(data: &JetNetData, graphs: &[Graph]) -> Result<Vec<f64>> {
    let program = EfpProgram::new(graphs)?;
    let k_max = program.k_max();
    let width = graphs.len();
    let rows: Vec<Result<Vec<f64>>> = data
        .particles
        .par_chunks_exact(data.n_particles * 4)
        .map_init(EfpArena::default, |arena, jet| {
            let angles = JetAngles::new(jet, 4, k_max);
            let mut values = vec![0.0; width];
            program.eval(&angles, arena, &mut values)?;
            Ok(values)
        })
        .collect();
    let mut out = Vec::with_capacity(data.n_jets * graphs.len());
    for r in rows {
        out.extend(r?);
    }
    Ok(out)
}
