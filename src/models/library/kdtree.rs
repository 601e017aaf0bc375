//! A kd-tree over points in a few dimensions (the library generator's condition space:
//! standardised jet mass, pT, multiplicity), for exact k-nearest-neighbour queries.
//!
//! Build: split the points at the median of the coordinate with the largest spread until a
//! node holds ≤ [`LEAF`] points (O(n log n) expected). Query: depth-first, nearer child
//! first, a subtree skipped only when the squared distance to its splitting plane exceeds
//! the current k-th best — so the answer is exact.
//!
//! **Ties.** Conditions are often discrete (multiplicity) or repeated, so many points can be
//! equally near. Points are ranked by (squared distance, a per-query pseudo-random priority
//! of the point), so equally near points are drawn uniformly at random, reproducibly per
//! `salt`, rather than always the same ones.

use crate::error::{Error, Result};
use crate::rng::mix64;

/// Most points a leaf holds.
pub const LEAF: usize = 16;

#[derive(Clone, Debug)]
enum Node {
    Leaf {
        start: usize,
        end: usize,
    },
    Split {
        axis: usize,
        value: f64,
        left: usize,
        right: usize,
    },
}

/// A kd-tree over `n` points of `dim` coordinates.
#[derive(Clone, Debug)]
pub struct KdTree {
    dim: usize,
    /// The points, reordered so that each leaf's points are contiguous, `[n, dim]`.
    points: Vec<f64>,
    /// Original index of each reordered point.
    ids: Vec<usize>,
    nodes: Vec<Node>,
}

/// One neighbour: its original index and squared distance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    pub index: usize,
    pub dist2: f64,
}

impl KdTree {
    /// Build over `points` (`[n, dim]` row-major, finite). Errors on an empty set, `dim = 0`,
    /// a length that is not a multiple of `dim` or a non-finite coordinate.
    pub fn new(points: &[f64], dim: usize) -> Result<KdTree> {
        if dim == 0 || points.is_empty() || !points.len().is_multiple_of(dim) {
            return Err(Error::invalid(format!(
                "kd-tree: {} coordinates are not a non-empty set of {dim}-dimensional points",
                points.len()
            )));
        }
        if points.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("kd-tree: non-finite coordinate"));
        }
        let n = points.len() / dim;
        let mut ids: Vec<usize> = (0..n).collect();
        let mut nodes = Vec::new();
        build(points, dim, &mut ids, 0, &mut nodes);
        let reordered = ids
            .iter()
            .flat_map(|&i| points[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        Ok(KdTree {
            dim,
            points: reordered,
            ids,
            nodes,
        })
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false (a tree holds ≥ 1 point).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Coordinates per point.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The `k` points nearest to `query` (squared Euclidean distance), nearest first; ties
    /// broken by a pseudo-random priority seeded by `salt`. Returns min(k, n) neighbours.
    pub fn nearest(&self, query: &[f64], k: usize, salt: u64) -> Result<Vec<Neighbour>> {
        if query.len() != self.dim {
            return Err(Error::invalid(format!(
                "kd-tree query has {} coordinates, the tree {}",
                query.len(),
                self.dim
            )));
        }
        if query.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("kd-tree query: non-finite coordinate"));
        }
        let k = k.min(self.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut best = Best {
            k,
            salt,
            items: Vec::with_capacity(k + 1),
        };
        self.search(0, query, &mut best);
        Ok(best
            .items
            .into_iter()
            .map(|(dist2, _, index)| Neighbour { index, dist2 })
            .collect())
    }

    fn search(&self, node: usize, q: &[f64], best: &mut Best) {
        match self.nodes[node] {
            Node::Leaf { start, end } => {
                for slot in start..end {
                    let p = &self.points[slot * self.dim..(slot + 1) * self.dim];
                    let d2: f64 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                    best.offer(d2, self.ids[slot]);
                }
            }
            Node::Split {
                axis,
                value,
                left,
                right,
            } => {
                let diff = q[axis] - value;
                let (near, far) = if diff <= 0.0 {
                    (left, right)
                } else {
                    (right, left)
                };
                self.search(near, q, best);
                // a point beyond the plane is at least |diff| away; equal distances may still
                // win their tie, so only a strictly larger bound prunes
                if !best.full() || diff * diff <= best.worst() {
                    self.search(far, q, best);
                }
            }
        }
    }
}

/// The k best (distance², priority, index) so far, sorted ascending.
struct Best {
    k: usize,
    salt: u64,
    items: Vec<(f64, u64, usize)>,
}

impl Best {
    fn full(&self) -> bool {
        self.items.len() == self.k
    }
    fn worst(&self) -> f64 {
        self.items.last().map_or(f64::INFINITY, |w| w.0)
    }
    fn offer(&mut self, d2: f64, index: usize) {
        let item = (d2, mix64(self.salt ^ mix64(index as u64)), index);
        let before = |a: &(f64, u64, usize), b: &(f64, u64, usize)| (a.0, a.1) < (b.0, b.1);
        if self.full() && !before(&item, self.items.last().expect("k ≥ 1")) {
            return;
        }
        let at = self.items.partition_point(|x| before(x, &item));
        self.items.insert(at, item);
        self.items.truncate(self.k);
    }
}

/// Recursively split `ids` (the points of this node) and append the node; returns its index.
fn build(
    points: &[f64],
    dim: usize,
    ids: &mut [usize],
    offset: usize,
    nodes: &mut Vec<Node>,
) -> usize {
    let me = nodes.len();
    nodes.push(Node::Leaf {
        start: offset,
        end: offset + ids.len(),
    });
    if ids.len() <= LEAF {
        return me;
    }
    let coord = |i: usize, a: usize| points[i * dim + a];
    let spread = |a: usize| {
        let (lo, hi) = ids
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
                (lo.min(coord(i, a)), hi.max(coord(i, a)))
            });
        hi - lo
    };
    let axis = (0..dim)
        .max_by(|&a, &b| spread(a).total_cmp(&spread(b)))
        .unwrap_or(0);
    if spread(axis) == 0.0 {
        return me; // all points coincide: one (large) leaf
    }
    let mid = ids.len() / 2;
    ids.select_nth_unstable_by(mid, |&a, &b| coord(a, axis).total_cmp(&coord(b, axis)));
    let value = coord(ids[mid], axis);
    // left: coordinate < value … ≤ value; right: ≥ value (the median itself goes right)
    let (lo, hi) = ids.split_at_mut(mid);
    let left = build(points, dim, lo, offset, nodes);
    let right = build(points, dim, hi, offset + mid, nodes);
    nodes[me] = Node::Split {
        axis,
        value,
        left,
        right,
    };
    me
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn brute(points: &[f64], dim: usize, q: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = points
            .chunks_exact(dim)
            .map(|p| p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum())
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }

    #[test]
    fn nearest_neighbours_match_brute_force() {
        let mut rng = Rng::new(3);
        for dim in [1, 2, 3] {
            // continuous coordinates, and a discrete one with many ties
            let points: Vec<f64> = (0..1000 * dim)
                .map(|i| {
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    if i % dim == 0 {
                        (u * 20.0).floor()
                    } else {
                        u
                    }
                })
                .collect();
            let tree = KdTree::new(&points, dim).unwrap();
            for t in 0..50 {
                let q: Vec<f64> = points[t * 7 * dim..(t * 7 + 1) * dim]
                    .iter()
                    .map(|v| v + 0.01 * t as f64)
                    .collect();
                for k in [1, 5, 40] {
                    let got = tree.nearest(&q, k, t as u64).unwrap();
                    let want = brute(&points, dim, &q);
                    assert_eq!(got.len(), k);
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(g.dist2, *w, "dim {dim} k {k}");
                        let p = &points[g.index * dim..(g.index + 1) * dim];
                        let d2: f64 = p.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
                        assert_eq!(d2, g.dist2);
                    }
                }
            }
        }
    }

    #[test]
    fn ties_are_broken_at_random_per_salt() {
        // 100 identical points: the chosen one depends on the salt, and covers many of them
        let tree = KdTree::new(&vec![1.0; 100], 1).unwrap();
        let picks: std::collections::HashSet<usize> = (0..200)
            .map(|s| tree.nearest(&[1.0], 1, s).unwrap()[0].index)
            .collect();
        assert!(picks.len() > 50, "{}", picks.len());
        assert_eq!(
            tree.nearest(&[1.0], 3, 9).unwrap(),
            tree.nearest(&[1.0], 3, 9).unwrap()
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(KdTree::new(&[], 2).is_err());
        assert!(KdTree::new(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(KdTree::new(&[f64::NAN, 1.0], 2).is_err());
        let t = KdTree::new(&[0.0, 0.0, 1.0, 1.0], 2).unwrap();
        assert!(t.nearest(&[0.0], 1, 0).is_err());
        assert_eq!(t.nearest(&[0.0, 0.0], 5, 0).unwrap().len(), 2);
    }
}
