//! `jetgen dimensionality`: the dimensionality estimate D(β) = −dKL/d ln β of the EMD-VAE
//! study (Collins, arXiv:2109.10919) across runs, each trained at its own constant β.
//!
//! A sweep inside one run (`--beta-schedule anneal`) moves β faster than the model settles;
//! the study's curve comes from one VAE per β, each at equilibrium. For every run this reads
//! the validations of its `analysis.json` from the last `tail` fraction of the steps up to
//! its last validation and averages them: the KL per latent dimension and the
//! reconstruction loss, each with the standard error of that mean. The validations are
//! successive states of one trajectory on the same jets, so σ measures how much the run
//! still moves (a drifting run shows a large one), not the full statistical error. Between
//! neighbouring β (sorted), the finite difference
//! ```text
//! D(√(β₁β₂)) = −(KL₂ − KL₁) / (ln β₂ − ln β₁),   σ_D = √(σ₁² + σ₂²) / |ln β₂ − ln β₁|
//! ```
//! D counts the directions resolved at β, each with a weight w set by the loss. For one
//! direction with posterior width s, KL = −ln s + const, and the loss is minimised over s:
//! * `--loss sinkhorn`, loss = EMD/(2β²) + KL. The EMD (ground distance to the power 1)
//!   grows linearly in s, so s ∝ β², KL = −2 ln β + const, and **w = 2**.
//! * mse, chamfer, chamfer-physics: loss = recon + β·KL with squared errors, which grow as
//!   s². So s² ∝ β, KL = −½ ln β + const, and **w = ½**.
//!
//! D/w estimates how many latent directions are resolved; the table and the plot show it
//! beside the latent size.
//!
//! Outputs: a table on stdout, `--json` (every run and every interval), and with `--plots`
//! `d_vs_beta.png` (D with its ±σ band and w × the latent size for reference) and
//! `kl_per_dim_vs_beta.png` (the KL of each run's k-th most informative dimension over β —
//! ranks, since the axes of independent runs are unrelated — and the total).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::plots::style::PALETTE;
use crate::plots::{LegendPos, Scale, Series, Style, XyPlot};

/// `jetgen dimensionality`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct DimensionalityArgs {
    /// Run directories of `jetgen train vae` at constant β (--beta-schedule constant), one
    /// per β, with the same loss and latent size; at least two
    #[arg(required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Fraction of each run's steps, up to its last validation, whose validations are
    /// averaged (0 < tail ≤ 1; at least two validations must fall in it)
    #[arg(long, default_value_t = 0.25)]
    pub tail: f64,
    /// Write the D(β) and KL-per-dimension plots into this directory
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Write every run's averages and every interval's D as JSON here
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One run at equilibrium: its β, the averaged validation KL per dimension and
/// reconstruction loss, their standard errors, and how many validations were averaged.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPoint {
    pub run: PathBuf,
    pub beta: f64,
    pub kl_per_dim: Vec<f64>,
    /// Σ of `kl_per_dim` and its standard error over the averaged validations.
    pub kl: f64,
    pub kl_err: f64,
    pub recon: f64,
    pub recon_err: f64,
    pub validations: usize,
}

/// D on one interval between neighbouring β: at the geometric mid-point, with its error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub beta_lo: f64,
    pub beta_hi: f64,
    pub beta_mid: f64,
    pub d: f64,
    pub d_err: f64,
}

/// Mean and standard error of the mean (0 for a single value).
fn mean_err(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The equilibrium point of one run from its `config.json` and `analysis.json` values
/// (`run` names it in errors). Refuses an autoencoder, a β schedule, and a run without
/// validations in its tail.
pub fn run_point(run: &Path, config: &Value, analysis: &Value, tail: f64) -> Result<RunPoint> {
    let bad = |what: String| Error::file(run, what);
    check_family(run, config)?;
    let s = &config["settings"];
    if let Some(schedule) = s["beta_schedule"].as_str().filter(|&v| v != "constant") {
        return Err(bad(format!(
            "was trained with --beta-schedule {schedule}; D(β) across runs needs one constant β \
             per run (a swept run plots its own sweep: plots/d_vs_beta.png)"
        )));
    }
    let sweep = analysis["beta_sweep"]
        .as_array()
        .ok_or_else(|| bad("analysis.json has no beta_sweep (was the run finished?)".into()))?;
    if sweep.is_empty() {
        return Err(bad(
            "analysis.json lists no validations (was --val-every larger than --steps?)".into(),
        ));
    }
    let last = sweep
        .iter()
        .filter_map(|p| p["step"].as_f64())
        .fold(0.0, f64::max);
    let from = last * (1.0 - tail);
    let mut kl_dims: Vec<Vec<f64>> = Vec::new();
    let (mut kls, mut recons, mut beta) = (Vec::new(), Vec::new(), None);
    for p in sweep {
        let step = p["step"].as_f64().unwrap_or(-1.0);
        if step < from {
            continue;
        }
        // (a non-finite KL is written as null)
        let dims: Option<Vec<f64>> = p["kl_per_dim"]
            .as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect());
        let dims = dims.unwrap_or_default();
        // (serde writes a non-finite number as null: a diverged run lands here)
        let (b, recon) = (p["beta"].as_f64(), p["recon"].as_f64());
        let (Some(b), Some(recon), false) = (b, recon, dims.is_empty()) else {
            return Err(bad(format!(
                "validation at step {step} has a non-finite (null) or missing β, \
                 reconstruction or KL per dimension: did the run diverge?"
            )));
        };
        if b <= 0.0 {
            return Err(bad(format!("validation at step {step} has β = {b} ≤ 0")));
        }
        if kl_dims.first().is_some_and(|d| d.len() != dims.len()) {
            return Err(bad("validations disagree on the latent size".into()));
        }
        if beta.is_some_and(|prev: f64| (prev - b).abs() > 1e-12 * b) {
            return Err(bad(format!(
                "β changes within the averaged validations ({} → {b}): not a constant-β run",
                beta.unwrap_or(b)
            )));
        }
        beta = Some(b);
        kls.push(dims.iter().sum::<f64>());
        recons.push(recon);
        kl_dims.push(dims);
    }
    let Some(beta) = beta.filter(|_| kls.len() >= 2) else {
        return Err(bad(format!(
            "has {} validation(s) in the last {:.0} % of its steps, too few for a mean and \
             its error; raise --tail or validate more often (--val-every)",
            kls.len(),
            100.0 * tail
        )));
    };
    let l = kl_dims[0].len();
    let kl_per_dim = (0..l)
        .map(|k| mean_err(&kl_dims.iter().map(|d| d[k]).collect::<Vec<_>>()).0)
        .collect();
    let (kl, kl_err) = mean_err(&kls);
    let (recon, recon_err) = mean_err(&recons);
    Ok(RunPoint {
        run: run.to_path_buf(),
        beta,
        kl_per_dim,
        kl,
        kl_err,
        recon,
        recon_err,
        validations: kls.len(),
    })
}

/// Refuse a run that is not a VAE (before its analysis is read: other families have none).
fn check_family(run: &Path, config: &Value) -> Result<()> {
    match config["family"].as_str() {
        Some("vae") => Ok(()),
        other => Err(Error::file(
            run,
            format!(
                "is a `{}` run, not a VAE: D(β) needs the KL of a variational model",
                other.unwrap_or("?")
            ),
        )),
    }
}

/// D and its error on each interval between neighbouring β of `points` (sorted by β, all
/// distinct; see the module doc).
pub fn intervals(points: &[RunPoint]) -> Vec<Interval> {
    points
        .windows(2)
        .map(|w| {
            let dlog = w[1].beta.ln() - w[0].beta.ln();
            Interval {
                beta_lo: w[0].beta,
                beta_hi: w[1].beta,
                beta_mid: (w[0].beta * w[1].beta).sqrt(),
                d: -(w[1].kl - w[0].kl) / dlog,
                d_err: w[0].kl_err.hypot(w[1].kl_err) / dlog.abs(),
            }
        })
        .collect()
}

/// Sort `points` by β and check that they can be compared: distinct β, one latent size.
pub fn order(mut points: Vec<RunPoint>) -> Result<Vec<RunPoint>> {
    if points.len() < 2 {
        return Err(Error::invalid(
            "D(β) needs at least two runs at different β",
        ));
    }
    points.sort_by(|a, b| a.beta.total_cmp(&b.beta));
    for w in points.windows(2) {
        // (closer than 0.1 % a finite difference is all noise)
        if (w[1].beta / w[0].beta).ln() < 1e-3 {
            return Err(Error::invalid(format!(
                "{} and {} were both trained at β = {}: give one run per β",
                w[0].run.display(),
                w[1].run.display(),
                w[0].beta
            )));
        }
        if w[1].kl_per_dim.len() != w[0].kl_per_dim.len() {
            return Err(Error::invalid(format!(
                "{} has {} latent dimensions and {} has {}: compare runs of one latent size",
                w[0].run.display(),
                w[0].kl_per_dim.len(),
                w[1].run.display(),
                w[1].kl_per_dim.len()
            )));
        }
    }
    Ok(points)
}

/// The weight w of one resolved direction in D for `loss` (module doc): 2 for the EMD
/// loss EMD/(2β²) + KL, ½ for recon + β·KL with squared errors.
pub fn direction_weight(loss: &str) -> f64 {
    if loss == "sinkhorn" {
        2.0
    } else {
        0.5
    }
}

/// The loss the runs were trained with, which all must share.
fn common_loss(configs: &[(PathBuf, Value)]) -> Result<String> {
    let loss = |c: &Value| c["settings"]["loss"].as_str().unwrap_or("?").to_string();
    let first = loss(&configs[0].1);
    for (run, c) in &configs[1..] {
        if loss(c) != first {
            return Err(Error::invalid(format!(
                "{} was trained with --loss {} and {} with --loss {first}: the KL of \
                 different reconstruction losses is not one curve",
                run.display(),
                loss(c),
                configs[0].0.display()
            )));
        }
    }
    Ok(first)
}

/// Run `jetgen dimensionality`.
pub fn run(args: &DimensionalityArgs) -> Result<()> {
    if !(args.tail > 0.0 && args.tail <= 1.0) {
        return Err(Error::invalid(format!(
            "--tail must be in (0, 1], got {}",
            args.tail
        )));
    }
    let mut configs = Vec::new();
    let mut points = Vec::new();
    for run in &args.runs {
        let dir = crate::runs::RunDir::new(run);
        let config = crate::io::read_json(&dir.config())?;
        check_family(run, &config)?;
        let analysis = crate::io::read_json(&dir.root().join("analysis.json"))?;
        points.push(run_point(run, &config, &analysis, args.tail)?);
        configs.push((run.clone(), config));
    }
    let loss = common_loss(&configs)?;
    let points = order(points)?;
    let ivs = intervals(&points);
    let w = direction_weight(&loss);
    print!("{}", table(&points, &ivs, &loss, args.tail, w));
    if let Some(path) = &args.json {
        crate::io::write_json(path, &to_json(&points, &ivs, &loss, args.tail, w))?;
    }
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e.to_string()))?;
        plots(dir, &points, &ivs, w)?;
        println!("plots: {}", dir.display());
    }
    Ok(())
}

/// The runs and the intervals as a text table.
fn table(points: &[RunPoint], ivs: &[Interval], loss: &str, tail: f64, w: f64) -> String {
    let mut s = format!(
        "D(β) = −dKL/d ln β across {} runs (--loss {loss}); validations of the last {:.0} % \
         of each run averaged\n",
        points.len(),
        100.0 * tail
    );
    s += &format!(
        "{:>10} {:>12} {:>10} {:>16} {:>6} {:>5}  run\n",
        "β", "recon", "±", "KL (nats) ±", "dims", "vals"
    );
    for p in points {
        let active = p.kl_per_dim.iter().filter(|&&v| v > 0.1).count();
        s += &format!(
            "{:>10.4} {:>12.5} {:>10.5} {:>9.3} ±{:>6.3} {:>6} {:>5}  {}\n",
            p.beta,
            p.recon,
            p.recon_err,
            p.kl,
            p.kl_err,
            active,
            p.validations,
            p.run.display()
        );
    }
    s += &format!(
        "{:>22} {:>10} {:>10} {:>8}   (w = {w} per resolved direction for --loss {loss})\n",
        "interval", "D", "±", "D/w"
    );
    for iv in ivs {
        s += &format!(
            "{:>10.4} – {:<9.4} {:>10.2} {:>10.2} {:>8.1}\n",
            iv.beta_lo,
            iv.beta_hi,
            iv.d,
            iv.d_err,
            iv.d / w
        );
    }
    s
}

/// The JSON written by `--json`.
fn to_json(points: &[RunPoint], ivs: &[Interval], loss: &str, tail: f64, w: f64) -> Value {
    json!({
        "what": "D(β) = −dKL/d ln β by finite differences between runs at neighbouring constant β",
        "loss": loss,
        "direction_weight": w,
        "note": "D/w estimates the resolved latent directions (w = 2 for EMD/(2β²) + KL, ½ for \
                 recon + β·KL with squared errors); the errors are the spread of each run's \
                 last validations",
        "tail": tail,
        "runs": points.iter().map(|p| json!({
            "run": p.run.display().to_string(), "beta": p.beta,
            "kl": p.kl, "kl_err": p.kl_err, "kl_per_dim": p.kl_per_dim,
            "active_dims_kl_gt_0.1": p.kl_per_dim.iter().filter(|&&v| v > 0.1).count(),
            "recon": p.recon, "recon_err": p.recon_err, "validations": p.validations,
        })).collect::<Vec<_>>(),
        "intervals": ivs.iter().map(|iv| json!({
            "beta_lo": iv.beta_lo, "beta_hi": iv.beta_hi, "beta_mid": iv.beta_mid,
            "D": iv.d, "D_err": iv.d_err, "directions": iv.d / w,
        })).collect::<Vec<_>>(),
    })
}

/// `d_vs_beta.png` and `kl_per_dim_vs_beta.png`.
fn plots(dir: &Path, points: &[RunPoint], ivs: &[Interval], w: f64) -> Result<()> {
    let l = points[0].kl_per_dim.len() as f64;
    let (lo, hi) = (points[0].beta, points[points.len() - 1].beta);
    let band = |sign: f64| -> Vec<(f64, f64)> {
        ivs.iter()
            .map(|iv| (iv.beta_mid, iv.d + sign * iv.d_err))
            .collect()
    };
    crate::plots::xy_plot(
        &dir.join("d_vs_beta.png"),
        &XyPlot {
            title: "Dimensionality D = −dKL/d ln β, one run per β".into(),
            xlabel: "β (resolution, units of the reconstruction loss)".into(),
            ylabel: "D".into(),
            x_scale: Scale::Log,
            // (D falls from upper left to lower right: the lower left is free)
            legend: LegendPos::LowerLeft,
            ..Default::default()
        },
        &[
            Series::line(
                "D",
                PALETTE[1],
                ivs.iter().map(|iv| (iv.beta_mid, iv.d)).collect(),
            )
            .with_style(Style::LineMarkers),
            Series::line("D ± σ", PALETTE[1], band(1.0)).with_style(Style::Dashed),
            Series::line("", PALETTE[1], band(-1.0)).with_style(Style::Dashed),
            Series::line(
                format!("all {l} latent directions resolved (w·{l}, w = {w})"),
                PALETTE[7 % PALETTE.len()],
                vec![(lo, w * l), (hi, w * l)],
            )
            .with_style(Style::Dashed),
        ],
    )?;
    // the latent axes of independently trained runs are unrelated: compare ranks (each
    // run's k-th most informative dimension), not indices
    let ranked: Vec<Vec<f64>> = points
        .iter()
        .map(|p| {
            let mut v = p.kl_per_dim.clone();
            v.sort_by(|a, b| b.total_cmp(a));
            v
        })
        .collect();
    let floor = 1e-4;
    let mut series: Vec<Series> = (0..points[0].kl_per_dim.len())
        .map(|k| {
            let pts = points
                .iter()
                .zip(&ranked)
                .map(|(p, r)| (p.beta, r[k].max(floor)))
                .collect();
            let label = match k {
                0 => "most informative dimension".to_string(),
                1 => "2nd, 3rd, … (by rank)".to_string(),
                _ => String::new(),
            };
            Series::line(label, PALETTE[k % PALETTE.len()], pts)
        })
        .collect();
    series.push(
        Series::line(
            "total",
            crate::plots::style::BLACK,
            points.iter().map(|p| (p.beta, p.kl.max(floor))).collect(),
        )
        .with_style(Style::LineMarkers),
    );
    crate::models::vae::analysis::kl_vs_beta_plot(
        &dir.join("kl_per_dim_vs_beta.png"),
        format!("KL of each run's latent dimensions by rank (floor {floor}), one run per β"),
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(beta: f64, schedule: &str) -> Value {
        json!({"family": "vae", "settings": {"beta": beta, "beta_schedule": schedule,
               "loss": "sinkhorn", "latent": 2}})
    }

    /// An analysis.json with validations at steps 100, 200, 300, 400 (KL per dim given).
    fn analysis(beta: f64, kl: [[f64; 2]; 4]) -> Value {
        json!({"beta_sweep": kl.iter().enumerate().map(|(i, k)| json!({
            "step": 100 * (i + 1), "beta": beta, "recon": 0.05 + 0.01 * i as f64,
            "kl": k[0] + k[1], "kl_per_dim": k,
        })).collect::<Vec<_>>()})
    }

    #[test]
    fn the_tail_is_averaged_with_its_standard_error() {
        let a = analysis(0.1, [[9.0, 9.0], [5.0, 1.0], [3.0, 1.0], [4.0, 2.0]]);
        // tail 0.5 of 400 steps: steps ≥ 200, three validations with totals 6, 4, 6
        let p = run_point(Path::new("r"), &config(0.1, "constant"), &a, 0.5).unwrap();
        assert_eq!(p.validations, 3);
        assert!((p.kl - 16.0 / 3.0).abs() < 1e-12);
        // s² = ((2/3)² + (4/3)² + (2/3)²)/2 = 4/3, σ_mean = √(4/9)
        assert!((p.kl_err - (4.0f64 / 9.0).sqrt()).abs() < 1e-12);
        assert!((p.kl_per_dim[0] - 4.0).abs() < 1e-12);
        assert!((p.recon - 0.07).abs() < 1e-12);
        // the whole run
        let all = run_point(Path::new("r"), &config(0.1, "constant"), &a, 1.0).unwrap();
        assert_eq!(all.validations, 4);
    }

    #[test]
    fn d_is_the_negative_log_slope_of_the_kl() {
        // KL = c − 3 ln β exactly: D = 3 on every interval, with errors from the spreads
        let pts: Vec<RunPoint> = [0.01, 0.03, 0.1]
            .iter()
            .map(|&b: &f64| {
                let kl = 10.0 - 3.0 * b.ln();
                RunPoint {
                    run: PathBuf::from(format!("b{b}")),
                    beta: b,
                    kl_per_dim: vec![kl / 2.0, kl / 2.0],
                    kl,
                    kl_err: 0.3,
                    recon: 0.0,
                    recon_err: 0.0,
                    validations: 4,
                }
            })
            .rev()
            .collect();
        let pts = order(pts).unwrap();
        assert_eq!(pts[0].beta, 0.01);
        let ivs = intervals(&pts);
        assert_eq!(ivs.len(), 2);
        for iv in &ivs {
            assert!((iv.d - 3.0).abs() < 1e-9, "{iv:?}");
            let dlog = (iv.beta_hi / iv.beta_lo).ln();
            assert!((iv.d_err - 0.3 * 2f64.sqrt() / dlog).abs() < 1e-12);
            assert!((iv.beta_mid - (iv.beta_lo * iv.beta_hi).sqrt()).abs() < 1e-15);
        }
    }

    #[test]
    fn runs_that_cannot_make_one_curve_are_refused() {
        let a = analysis(0.1, [[1.0, 1.0]; 4]);
        let msg = |r: Result<RunPoint>| r.unwrap_err().to_string();
        assert!(
            msg(run_point(Path::new("r"), &config(0.1, "anneal"), &a, 0.5)).contains("constant")
        );
        let ae = json!({"family": "ae", "settings": {}});
        assert!(msg(run_point(Path::new("r"), &ae, &a, 0.5)).contains("not a VAE"));
        assert!(msg(run_point(
            Path::new("r"),
            &config(0.1, "constant"),
            &json!({}),
            0.5
        ))
        .contains("beta_sweep"));
        // β moving within the tail
        let mut moving = analysis(0.1, [[1.0, 1.0]; 4]);
        moving["beta_sweep"][3]["beta"] = json!(0.05);
        assert!(msg(run_point(
            Path::new("r"),
            &config(0.1, "constant"),
            &moving,
            0.5
        ))
        .contains("β changes"));
        // NaN KL
        let mut nan = analysis(0.1, [[1.0, 1.0]; 4]);
        nan["beta_sweep"][3]["kl_per_dim"] = json!([null, 1.0]);
        assert!(msg(run_point(
            Path::new("r"),
            &config(0.1, "constant"),
            &nan,
            0.25
        ))
        .contains("non-finite (null)"));
        let mut null_recon = analysis(0.1, [[1.0, 1.0]; 4]);
        null_recon["beta_sweep"][3]["recon"] = Value::Null;
        let diverged = run_point(Path::new("r"), &config(0.1, "constant"), &null_recon, 0.5);
        assert!(msg(diverged).contains("diverge"));
        // one validation in the tail is no mean with an error; none at all is named
        let one = run_point(Path::new("r"), &config(0.1, "constant"), &a, 0.1);
        assert!(msg(one).contains("raise --tail"));
        let empty = run_point(
            Path::new("r"),
            &config(0.1, "constant"),
            &json!({"beta_sweep": []}),
            0.5,
        );
        assert!(msg(empty).contains("no validations"));
        // one run, or two at one β
        let p = run_point(Path::new("r"), &config(0.1, "constant"), &a, 0.5).unwrap();
        assert!(order(vec![p.clone()]).is_err());
        let mut near = p.clone();
        near.beta *= 1.0 + 1e-5;
        let close = order(vec![p.clone(), near]).unwrap_err().to_string();
        assert!(close.contains("both trained"), "{close}");
        assert!(order(vec![p.clone(), p])
            .unwrap_err()
            .to_string()
            .contains("both trained"));
        assert_eq!(direction_weight("sinkhorn"), 2.0);
        assert_eq!(direction_weight("mse"), 0.5);
    }
}
