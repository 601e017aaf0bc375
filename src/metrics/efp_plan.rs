//! Many EFPs of one jet at once: the variable elimination of [`crate::metrics::efpset::efp`]
//! run once *symbolically* over a whole set of graphs, giving one program of vector and
//! matrix operations in which every intermediate factor that two graphs (or two steps)
//! share is computed once.
//!
//! Why: eliminating a vertex produces the same factor wherever the same sub-graph hangs off
//! a vertex. S₁ = Θᵀz (a pendant edge) is in almost every graph of the d ≤ 4 set, and the
//! O(M³) product P = Θ diag(z) Θ (a path of two edges through an eliminated vertex) in the
//! cycles without a doubled or pendant edge at the eliminated vertex (three M³ steps serve
//! the d ≤ 4 set's four cycles). Evaluated graph by graph, [`efp`](crate::metrics::efpset::efp)
//! computes each of these again for every graph and allocates every factor; the program
//! computes each once per jet, into buffers reused for every jet.
//!
//! Nodes are hash-consed (`Node → id`): a node is created once, however often the
//! elimination asks for it. Elementwise products list their operands in id order and the
//! transpose of a symmetric matrix is the matrix itself, so more factors coincide. The
//! values equal [`efp`](crate::metrics::efpset::efp)'s up to the order of floating-point
//! operations (tested at 1e-12 relative).
//!
//! Work per jet with M particles, for the 36 graphs with d ≤ 4: one M³ contraction per
//! distinct two-neighbour elimination (three), a few dozen M² elementwise
//! products and matrix–vector sums, M-long vector work. Bytes: the M × M factors live in a
//! per-worker arena (36 nodes of at most 30² f64 ≈ 0.3 MB at M = 30).

use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::metrics::efpset::{take_min_degree, Graph, JetAngles};

/// One operation of the program. Operands are node ids; a node's value is a scalar, an
/// M-vector or an M × M matrix (row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Node {
    /// The weights z (vector).
    Z,
    /// θ^{∘k} (symmetric matrix).
    Theta(usize),
    /// a ∘ b of two vectors (a ≤ b).
    VecMul(usize, usize),
    /// a ∘ b of two matrices (a ≤ b).
    MatMul(usize, usize),
    /// Aᵀ.
    Transpose(usize),
    /// out_i = Σ_j G_ji w_j (vector): a vertex with one neighbour summed out.
    Contract1(usize, usize),
    /// out_ix = Σ_j G_ji w_j H_jx (matrix): a vertex with two neighbours summed out.
    Contract2(usize, usize, usize),
    /// Σ_j w_j (scalar): a vertex with no neighbours left.
    Sum(usize),
}

/// What a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scalar,
    Vector,
    Matrix { symmetric: bool },
}

/// A factor of the symbolic elimination: unary on a vertex, or pairwise with rows indexed
/// by the first vertex.
#[derive(Clone, Copy, Debug)]
enum Factor {
    Unary(usize, usize),
    Pair(usize, usize, usize),
}

/// The compiled program of a set of graphs (see the module docs).
#[derive(Clone, Debug)]
pub struct EfpProgram {
    nodes: Vec<Node>,
    kinds: Vec<Kind>,
    /// Per graph: the scalar nodes whose product is its EFP (empty for the empty graph: 1).
    outputs: Vec<Vec<usize>>,
    /// Highest θ power any node uses.
    k_max: usize,
}

/// The builder's state: the nodes so far and their ids.
struct Builder {
    nodes: Vec<Node>,
    kinds: Vec<Kind>,
    ids: HashMap<Node, usize>,
}

impl Builder {
    /// The id of `node`, created on first use.
    fn node(&mut self, node: Node) -> usize {
        let node = match node {
            Node::VecMul(a, b) => Node::VecMul(a.min(b), a.max(b)),
            Node::MatMul(a, b) => Node::MatMul(a.min(b), a.max(b)),
            Node::Transpose(a) => match (self.nodes[a], self.kinds[a]) {
                (_, Kind::Matrix { symmetric: true }) => return a,
                (Node::Transpose(inner), _) => return inner,
                _ => node,
            },
            n => n,
        };
        if let Some(&id) = self.ids.get(&node) {
            return id;
        }
        let sym = |b: &Builder, a: usize| b.kinds[a] == Kind::Matrix { symmetric: true };
        let kind = match node {
            Node::Z | Node::VecMul(..) | Node::Contract1(..) => Kind::Vector,
            Node::Sum(_) => Kind::Scalar,
            Node::Theta(_) => Kind::Matrix { symmetric: true },
            Node::MatMul(a, b) => Kind::Matrix {
                symmetric: sym(self, a) && sym(self, b),
            },
            Node::Transpose(_) => Kind::Matrix { symmetric: false },
            // Gᵀ diag(w) G is symmetric whatever G is
            Node::Contract2(g, _, h) => Kind::Matrix { symmetric: g == h },
        };
        let id = self.nodes.len();
        self.nodes.push(node);
        self.kinds.push(kind);
        self.ids.insert(node, id);
        id
    }

    /// The scalar nodes of one graph's elimination (minimum-degree order, as `efp`).
    fn graph(&mut self, g: &Graph) -> Result<Vec<usize>> {
        let z = self.node(Node::Z);
        let mut factors: Vec<Factor> = (0..g.n_vertices).map(|v| Factor::Unary(v, z)).collect();
        for bundle in g.edges.chunk_by(|a, b| a == b) {
            let theta = self.node(Node::Theta(bundle.len()));
            factors.push(Factor::Pair(bundle[0].0, bundle[0].1, theta));
        }
        let neighbours = |v: usize, fs: &[Factor]| -> BTreeSet<usize> {
            fs.iter()
                .filter_map(|f| match *f {
                    Factor::Pair(a, b, _) if a == v => Some(b),
                    Factor::Pair(a, b, _) if b == v => Some(a),
                    _ => None,
                })
                .collect()
        };
        let mut alive: Vec<usize> = (0..g.n_vertices).collect();
        let mut scalars = Vec::new();
        while !alive.is_empty() {
            let v = take_min_degree(&mut alive, |v| neighbours(v, &factors).len());
            let mut w: Option<usize> = None;
            let mut pairs: Vec<(usize, usize)> = Vec::new();
            for f in std::mem::take(&mut factors) {
                match f {
                    Factor::Unary(u, n) if u == v => {
                        w = Some(match w {
                            None => n,
                            Some(acc) => self.node(Node::VecMul(acc, n)),
                        })
                    }
                    Factor::Pair(a, b, n) if a == v || b == v => {
                        // oriented [v][other]
                        let (other, m) = if a == v {
                            (b, n)
                        } else {
                            (a, self.node(Node::Transpose(n)))
                        };
                        match pairs.iter_mut().find(|(o, _)| *o == other) {
                            Some((_, acc)) => *acc = self.node(Node::MatMul(*acc, m)),
                            None => pairs.push((other, m)),
                        }
                    }
                    f => factors.push(f),
                }
            }
            let w = w.expect("every vertex carries z");
            match pairs.as_slice() {
                [] => scalars.push(self.node(Node::Sum(w))),
                &[(u, gm)] => {
                    let out = self.node(Node::Contract1(gm, w));
                    factors.push(Factor::Unary(u, out));
                }
                &[(u, gm), (x, hm)] => {
                    let out = self.node(Node::Contract2(gm, w, hm));
                    factors.push(Factor::Pair(u, x, out));
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "efp: graph {:?} has tree-width > 2 (not supported)",
                        g.edges
                    )))
                }
            }
        }
        Ok(scalars)
    }
}

/// Per-worker buffers of [`EfpProgram::eval`] for one program: one region per node of it,
/// sized for the jets' largest M so far.
#[derive(Debug, Default)]
pub struct EfpArena {
    values: Vec<f64>,
    offsets: Vec<usize>,
    m_cap: usize,
}

impl EfpProgram {
    /// The program of `graphs` (errors on a graph of tree-width > 2).
    pub fn new(graphs: &[Graph]) -> Result<Self> {
        let mut b = Builder {
            nodes: Vec::new(),
            kinds: Vec::new(),
            ids: HashMap::new(),
        };
        let outputs = graphs
            .iter()
            .map(|g| b.graph(g))
            .collect::<Result<Vec<_>>>()?;
        let k_max = b
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Theta(k) => Some(*k),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        Ok(EfpProgram {
            nodes: b.nodes,
            kinds: b.kinds,
            outputs,
            k_max,
        })
    }

    /// Highest edge multiplicity of the graphs: the θ powers a [`JetAngles`] must hold.
    pub fn k_max(&self) -> usize {
        self.k_max
    }

    /// Number of M³ contractions per jet.
    pub fn cubic_steps(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, Node::Contract2(..)))
            .count()
    }

    /// The EFPs of one jet, in the order of the graphs, into `out`.
    pub fn eval(&self, jet: &JetAngles, arena: &mut EfpArena, out: &mut [f64]) -> Result<()> {
        let m = jet.m;
        if jet.theta_pow.len() < self.k_max {
            return Err(Error::invalid(format!(
                "efp: the program needs θ powers up to {}, the jet holds {}",
                self.k_max,
                jet.theta_pow.len()
            )));
        }
        if arena.m_cap < m || arena.offsets.len() != self.nodes.len() {
            let mut at = 0;
            arena.offsets = self
                .kinds
                .iter()
                .map(|k| {
                    let start = at;
                    at += match k {
                        Kind::Scalar => 1,
                        Kind::Vector => m,
                        Kind::Matrix { .. } => m * m,
                    };
                    start
                })
                .collect();
            arena.values = vec![0.0; at];
            arena.m_cap = m;
        }
        run_nodes(
            crate::simd::isa(),
            &self.nodes,
            &self.kinds,
            &arena.offsets,
            arena.m_cap,
            &mut arena.values,
            jet,
        );
        for (o, scalars) in out.iter_mut().zip(&self.outputs) {
            *o = scalars
                .iter()
                .map(|&s| arena.values[arena.offsets[s]])
                .product();
        }
        Ok(())
    }
}

crate::simd::dispatch! {
    /// Every node of a program in order, for one jet, into the arena `values` (regions at
    /// `offsets`, sized for `cap` particles), on `isa`'s vector width.
    fn run_nodes(
        isa: Isa,
        nodes: &[Node],
        kinds: &[Kind],
        offsets: &[usize],
        cap: usize,
        values: &mut [f64],
        jet: &JetAngles,
    ) = run_nodes_body;
}

/// [`run_nodes`]' loop: plain loops the compiler vectorises.
#[inline(always)]
fn run_nodes_body(
    nodes: &[Node],
    kinds: &[Kind],
    offsets: &[usize],
    cap: usize,
    values: &mut [f64],
    jet: &JetAngles,
) {
    let m = jet.m;
    for (id, node) in nodes.iter().enumerate() {
        let size = match kinds[id] {
            Kind::Scalar => 1,
            Kind::Vector => cap,
            Kind::Matrix { .. } => cap * cap,
        };
        // operands precede their users: split the arena at this node's region
        let (before, rest) = values.split_at_mut(offsets[id]);
        let dst = &mut rest[..size];
        let src = |a: usize, len: usize| &before[offsets[a]..offsets[a] + len];
        match *node {
            Node::Z => dst[..m].copy_from_slice(&jet.z),
            Node::Theta(k) => dst[..m * m].copy_from_slice(&jet.theta_pow[k - 1]),
            Node::VecMul(a, b) => {
                let (a, b) = (src(a, m), src(b, m));
                for ((o, x), y) in dst[..m].iter_mut().zip(a).zip(b) {
                    *o = x * y;
                }
            }
            Node::MatMul(a, b) => {
                let (a, b) = (src(a, m * m), src(b, m * m));
                for ((o, x), y) in dst[..m * m].iter_mut().zip(a).zip(b) {
                    *o = x * y;
                }
            }
            Node::Transpose(a) => {
                let a = src(a, m * m);
                for i in 0..m {
                    for j in 0..m {
                        dst[j * m + i] = a[i * m + j];
                    }
                }
            }
            Node::Contract1(g, w) => {
                let (g, w) = (src(g, m * m), src(w, m));
                let out = &mut dst[..m];
                out.fill(0.0);
                for (j, &wj) in w.iter().enumerate() {
                    for (o, &x) in out.iter_mut().zip(&g[j * m..(j + 1) * m]) {
                        *o += wj * x;
                    }
                }
            }
            Node::Contract2(g, w, h) => contract2_body(
                src(g, m * m),
                src(w, m),
                src(h, m * m),
                &mut dst[..m * m],
                m,
            ),
            Node::Sum(w) => dst[0] = src(w, m).iter().sum(),
        }
    }
}

/// out_ix = Σ_j G_ji w_j H_jx for M × M `g`, `h` and M-vector `w` (the program's only O(M³)
/// step).
#[inline(always)]
fn contract2_body(g: &[f64], w: &[f64], h: &[f64], out: &mut [f64], m: usize) {
    // rows of `out` accumulate rows of H scaled by G_ji w_j: an axpy over x that the
    // compiler vectorises, zero scales (the diagonal θ_jj = 0) skipped
    out.fill(0.0);
    for j in 0..m {
        let hj = &h[j * m..(j + 1) * m];
        for i in 0..m {
            let gw = g[j * m + i] * w[j];
            if gw == 0.0 {
                continue;
            }
            for (o, &y) in out[i * m..(i + 1) * m].iter_mut().zip(hj) {
                *o += gw * y;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::efpset::{efp, efp_graphs_d4};
    use crate::rng::Rng;

    /// Every graph of the d ≤ 4 set (and d = 5 ones) on random jets of 0..=12 particles:
    /// the program against `efp` graph by graph, and the sharing it promises (one M³ step
    /// serves all four cycles of the d ≤ 4 set).
    #[test]
    fn the_program_equals_efp_graph_by_graph() {
        let graphs = crate::metrics::efpset::efp_graphs(5);
        let program = EfpProgram::new(&graphs).unwrap();
        let d4 = EfpProgram::new(efp_graphs_d4()).unwrap();
        // the triangle and the 4-cycle share P = Θ diag(z) Θ; the triangle with a doubled
        // edge and the one with a pendant edge eliminate first a vertex of their own kind
        assert_eq!(d4.cubic_steps(), 3, "{:?}", d4.nodes);
        let mut rng = Rng::new(4);
        let mut arena = EfpArena::default();
        for m in [0usize, 1, 2, 5, 12, 7] {
            let mut rows = vec![0f32; 12 * 4];
            let vals: Vec<f32> = rng
                .uniform(&[m * 3], 0.0, 1.0, crate::device::Device::Cpu)
                .unwrap()
                .to_vec()
                .unwrap();
            for p in 0..m {
                rows[p * 4] = vals[3 * p] - 0.5;
                rows[p * 4 + 1] = vals[3 * p + 1] * 6.0 - 3.0;
                rows[p * 4 + 2] = vals[3 * p + 2] + 0.01;
                rows[p * 4 + 3] = 1.0;
            }
            let jet = JetAngles::new(&rows, 4, program.k_max());
            let mut got = vec![0.0; graphs.len()];
            program.eval(&jet, &mut arena, &mut got).unwrap();
            for (g, &v) in graphs.iter().zip(&got) {
                let want = efp(g, &jet).unwrap();
                assert!(
                    (v - want).abs() <= 1e-12 * want.abs().max(1e-300),
                    "M {m} graph {:?}: {v} vs {want}",
                    g.edges
                );
            }
        }
    }
}
