//! The whole JetNet evaluation suite in one call: W1M, W1P, W1EFP, FPD, KPD, COV, MMD between
//! a real and a generated sample, with the table physicists read and the JSON tools read.
//!
//! Values are in jetnet's raw units; [`EvalReport::table`] prints them in the papers' units
//! (W1M, W1P, FPD, KPD ×10³, W1EFP ×10⁵). For W1P and W1EFP `value` is the mean over the
//! features (as the papers quote it) and `error` combines the per-feature errors:
//! √(Σσ²)/k for the jetnet protocol (the error of that mean), ‖σ‖₂ for the MPGAN-era
//! protocol (what jetnet returned before 2023).

use std::time::Instant;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::{
    cov_mmd, fpd, fpd_kpd_features, kpd, normalise, w1efp, w1m, w1p, Bootstrap, CovMmdConfig,
    FpdConfig, KpdConfig, W1Result,
};

/// Which W1 bootstrap protocol to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// jetnet ≥ 2023: 5 batches × 50,000 jets.
    Jetnet,
    /// MPGAN paper (2021): 5 batches × 10,000 jets.
    Mpgan,
}

impl Protocol {
    /// Parses "jetnet" or "mpgan".
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "jetnet" => Ok(Protocol::Jetnet),
            "mpgan" => Ok(Protocol::Mpgan),
            _ => Err(Error::invalid(format!(
                "unknown protocol '{s}' (jetnet = 5 × 50,000, mpgan = 5 × 10,000)"
            ))),
        }
    }
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Jetnet => "jetnet",
            Protocol::Mpgan => "mpgan",
        }
    }
}

/// What to compute and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalConfig {
    pub protocol: Protocol,
    /// Seed of every random draw (W1 bootstrap, COV/MMD batches, FPD/KPD batches).
    pub seed: u64,
    /// Override the W1 bootstrap batch size (default: the protocol's).
    pub w1_batch_size: Option<usize>,
    /// Also compute FPD, KPD, COV and MMD (the slow part); W1 metrics are always computed.
    pub full: bool,
    /// Also compute FPND of the generated jets against jetnet's real jets of this class
    /// ('g', 'q' or 't'; JetNet-30 only; about 2.5 ms per jet on 2 cores).
    pub fpnd: Option<char>,
}

impl EvalConfig {
    /// The full suite with a protocol's defaults.
    pub fn new(protocol: Protocol, seed: u64) -> Self {
        EvalConfig {
            protocol,
            seed,
            w1_batch_size: None,
            full: true,
            fpnd: None,
        }
    }
}

/// A value with its error, in jetnet's raw units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    pub value: f64,
    pub error: f64,
}

impl From<W1Result> for Metric {
    fn from(r: W1Result) -> Self {
        Metric {
            value: r.mean,
            error: r.std,
        }
    }
}

/// Everything [`evaluate`] computed.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    pub protocol: Protocol,
    pub n_real: usize,
    pub n_generated: usize,
    pub w1m: Metric,
    /// Mean over (η_rel, φ_rel, pT_rel); per feature in `w1p_per_feature`.
    pub w1p: Metric,
    pub w1p_per_feature: [Metric; 3],
    /// Mean over the 5 EFPs; per EFP in `w1efp_per_feature`.
    pub w1efp: Metric,
    pub w1efp_per_feature: [Metric; 5],
    /// FPD, KPD, COV, MMD (None unless `full`). COV/MMD errors are the spread over batches
    /// (jetnet reports none).
    pub fpd: Option<Metric>,
    pub kpd: Option<Metric>,
    pub cov: Option<Metric>,
    pub mmd: Option<Metric>,
    /// FPND (a single number; jetnet gives no error) when asked for.
    pub fpnd: Option<f64>,
    /// Jets with no particle (every mask 0) that were left out, real and generated.
    pub empty_real: usize,
    pub empty_generated: usize,
    /// Things the reader of the numbers must know (left-out empty jets, samples too small
    /// for meaningful error bars), one sentence each.
    pub notes: Vec<String>,
    /// Wall-clock seconds per step and in total.
    pub timings: Vec<(&'static str, f64)>,
    pub seconds: f64,
}

fn combine(per: &[Metric], protocol: Protocol) -> Metric {
    let k = per.len() as f64;
    let norm = per.iter().map(|m| m.error * m.error).sum::<f64>().sqrt();
    Metric {
        value: per.iter().map(|m| m.value).sum::<f64>() / k,
        error: match protocol {
            Protocol::Jetnet => norm / k,
            Protocol::Mpgan => norm,
        },
    }
}

/// The jets of `data` with at least one particle, and how many were empty (all padding);
/// an error naming `what` when none is left.
fn without_empty_jets(data: &JetNetData, what: &str) -> Result<(Option<JetNetData>, usize)> {
    let keep = data.non_empty_jets();
    let empty = data.n_jets - keep.len();
    if keep.is_empty() {
        return Err(Error::invalid(format!(
            "every one of the {} {what} jets is empty (no particle with mask 1): nothing to evaluate",
            data.n_jets
        )));
    }
    Ok(match empty {
        0 => (None, 0),
        _ => (Some(data.select(&keep)?), empty),
    })
}

/// Runs the suite; `stage` is called with the name of each step before it starts.
///
/// The mask defines the particles (see [`JetNetData::apply_mask`]). Empty jets — all
/// padding, with no mass, no pT and no particle to compare — are left out of both samples
/// and counted in the report (`empty_real`, `empty_generated`, and a note); a sample with
/// no jet left is an error. A sample of a single jet is evaluated with a note that its
/// error bars are meaningless. Every number of the report is finite, or the call fails.
pub fn evaluate(
    real: &JetNetData,
    gen: &JetNetData,
    cfg: &EvalConfig,
    stage: &mut dyn FnMut(&str),
) -> Result<EvalReport> {
    let (real_kept, empty_real) = without_empty_jets(real, "real")?;
    let (gen_kept, empty_generated) = without_empty_jets(gen, "generated")?;
    let real = real_kept.as_ref().unwrap_or(real);
    let gen = gen_kept.as_ref().unwrap_or(gen);
    let mut notes = Vec::new();
    for (what, empty, left) in [
        ("real", empty_real, real.n_jets),
        ("generated", empty_generated, gen.n_jets),
    ] {
        if empty > 0 {
            notes.push(format!(
                "{empty} empty {what} jets (all padding) were left out; {left} evaluated"
            ));
        }
        if left < 2 {
            notes.push(format!(
                "only {left} {what} jet: the bootstrap error bars are meaningless"
            ));
        }
    }
    let mut report = evaluate_jets(real, gen, cfg, stage)?;
    report.empty_real = empty_real;
    report.empty_generated = empty_generated;
    report.notes = notes;
    report.check_finite()?;
    Ok(report)
}

/// [`evaluate`] of samples without empty jets.
fn evaluate_jets(
    real: &JetNetData,
    gen: &JetNetData,
    cfg: &EvalConfig,
    stage: &mut dyn FnMut(&str),
) -> Result<EvalReport> {
    let start = Instant::now();
    let mut timings = Vec::new();
    let timed = |name: &'static str, stage: &mut dyn FnMut(&str)| {
        stage(name);
        let t = Instant::now();
        move |timings: &mut Vec<(&'static str, f64)>| {
            timings.push((name, t.elapsed().as_secs_f64()))
        }
    };
    let mut b = match cfg.protocol {
        Protocol::Jetnet => Bootstrap::jetnet(cfg.seed),
        Protocol::Mpgan => Bootstrap::mpgan(cfg.seed),
    };
    if let Some(n) = cfg.w1_batch_size {
        b.batch_size = n;
    }
    let done = timed("W1M", stage);
    let m = w1m(real, gen, &b)?;
    done(&mut timings);
    let done = timed("W1P", stage);
    let p = w1p(real, gen, &b)?.map(Metric::from);
    done(&mut timings);
    // the full suite computes the 36 EFPs of FPD/KPD first and takes W1EFP's 5 from them
    let efps = match cfg.full {
        true => {
            let done = timed("EFPs d≤4", stage);
            let both = (fpd_kpd_features(real)?, fpd_kpd_features(gen)?);
            done(&mut timings);
            Some(both)
        }
        false => None,
    };
    let done = timed("W1EFP", stage);
    let e = match &efps {
        Some((fr, fg)) => {
            let cols = crate::metrics::efp::columns_in_d4_set();
            let five =
                |f: &crate::metrics::fpd_kpd::Features| -> Vec<[f64; crate::metrics::efp::N_EFP]> {
                    f.data
                        .chunks_exact(f.dim)
                        .map(|row| cols.map(|c| row[c]))
                        .collect()
                };
            crate::metrics::w1::w1efp_of(&five(fr), &five(fg), &b)?
        }
        None => w1efp(real, gen, &b)?,
    }
    .map(Metric::from);
    done(&mut timings);
    let (mut fpd_v, mut kpd_v, mut cov, mut mmd) = (None, None, None, None);
    if let Some((fr, fg)) = &efps {
        let (fr, fg) = normalise(fr, fg)?;
        let done = timed("FPD", stage);
        fpd_v = Some(fpd(&fr, &fg, &FpdConfig::jetnet(cfg.seed))?.into());
        done(&mut timings);
        let done = timed("KPD", stage);
        kpd_v = Some(kpd(&fr, &fg, &KpdConfig::jetnet(cfg.seed))?.into());
        done(&mut timings);
        let done = timed("COV/MMD", stage);
        let c = cov_mmd(real, gen, &CovMmdConfig::jetnet(cfg.seed))?;
        done(&mut timings);
        cov = Some(c.cov.into());
        mmd = Some(c.mmd.into());
    }
    let mut fpnd_v = None;
    if let Some(class) = cfg.fpnd {
        let done = timed("FPND", stage);
        fpnd_v = Some(crate::metrics::fpnd(gen, class)?);
        done(&mut timings);
    }
    Ok(EvalReport {
        protocol: cfg.protocol,
        n_real: real.n_jets,
        n_generated: gen.n_jets,
        w1m: m.into(),
        w1p: combine(&p, cfg.protocol),
        w1p_per_feature: p,
        w1efp: combine(&e, cfg.protocol),
        w1efp_per_feature: e,
        fpd: fpd_v,
        kpd: kpd_v,
        cov,
        mmd,
        fpnd: fpnd_v,
        empty_real: 0,
        empty_generated: 0,
        notes: Vec::new(),
        timings,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn json_metric(m: &Metric) -> serde_json::Value {
    serde_json::json!({"value": m.value, "error": m.error})
}

impl EvalReport {
    /// Every metric and error as (name, value) pairs, for checks.
    fn numbers(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let mut add = |name: &str, m: &Metric| {
            out.push((name.to_string(), m.value));
            out.push((format!("{name} error"), m.error));
        };
        add("W1M", &self.w1m);
        add("W1P", &self.w1p);
        for (k, m) in self.w1p_per_feature.iter().enumerate() {
            add(&format!("W1P feature {k}"), m);
        }
        add("W1EFP", &self.w1efp);
        for (k, m) in self.w1efp_per_feature.iter().enumerate() {
            add(&format!("W1EFP {k}"), m);
        }
        for (name, m) in [
            ("FPD", &self.fpd),
            ("KPD", &self.kpd),
            ("COV", &self.cov),
            ("MMD", &self.mmd),
        ] {
            if let Some(m) = m {
                add(name, m);
            }
        }
        if let Some(v) = self.fpnd {
            out.push(("FPND".into(), v));
        }
        out
    }

    /// An error naming the first metric that is NaN or infinite: such a number is never
    /// shown or written as a result.
    pub fn check_finite(&self) -> Result<()> {
        match self.numbers().into_iter().find(|(_, v)| !v.is_finite()) {
            Some((name, v)) => Err(Error::Numerical(format!(
                "{name} came out as {v}: the samples cannot be compared (degenerate jets?)"
            ))),
            None => Ok(()),
        }
    }

    /// JSON with keys w1m, w1p, w1efp (+ per_feature), fpd, kpd, cov, mmd (null when not
    /// computed), n_real, n_generated, protocol, seconds, timings — raw jetnet units.
    pub fn to_json(&self) -> serde_json::Value {
        let opt = |m: &Option<Metric>| {
            m.as_ref()
                .map(json_metric)
                .unwrap_or(serde_json::Value::Null)
        };
        let with_features = |m: &Metric, per: &[Metric]| {
            let mut v = json_metric(m);
            v["per_feature"] = per.iter().map(json_metric).collect();
            v
        };
        serde_json::json!({
            "w1m": json_metric(&self.w1m),
            "w1p": with_features(&self.w1p, &self.w1p_per_feature),
            "w1efp": with_features(&self.w1efp, &self.w1efp_per_feature),
            "fpd": opt(&self.fpd), "kpd": opt(&self.kpd), "cov": opt(&self.cov), "mmd": opt(&self.mmd),
            "fpnd": self.fpnd.map(|v| serde_json::json!({"value": v, "error": null})).unwrap_or(serde_json::Value::Null),
            "n_real": self.n_real, "n_generated": self.n_generated,
            "empty_real": self.empty_real, "empty_generated": self.empty_generated,
            "notes": self.notes,
            "protocol": self.protocol.name(), "seconds": self.seconds,
            "timings": self.timings.iter().map(|(k, v)| serde_json::json!({"step": k, "seconds": v})).collect::<Vec<_>>(),
        })
    }

    /// The metric table in the papers' units.
    pub fn table(&self) -> String {
        self.table_with_floor(None)
    }

    /// [`table`](Self::table) with two more columns when `floor` is given: the same metric
    /// for real jets against real jets of the same sizes (the statistical floor a perfect
    /// generator would reach) and the ratio value / floor.
    pub fn table_with_floor(&self, floor: Option<&EvalReport>) -> String {
        let mut s = format!("{:<22} {:>22}", "metric", "value ± error");
        if floor.is_some() {
            s += &format!("            {:>20}  {:>8}", "truth floor", "÷ floor");
        }
        s += "\n";
        let mut row = |name: &str, m: &Metric, floor_m: Option<&Metric>, scale: f64, unit: &str| {
            s += &format!(
                "{:<22} {:>10.3} ± {:<9.3} {unit:<10}",
                name,
                m.value * scale,
                m.error * scale
            );
            if let Some(f) = floor_m {
                // a floor compatible with 0 (KPD) has no meaningful ratio
                let ratio = if f.value > f.error {
                    format!("{:>7.1}×", m.value / f.value)
                } else {
                    format!("{:>8}", "–")
                };
                s += &format!(
                    " {:>9.3} ± {:<8.3}  {ratio}",
                    f.value * scale,
                    f.error * scale
                );
            }
            s = s.trim_end().to_string() + "\n";
        };
        row("W1M", &self.w1m, floor.map(|f| &f.w1m), 1e3, "×10³");
        for (k, f) in ["η_rel", "φ_rel", "pT_rel"].iter().enumerate() {
            let fl = floor.map(|r| &r.w1p_per_feature[k]);
            row(
                &format!("  W1P {f}"),
                &self.w1p_per_feature[k],
                fl,
                1e3,
                "×10³",
            );
        }
        row("W1P (mean)", &self.w1p, floor.map(|f| &f.w1p), 1e3, "×10³");
        row(
            "W1EFP (mean of 5)",
            &self.w1efp,
            floor.map(|f| &f.w1efp),
            1e5,
            "×10⁵",
        );
        let opt = |sel: fn(&EvalReport) -> &Option<Metric>| floor.and_then(|f| sel(f).as_ref());
        if let Some(m) = &self.fpd {
            row("FPD", m, opt(|r| &r.fpd), 1e3, "×10³");
        }
        if let Some(m) = &self.kpd {
            row("KPD", m, opt(|r| &r.kpd), 1e3, "×10³");
        }
        if let Some(m) = &self.cov {
            row("COV", m, opt(|r| &r.cov), 1.0, "(↑ better)");
        }
        if let Some(m) = &self.mmd {
            row("MMD", m, opt(|r| &r.mmd), 1.0, "");
        }
        if let Some(v) = self.fpnd {
            s += &format!("{:<22} {:>10.3}   (no error, as jetnet)\n", "FPND", v);
        }
        s
    }
}
