//! Early stopping on one validation score.

use serde::{Deserialize, Serialize};

/// Whether a lower or a higher score is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// Losses, negative log-likelihoods, distances.
    Minimize,
    /// Likelihoods, accuracies, coverage.
    Maximize,
}

/// What one validation did to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new best score: keep this model.
    Improved,
    /// No improvement, patience left.
    Worse,
    /// `patience` validations in a row without improvement: stop.
    Stop,
}

/// Tracks the best score and stops after `patience` validations without improvement.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    goal: Goal,
    patience: usize,
    best: Option<f64>,
    since_best: usize,
}

impl EarlyStopping {
    /// A tracker with no score yet; `patience` ≥ 1 validations without improvement stop.
    pub fn new(goal: Goal, patience: usize) -> Self {
        EarlyStopping {
            goal,
            patience: patience.max(1),
            best: None,
            since_best: 0,
        }
    }

    /// The best score so far (None before the first finite one).
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Record a validation score. A non-finite score never improves.
    pub fn observe(&mut self, score: f64) -> Verdict {
        let better = score.is_finite()
            && match (self.best, self.goal) {
                (None, _) => true,
                (Some(b), Goal::Minimize) => score < b,
                (Some(b), Goal::Maximize) => score > b,
            };
        if better {
            self.best = Some(score);
            self.since_best = 0;
            return Verdict::Improved;
        }
        self.since_best += 1;
        if self.since_best >= self.patience {
            Verdict::Stop
        } else {
            Verdict::Worse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_validations_without_improvement() {
        let mut e = EarlyStopping::new(Goal::Minimize, 2);
        assert_eq!(e.observe(f64::NAN), Verdict::Worse);
        assert_eq!(e.observe(5.0), Verdict::Improved);
        assert_eq!(e.observe(4.0), Verdict::Improved);
        assert_eq!(e.observe(4.5), Verdict::Worse);
        assert_eq!(e.observe(3.0), Verdict::Improved);
        assert_eq!(e.observe(3.0), Verdict::Worse);
        assert_eq!(e.observe(7.0), Verdict::Stop);
        assert_eq!(e.best(), Some(3.0));
        let mut up = EarlyStopping::new(Goal::Maximize, 1);
        assert_eq!(up.observe(0.4), Verdict::Improved);
        assert_eq!(up.observe(0.5), Verdict::Improved);
        assert_eq!(up.observe(0.1), Verdict::Stop);
    }
}
