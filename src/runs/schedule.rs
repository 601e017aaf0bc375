//! Learning-rate schedules over a run's steps.

use serde::{Deserialize, Serialize};

/// How the learning rate evolves over `steps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// lr at every step.
    Constant,
    /// lr · ½(1 + cos(π (t − 1) / steps)): from lr at the first step down to ≈ 0 at the last.
    Cosine,
}

impl LrSchedule {
    /// The name on the command line and in config files.
    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        }
    }

    /// The learning rate of step `t` (1-based) of `steps`, starting from `lr`.
    pub fn at(self, lr: f64, t: usize, steps: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let frac = (t.saturating_sub(1)) as f64 / steps.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn cosine_schedule_runs_from_lr_to_zero() {
        let c = LrSchedule::Cosine;
        assert_eq!(c.at(1e-3, 1, 100), 1e-3);
        assert!((c.at(1e-3, 51, 100) - 0.5e-3).abs() < 1e-12);
        assert!(c.at(1e-3, 100, 100) < 1e-6);
        assert_eq!(LrSchedule::Constant.at(1e-3, 77, 100), 1e-3);
        let parsed: LrSchedule = serde_json::from_str("\"cosine\"").unwrap();
        assert_eq!(parsed, c);
        assert!(serde_json::from_str::<LrSchedule>("\"linear\"").is_err());
    }
}
