//! Mini-batches: which rows a step trains on, and gathering them.

use crate::rng::Rng;

/// `batch` row indices drawn uniformly from `0..n` with replacement (one draw each).
pub fn draw_with_replacement(rng: &mut Rng, n: usize, batch: usize) -> Vec<usize> {
    (0..batch).map(|_| rng.below(n)).collect()
}

/// The rows `picks` of a row-major table `rows` of `width` columns, concatenated
/// (`[picks.len(), width]`).
pub fn gather_rows(rows: &[f32], width: usize, picks: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(picks.len() * width);
    for &i in picks {
        out.extend_from_slice(&rows[i * width..(i + 1) * width]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_the_drawn_rows() {
        let rows = [0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0];
        assert_eq!(
            gather_rows(&rows, 2, &[2, 0, 2]),
            [20.0, 21.0, 0.0, 1.0, 20.0, 21.0]
        );
        assert!(gather_rows(&rows, 0, &[1]).is_empty());
        let picks = draw_with_replacement(&mut Rng::new(1), 3, 100);
        assert!(picks.iter().all(|&i| i < 3) && picks.len() == 100);
        assert!((0..3).all(|k| picks.contains(&k)));
    }
}
