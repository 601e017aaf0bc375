//! What a training run reports while it runs, and the terminal progress bar that shows it.

use indicatif::{ProgressBar, ProgressStyle};

/// One named validation score (e.g. `val_nll`, shown as "validation NLL").
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// Key in `train_log.csv`, `metrics.json` and the `--monitor` choice.
    pub key: &'static str,
    /// Label on screen.
    pub label: &'static str,
    pub value: f64,
}

/// One line of progress: the mean training loss since the last report, the validation
/// scores when this step validated, and the throughput since the last report.
#[derive(Clone, Debug)]
pub struct StepInfo {
    pub step: usize,
    pub steps: usize,
    pub train_loss: f64,
    /// Present on validation steps.
    pub scores: Option<Vec<Score>>,
    pub jets_per_s: f64,
}

/// A score as shown on screen: `{:8.2}`, or "    none" when it is not finite (a
/// collapsed generator, a diverged likelihood).
pub fn shown_score(value: f64) -> String {
    if value.is_finite() {
        format!("{value:8.2}")
    } else {
        format!("{:>8}", "none")
    }
}

/// A progress bar over a run's steps with the running loss and jets/s; every validation also
/// prints a line (kept above the bar on a terminal, printed plainly into logs).
pub struct TrainProgress {
    bar: ProgressBar,
}

impl TrainProgress {
    /// A bar for `steps` steps (hidden when stderr is not a terminal).
    pub fn new(steps: usize) -> Self {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos:>5}/{len} steps  {elapsed_precise} < {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        TrainProgress { bar }
    }

    /// Show one report.
    pub fn observe(&self, s: &StepInfo) {
        self.bar.set_position(s.step as u64);
        self.bar.set_message(format!(
            "loss {:8.2}  {:>6.0} jets/s",
            s.train_loss, s.jets_per_s
        ));
        if let Some(scores) = &s.scores {
            let shown: Vec<String> = scores
                .iter()
                .map(|sc| format!("{} {}", sc.label, shown_score(sc.value)))
                .collect();
            let line = format!(
                "step {:>5}: train loss {:8.2}, {}, {:>6.0} jets/s",
                s.step,
                s.train_loss,
                shown.join(", "),
                s.jets_per_s
            );
            // a hidden bar (output not a terminal) drops println; logs still want the line
            if self.bar.is_hidden() {
                println!("{line}");
            } else {
                self.bar.println(line);
            }
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
