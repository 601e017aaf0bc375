//! Exact optimal transport (earth mover's distance) by the transportation simplex method, and
//! the jet EMD of energyflow that JetNet's COV and MMD use.
//!
//! **Balanced transportation problem.** Given supplies a ∈ ℝⁿ₊, demands b ∈ ℝᵐ₊ with
//! Σa = Σb and costs C ∈ ℝⁿˣᵐ, find the flow F ≥ 0 minimising ⟨F, C⟩ subject to
//! F·1 = a, Fᵀ·1 = b. Its dual is max ⟨u, a⟩ + ⟨v, b⟩ with u_i + v_j ≤ C_ij.
//!
//! The solver keeps a *basis*: n + m − 1 cells forming a spanning tree of the bipartite
//! graph rows ∪ columns (degenerate cells with zero flow included). Each iteration
//! 1. keeps potentials with u_i + v_j = C_ij on every tree cell,
//! 2. prices cells, r_ij = C_ij − u_i − v_j, block by block (≈ 4√(nm) cells, rows taken
//!    cyclically); if a full scan finds no r < −tol the flow is optimal,
//! 3. otherwise adds the most negative cell of the block, which closes one cycle in the
//!    tree, pushes θ = (smallest flow on the cycle's "−" cells) around the cycle and drops
//!    the cell that reached zero; only the part of the tree cut off by the dropped cell is
//!    re-rooted and gets new potentials.
//!
//! The starting basis comes from the matrix-minimum rule (cheapest cells first), which for
//! jets is usually within a few dozen pivots of the optimum. All arithmetic is in f64.
//!
//! **Jet EMD** (Komiske, Metodiev, Thaler 2019; energyflow 1.4 `emd.emd` with R = 1, β = 1,
//! `norm=False`, `periodic_phi=False`): particles (pT, η, φ) with unnormalised pT weights,
//! ground distance θ_ij = ((η_i − η'_j)² + (φ_i − φ'_j)²)^{1/2}, and
//! EMD = min_F Σ F_ij θ_ij / R + |Σ pT − Σ pT'|: the lighter jet receives one extra particle
//! carrying the pT difference at distance R (cost 1) from every particle of the other jet.

use crate::error::{Error, Result};

/// Solution of a balanced transportation problem.
#[derive(Clone, Debug)]
pub struct TransportSolution {
    /// Optimal cost ⟨F, C⟩.
    pub cost: f64,
    /// Non-zero flows as (row, column, amount); at most n + m − 1 entries.
    pub flows: Vec<(usize, usize, f64)>,
    /// Row potentials u and column potentials v of an optimal dual solution.
    pub u: Vec<f64>,
    /// Column potentials (see `u`).
    pub v: Vec<f64>,
    /// Number of simplex pivots taken.
    pub pivots: usize,
}

/// Default cap on simplex pivots (energyflow's `n_iter_max`).
pub const MAX_PIVOTS: usize = 100_000;

/// Exact solution of the balanced transportation problem min ⟨F, C⟩, F·1 = a, Fᵀ·1 = b.
///
/// `cost` is row-major `[n, m]`. Weights must be finite and ≥ 0; Σa and Σb must agree to
/// 1e-9 relative (the last positive entry of the larger side absorbs the rounding residue).
/// Rows or columns of zero weight are allowed. Errors on invalid input or if the pivot cap
/// is reached (which would mean cycling; never observed on jets).
pub fn transport_exact(a: &[f64], b: &[f64], cost: &[f64]) -> Result<TransportSolution> {
    let (n, m) = (a.len(), b.len());
    if cost.len() != n * m {
        return Err(Error::invalid(format!(
            "transport_exact: cost has {} entries, expected {n}×{m}",
            cost.len()
        )));
    }
    if n.checked_mul(m).is_none_or(|nm| nm >= u32::MAX as usize) {
        return Err(Error::invalid(format!(
            "transport_exact: {n}×{m} problem is too large"
        )));
    }
    if let Some(w) = a.iter().chain(b).find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(Error::invalid(format!(
            "transport_exact: weights must be finite and ≥ 0 (found {w})"
        )));
    }
    if let Some(c) = cost.iter().find(|c| !c.is_finite()) {
        return Err(Error::invalid(format!(
            "transport_exact: non-finite cost {c}"
        )));
    }
    let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if (sa - sb).abs() > 1e-9 * sa.max(sb).max(f64::MIN_POSITIVE) {
        return Err(Error::invalid(format!(
            "transport_exact: unbalanced problem, Σa = {sa} but Σb = {sb}"
        )));
    }
    if n == 0 || m == 0 || sa == 0.0 {
        return Ok(TransportSolution {
            cost: 0.0,
            flows: Vec::new(),
            u: vec![0.0; n],
            v: vec![0.0; m],
            pivots: 0,
        });
    }
    let mut tree = Basis::matrix_minimum(a, b, cost, n, m);
    let pivots = tree.optimise(cost, MAX_PIVOTS)?;
    Ok(tree.into_solution(cost, pivots))
}

/// One cell of the basis: row `i`, column `j`, flow `x`.
#[derive(Clone, Copy, Debug)]
struct Cell {
    i: usize,
    j: usize,
    x: f64,
}

/// Spanning-tree basis of the transportation simplex; lines 0..n are rows, n..n+m columns.
struct Basis {
    n: usize,
    m: usize,
    cells: Vec<Cell>,
    u: Vec<f64>,
    v: Vec<f64>,
    /// For each line of the tree rooted at row 0: the cell joining it to its parent
    /// (`usize::MAX` for the root) and its depth.
    parent_cell: Vec<usize>,
    depth: Vec<usize>,
    /// Basic cells incident to each line (rows 0..n, columns n..n+m), kept up to date:
    /// line l holds `adj[l * cap .. l * cap + degree[l]]`, cap = max(n, m).
    adj: Vec<usize>,
    degree: Vec<usize>,
    cap: usize,
    /// DFS stack and scratch for the path search, allocated once.
    stack: Vec<usize>,
    path: Vec<usize>,
    path_row: Vec<usize>,
    /// Row where the next pricing scan starts.
    next_row: usize,
}

impl Basis {
    /// Initial basic feasible solution by the matrix-minimum rule: visit cells by increasing
    /// cost; give each cell whose row and column are both open min(remaining supply,
    /// remaining demand) and close exactly one of the two lines (both only at the very
    /// end), which makes the n + m − 1 chosen cells a spanning tree.
    fn matrix_minimum(a: &[f64], b: &[f64], cost: &[f64], n: usize, m: usize) -> Self {
        // Sort cell indices by cost; the order only shapes the starting basis, so f32
        // precision keys (packed with the index into one u64) are enough and sort fast.
        let mut keys: Vec<u64> = cost
            .iter()
            .enumerate()
            .map(|(p, &c)| ((ordered_bits(c as f32) as u64) << 32) | p as u64)
            .collect();
        keys.sort_unstable();
        let order = keys.iter().map(|k| (k & 0xffff_ffff) as usize);
        let (mut supply, mut demand) = (a.to_vec(), b.to_vec());
        let (mut row_open, mut col_open) = (vec![true; n], vec![true; m]);
        let (mut rows_left, mut cols_left) = (n, m);
        let mut cells = Vec::with_capacity(n + m - 1);
        for p in order {
            if rows_left + cols_left == 0 {
                break;
            }
            let (i, j) = (p / m, p % m);
            if !(row_open[i] && col_open[j]) {
                continue;
            }
            // Close the row if it is exhausted first, or if it is not the last open row
            // and the column is the last open one (the balance guarantees the remaining
            // supply is the remaining demand, up to rounding).
            let close_row = if rows_left == 1 && cols_left == 1 {
                cells.push(Cell {
                    i,
                    j,
                    x: supply[i].max(0.0),
                });
                break;
            } else if cols_left == 1 {
                true
            } else if rows_left == 1 {
                false
            } else {
                supply[i] <= demand[j]
            };
            let x = if close_row { supply[i] } else { demand[j] }.max(0.0);
            supply[i] -= x;
            demand[j] -= x;
            cells.push(Cell { i, j, x });
            if close_row {
                row_open[i] = false;
                rows_left -= 1;
            } else {
                col_open[j] = false;
                cols_left -= 1;
            }
        }
        debug_assert_eq!(cells.len(), n + m - 1);
        Basis {
            n,
            m,
            cells,
            u: vec![0.0; n],
            v: vec![0.0; m],
            parent_cell: vec![usize::MAX; n + m],
            depth: vec![0; n + m],
            adj: vec![0; (n + m) * n.max(m)],
            degree: vec![0; n + m],
            cap: n.max(m),
            stack: Vec::with_capacity(n + m),
            path: Vec::with_capacity(n + m),
            path_row: Vec::with_capacity(n + m),
            next_row: 0,
        }
    }

    /// Builds the adjacency and roots the whole tree at row 0.
    fn build_tree(&mut self, cost: &[f64]) {
        self.degree.iter_mut().for_each(|d| *d = 0);
        for c in 0..self.cells.len() {
            let Cell { i, j, .. } = self.cells[c];
            self.attach(i, c);
            self.attach(self.n + j, c);
        }
        self.parent_cell[0] = usize::MAX;
        self.depth[0] = 0;
        self.u[0] = 0.0;
        self.hang_subtree(0, cost);
    }

    /// Given `top` with its parent cell, depth and potential set, sets parent cells, depths
    /// and potentials (u_i + v_j = C_ij on every tree cell) of everything below it.
    fn hang_subtree(&mut self, top: usize, cost: &[f64]) {
        let n = self.n;
        self.stack.clear();
        self.stack.push(top);
        while let Some(line) = self.stack.pop() {
            for k in 0..self.degree[line] {
                let c = self.adj[line * self.cap + k];
                if c == self.parent_cell[line] {
                    continue;
                }
                let Cell { i, j, .. } = self.cells[c];
                let other = if line < n { n + j } else { i };
                self.parent_cell[other] = c;
                self.depth[other] = self.depth[line] + 1;
                let cij = cost[i * self.m + j];
                if other < n {
                    self.u[i] = cij - self.v[j];
                } else {
                    self.v[j] = cij - self.u[i];
                }
                self.stack.push(other);
            }
        }
    }

    fn attach(&mut self, line: usize, cell: usize) {
        self.adj[line * self.cap + self.degree[line]] = cell;
        self.degree[line] += 1;
    }

    fn detach(&mut self, line: usize, cell: usize) {
        let list = &mut self.adj[line * self.cap..line * self.cap + self.degree[line]];
        if let Some(k) = list.iter().position(|&c| c == cell) {
            let last = list.len() - 1;
            list.swap(k, last);
            self.degree[line] -= 1;
        }
    }

    /// The line at the other end of cell `c` from `line`.
    fn across(&self, c: usize, line: usize) -> usize {
        let cell = self.cells[c];
        if line < self.n {
            self.n + cell.j
        } else {
            cell.i
        }
    }

    /// Pivots until no cell has a negative reduced cost; returns the number of pivots.
    fn optimise(&mut self, cost: &[f64], max_pivots: usize) -> Result<usize> {
        let scale = cost.iter().fold(0f64, |s, c| s.max(c.abs())).max(1e-300);
        let tol = 1e-12 * scale;
        self.build_tree(cost);
        let block = ((self.n * self.m) as f64).sqrt().ceil() as usize * 4;
        for pivot in 0..=max_pivots {
            // Block pricing: scan rows cyclically from where the last scan stopped and take
            // the most negative reduced cost in the first block of ≥ `block` cells that
            // has one (a full scan when none does, which proves optimality). Basic cells
            // have r = 0 up to rounding (≪ tol), so they never qualify; the row minimum
            // vectorises and the column is only located for rows that improve.
            let (mut best, mut enter) = (-tol, usize::MAX);
            let mut scanned = 0;
            for step in 0..self.n {
                let i = (self.next_row + step) % self.n;
                let ui = self.u[i];
                let row = &cost[i * self.m..(i + 1) * self.m];
                let row_min = row_min_reduced_cost(row, &self.v, ui);
                if row_min < best {
                    best = row_min;
                    let j = row
                        .iter()
                        .zip(&self.v)
                        .position(|(c, v)| c - ui - v == row_min);
                    enter = i * self.m + j.unwrap_or(0);
                }
                scanned += self.m;
                if scanned >= block && enter != usize::MAX {
                    self.next_row = (i + 1) % self.n;
                    break;
                }
            }
            if enter == usize::MAX {
                return Ok(pivot);
            }
            if pivot == max_pivots {
                break;
            }
            let (ei, ej) = (enter / self.m, enter % self.m);
            // The tree path from column ej to row ei, as cells in order from ej's side;
            // the first `col_side` cells lie between ej and the common ancestor.
            let (mut x, mut y) = (self.n + ej, ei);
            self.path.clear();
            self.path_row.clear();
            while x != y {
                if self.depth[x] >= self.depth[y] {
                    let c = self.parent_cell[x];
                    self.path.push(c);
                    x = self.across(c, x);
                } else {
                    let c = self.parent_cell[y];
                    self.path_row.push(c);
                    y = self.across(c, y);
                }
            }
            let col_side = self.path.len();
            while let Some(c) = self.path_row.pop() {
                self.path.push(c);
            }
            // Signs alternate −, +, −, … starting next to the entering cell's column.
            let (mut leave_k, mut theta) = (usize::MAX, f64::INFINITY);
            for k in (0..self.path.len()).step_by(2) {
                let x = self.cells[self.path[k]].x;
                if x < theta {
                    theta = x;
                    leave_k = k;
                }
            }
            let theta = theta.max(0.0);
            for k in 0..self.path.len() {
                let x = &mut self.cells[self.path[k]].x;
                *x = if k % 2 == 0 {
                    (*x - theta).max(0.0)
                } else {
                    *x + theta
                };
            }
            // Swap the leaving cell for the entering one (same slot) and re-hang the part of
            // the tree that the leaving cell cut off from the root, below the entering cell.
            let leave = self.path[leave_k];
            let old = self.cells[leave];
            let (oi, oj) = (old.i, self.n + old.j);
            self.detach(oi, leave);
            self.detach(oj, leave);
            self.cells[leave] = Cell {
                i: ei,
                j: ej,
                x: theta,
            };
            self.attach(ei, leave);
            self.attach(self.n + ej, leave);
            // The cut-off part contains ej if the leaving cell was on ej's side of the path.
            let (inside, outside) = if leave_k < col_side {
                (self.n + ej, ei)
            } else {
                (ei, self.n + ej)
            };
            self.parent_cell[inside] = leave;
            self.depth[inside] = self.depth[outside] + 1;
            let cij = cost[ei * self.m + ej];
            if inside < self.n {
                self.u[ei] = cij - self.v[ej];
            } else {
                self.v[ej] = cij - self.u[ei];
            }
            self.hang_subtree(inside, cost);
        }
        Err(Error::Numerical(format!(
            "transport_exact: no optimum after {max_pivots} pivots ({}×{} problem)",
            self.n, self.m
        )))
    }

    fn into_solution(self, cost: &[f64], pivots: usize) -> TransportSolution {
        let flows: Vec<(usize, usize, f64)> = self
            .cells
            .iter()
            .filter(|c| c.x > 0.0)
            .map(|c| (c.i, c.j, c.x))
            .collect();
        let cost = flows
            .iter()
            .map(|&(i, j, x)| x * cost[i * self.m + j])
            .sum();
        TransportSolution {
            cost,
            flows,
            u: self.u,
            v: self.v,
            pivots,
        }
    }
}

/// min_j (row_j − u − v_j), in four independent lanes so that it vectorises.
fn row_min_reduced_cost(row: &[f64], v: &[f64], u: f64) -> f64 {
    let mut acc = [f64::INFINITY; 4];
    let (rc, vc) = (row.chunks_exact(4), v.chunks_exact(4));
    let (rr, vr) = (rc.remainder(), vc.remainder());
    for (r, w) in rc.zip(vc) {
        for k in 0..4 {
            let x = r[k] - u - w[k];
            acc[k] = if x < acc[k] { x } else { acc[k] };
        }
    }
    for (r, w) in rr.iter().zip(vr) {
        let x = r - u - w;
        acc[0] = if x < acc[0] { x } else { acc[0] };
    }
    acc[0].min(acc[1]).min(acc[2].min(acc[3]))
}

/// Bits of an f32 as a u32 that sorts in the same order as the floats (sign-flip trick).
fn ordered_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// A particle for [`jet_emd`]: transverse momentum (weight) and position (η, φ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Particle {
    /// Weight (pT, unnormalised).
    pub pt: f64,
    /// Rapidity-like coordinate.
    pub eta: f64,
    /// Azimuth, not wrapped (energyflow's `periodic_phi=False`).
    pub phi: f64,
}

/// Particles with pT > 0 of one JetNet-layout jet (rows [η_rel, φ_rel, pT_rel, ...] of
/// `stride` values).
pub fn jet_particles(rows: &[f32], stride: usize) -> Vec<Particle> {
    rows.chunks_exact(stride)
        .filter(|r| r[2] > 0.0)
        .map(|r| Particle {
            pt: r[2] as f64,
            eta: r[0] as f64,
            phi: r[1] as f64,
        })
        .collect()
}

/// energyflow's jet EMD (R = 1, β = 1, unnormalised): Σ F_ij θ_ij + |Σ pT − Σ pT'| at the
/// optimal F. Zero-pT particles are ignored. Errors on negative or non-finite inputs.
pub fn jet_emd(x: &[Particle], y: &[Particle]) -> Result<f64> {
    let (sx, sy): (f64, f64) = (x.iter().map(|p| p.pt).sum(), y.iter().map(|p| p.pt).sum());
    let diff = sy - sx;
    let (n, m) = (
        x.len() + (diff > 0.0) as usize,
        y.len() + (diff < 0.0) as usize,
    );
    let mut cost = vec![1.0; n * m];
    for (i, p) in x.iter().enumerate() {
        for (j, q) in y.iter().enumerate() {
            // √(Δη² + Δφ²) as energyflow's C++ computes it (libm's hypot, which guards
            // against overflow no angle needs, was 20 % of the COV/MMD step)
            let (de, dp) = (p.eta - q.eta, p.phi - q.phi);
            cost[i * m + j] = (de * de + dp * dp).sqrt();
        }
    }
    let mut a: Vec<f64> = x.iter().map(|p| p.pt).collect();
    let mut b: Vec<f64> = y.iter().map(|p| p.pt).collect();
    if diff > 0.0 {
        a.push(diff);
    } else if diff < 0.0 {
        b.push(-diff);
    }
    Ok(transport_exact(&a, &b, &cost)?.cost)
}
