//! Run settings with one source: each family's settings are one struct that derives clap's
//! `Args` (the command line) and serde (the `--config` file and the run's `config.json`),
//! so the three cannot drift apart. The defaults are the clap attributes, `Default`
//! included.
//!
//! Precedence: an option given on the command line > the `--config` file > the default.
//! Unknown keys in a config file are errors naming the nearest valid key.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::runs::schedule::LrSchedule;
use crate::runs::split::Split;

/// A JetNet jet class (selects `<class>.hdf5` next to `--data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JetClass {
    /// Gluon jets.
    G,
    /// Light-quark jets.
    Q,
    /// Top-quark jets.
    T,
}

/// The settings every family's training run shares: data, output, device, seed, the
/// optimisation loop and the end-of-run evaluation.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct RunSettings {
    /// Jets to train on (JetNet layout, .hdf5 or .npy pair); builtin:g (the default) and
    /// builtin:t are the 2,000-jet samples built into jetgen
    #[arg(long, default_value = crate::data::builtin::DEFAULT_DATA)]
    pub data: PathBuf,
    /// g, q or t: use <directory of --data>/<class>.hdf5
    #[arg(long, value_enum)]
    pub class: Option<JetClass>,
    /// Run directory [default: runs/<family>, or runs/<family>-2, -3, … when that already
    /// holds a run]; an existing run given here is replaced only with --overwrite
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seed of every random choice (split, initialisation, batches, generation)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the 70/30 train/validation split alone [default: --seed]: runs that differ in
    /// --seed but share --split-seed train on the same jets and hold out the same ones (the
    /// members of an ensemble that `jetgen anomaly` scores together)
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// Optimisation steps
    #[arg(long, default_value_t = 1500)]
    pub steps: usize,
    /// Passes over the training split (replaces --steps)
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Jets per step (drawn with replacement from the training split)
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Learning rate
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// constant, or cosine (from --lr down to 0 at the last step)
    #[arg(long, value_enum, default_value_t = LrSchedule::Constant)]
    pub lr_schedule: LrSchedule,
    /// AdamW decoupled weight decay
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Maximum global gradient norm
    #[arg(long, default_value_t = 5.0)]
    pub clip: f64,
    /// Validate every this many steps
    #[arg(long, default_value_t = 100)]
    pub val_every: usize,
    /// Wall-clock budget in minutes: the first step that ends past it is the last (it is
    /// validated, and the run finishes as if --steps had ended there); none by default
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Early stopping: validations without improvement before stopping
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Jets generated for the final evaluation against the validation split (at most its
    /// size)
    #[arg(long, default_value_t = 2000)]
    pub generate: usize,
    /// Only W1M/W1P/W1EFP at the end (skip FPD, KPD, COV and MMD)
    #[arg(long)]
    pub quick_eval: bool,
    /// Write the loss curve and real-vs-generated histograms into <out>/plots
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub plots: bool,
    /// JSON file of settings (option names as keys, '_' for '-'; a run's config.json works
    /// too); options given on the command line win
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Replace the run already in --out (its files are removed first)
    #[arg(long)]
    #[serde(skip)]
    pub overwrite: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        defaults()
    }
}

/// Largest accepted size of a step's batch and of the generated sample.
pub const MAX_BATCH: usize = 1 << 20;

impl RunSettings {
    /// The data file: `--data`, or `<class>.hdf5` beside it with `--class` (the built-in
    /// sample of that class for a built-in `--data`).
    pub fn data_path(&self) -> PathBuf {
        match self.class {
            None => self.data.clone(),
            Some(c) => {
                let name = match c {
                    JetClass::G => "g",
                    JetClass::Q => "q",
                    JetClass::T => "t",
                };
                if crate::data::builtin::builtin_name(&self.data).is_some() {
                    return PathBuf::from(format!(
                        "{}{name}",
                        crate::data::builtin::BUILTIN_PREFIX
                    ));
                }
                self.data
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(format!("{name}.hdf5"))
            }
        }
    }

    /// The run directory: `--out`, or `runs/<family>`.
    pub fn out_dir(&self, family: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(family))
    }

    /// The run directory a new run writes: `--out` when given; else the first of
    /// `runs/<family>`, `runs/<family>-2`, `runs/<family>-3`, … that holds no run yet.
    pub fn new_out_dir(&self, family: &str) -> PathBuf {
        if let Some(out) = &self.out {
            return out.clone();
        }
        let base = self.out_dir(family);
        (1..)
            .map(|k| match k {
                1 => base.clone(),
                _ => PathBuf::from(format!("{}-{k}", base.display())),
            })
            .find(|p| !crate::runs::RunDir::new(p).holds_a_run())
            .unwrap_or(base)
    }

    /// The run's 70/30 train/validation split of `n_jets` jets: drawn first from `rng` (the
    /// generator of `--seed`, which the run goes on using), or from `--split-seed` alone.
    pub fn split(&self, n_jets: usize, rng: &mut Rng) -> Result<Split> {
        match self.split_seed {
            None => Split::new(n_jets, 0.7, rng),
            Some(s) => Split::new(n_jets, 0.7, &mut Rng::new(s)),
        }
    }

    /// The seed a run's split was drawn with, from its `config.json` (`settings.split_seed`,
    /// else `settings.seed`, as [`RunSettings::split`] drew it); None when neither is there.
    pub fn split_seed_of(config: &Value) -> Option<u64> {
        let s = &config["settings"];
        s["split_seed"].as_u64().or_else(|| s["seed"].as_u64())
    }

    /// The device to train on (parsed, not yet checked for availability).
    pub fn device(&self) -> Result<Device> {
        Device::parse(&self.device)
    }

    /// Steps of the run for a training split of `n_train` jets: `--steps`, or with
    /// `--epochs E` ⌈E·n_train / batch⌉.
    pub fn steps_for(&self, n_train: usize) -> usize {
        match self.epochs {
            Some(e) => (e.saturating_mul(n_train))
                .div_ceil(self.batch.max(1))
                .max(1),
            None => self.steps,
        }
    }

    /// Jets in the 70 % training split of `n_jets` jets (as [`crate::runs::split::Split`]
    /// cuts it).
    pub fn training_split_size(n_jets: usize) -> usize {
        ((0.7 * n_jets as f64 + 1e-9).floor() as usize).min(n_jets)
    }

    /// The checks that need the data (read, nothing written yet): at least 10 jets, and a
    /// batch no larger than the training split.
    pub fn validate_for_data(&self, n_jets: usize) -> Result<()> {
        if n_jets < 10 {
            return Err(Error::invalid(format!(
                "training needs ≥ 10 jets, got {n_jets}"
            )));
        }
        let n_train = Self::training_split_size(n_jets);
        if self.batch > n_train {
            return Err(Error::invalid(format!(
                "--batch {} is larger than the training split ({n_train} jets)",
                self.batch
            )));
        }
        Ok(())
    }

    /// Every value in range, before anything is read or written.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid(msg));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr must be positive and finite, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "--weight-decay must be ≥ 0 and finite, got {}",
                self.weight_decay
            ));
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad(format!(
                "--clip must be positive and finite, got {}",
                self.clip
            ));
        }
        for (name, value, max) in [
            ("--steps", self.steps, usize::MAX / 2),
            ("--batch", self.batch, MAX_BATCH),
            ("--val-every", self.val_every, usize::MAX / 2),
            ("--patience", self.patience, usize::MAX / 2),
            ("--generate", self.generate, MAX_BATCH),
            ("--epochs", self.epochs.unwrap_or(1), 1 << 32),
        ] {
            if value == 0 || value > max {
                return bad(format!("{name} must be in 1..={max}, got {value}"));
            }
        }
        if let Some(t) = self.time_limit {
            if !(t.is_finite() && t > 0.0) {
                return bad(format!(
                    "--time-limit must be a positive number of minutes, got {t}"
                ));
            }
        }
        self.device()?;
        Ok(())
    }
}

/// A family's settings: clap `Args` + serde over the same fields, with the shared
/// [`RunSettings`] flattened in.
pub trait Settings:
    Args + FromArgMatches + Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync
{
    /// The shared part.
    fn run(&self) -> &RunSettings;
    /// The shared part, to change.
    fn run_mut(&mut self) -> &mut RunSettings;
    /// Every option in range (called before any file is read or written).
    fn validate(&self) -> Result<()>;
}

/// The defaults of a settings struct, from its clap attributes (an empty command line).
pub fn defaults<S: Args + FromArgMatches>() -> S {
    let cmd = S::augment_args(clap::Command::new("defaults").no_binary_name(true));
    let matches = cmd
        .try_get_matches_from(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("settings have a required option without default: {e}"));
    S::from_arg_matches(&matches).unwrap_or_else(|e| panic!("settings defaults do not parse: {e}"))
}

/// The settings of a command line: its options, then for every option *not given on the
/// command line* the value from `--config` when it names one, else the default.
pub fn from_command_line<S: Settings>(matches: &ArgMatches) -> Result<S> {
    let cli = S::from_arg_matches(matches).map_err(|e| Error::invalid(e.to_string()))?;
    let Some(path) = cli.run().config.clone() else {
        return Ok(cli);
    };
    let file = read_config(&path)?;
    let given = |key: &str| matches.value_source(key) == Some(ValueSource::CommandLine);
    let mut merged = merge(&cli, &file, given, &path)?;
    // `config` and `overwrite` are not settings of the run (never serialised): keep them
    merged.run_mut().config = Some(path);
    merged.run_mut().overwrite = cli.run().overwrite;
    Ok(merged)
}

/// `base` with every key of `file` for which `explicit(key)` is false replaced by the
/// file's value. Unknown keys and values of the wrong type are errors naming the key.
pub fn merge<S: Settings>(
    base: &S,
    file: &Map<String, Value>,
    explicit: impl Fn(&str) -> bool,
    source: &Path,
) -> Result<S> {
    let Value::Object(mut map) = to_json(base)? else {
        return Err(Error::invalid("settings do not serialise to a JSON object"));
    };
    let known: Vec<String> = map.keys().cloned().collect();
    for key in file.keys() {
        if !known.contains(key) {
            return Err(Error::file(
                source,
                format!(
                    "unknown setting '{key}' (did you mean '{}'?)",
                    nearest(key, &known)
                ),
            ));
        }
    }
    // every value of the file must be valid, also where the command line overrides it
    for (key, value) in file {
        let mut one = map.clone();
        one.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<S>(Value::Object(one)) {
            return Err(Error::file(source, format!("setting '{key}': {e}")));
        }
    }
    for (key, value) in file {
        if !explicit(key) {
            map.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value::<S>(Value::Object(map))
        .map_err(|e| Error::file(source, format!("bad settings: {e}")))
}

/// The settings as a flat JSON object (what `config.json` records under "settings").
pub fn to_json<S: Serialize>(s: &S) -> Result<Value> {
    serde_json::to_value(s).map_err(|e| Error::invalid(format!("cannot encode settings: {e}")))
}

/// The flat settings object of a config file: a plain object of settings, or a run's
/// `config.json` (its "settings" entry; the older layout with "train", "flow" and "variant"
/// entries is understood too). Keys may use '-' for '_'.
pub fn read_config(path: &Path) -> Result<Map<String, Value>> {
    let v = crate::io::read_json(path)?;
    let Value::Object(obj) = v else {
        return Err(Error::file(path, "expected a JSON object of settings"));
    };
    let flat = if let Some(Value::Object(s)) = obj.get("settings") {
        s.clone()
    } else if matches!(obj.get("train"), Some(Value::Object(_)))
        && matches!(obj.get("flow"), Some(Value::Object(_)))
    {
        legacy_run_config(&obj)
    } else {
        obj
    };
    Ok(flat
        .into_iter()
        .map(|(k, v)| (k.replace('-', "_"), v))
        .collect())
}

/// The data checksum a run's `config.json` recorded ("data" → "checksum"), if `path` is one.
pub fn recorded_data_checksum(path: &Path) -> Option<String> {
    let v = crate::io::read_json(path).ok()?;
    v.get("data")?.get("checksum")?.as_str().map(str::to_string)
}

/// The settings of a `config.json` written before settings had one source (jetgen ≤ 0.1:
/// "train" and "flow" sections plus "variant").
fn legacy_run_config(obj: &Map<String, Value>) -> Map<String, Value> {
    let mut flat = Map::new();
    if let Some(Value::Object(train)) = obj.get("train") {
        flat.extend(train.clone());
    }
    if let Some(v) = obj.get("variant") {
        flat.insert("variant".into(), v.clone());
    }
    if let Some(Value::Object(flow)) = obj.get("flow") {
        for key in ["layers", "hidden", "blocks", "dropout"] {
            if let Some(v) = flow.get(key) {
                flat.insert(key.into(), v.clone());
            }
        }
        match flow.get("masks") {
            Some(Value::Object(m)) => {
                if let Some(k) = m.get("kind") {
                    flat.insert("masks".into(), k.clone());
                }
            }
            Some(m) => {
                flat.insert("masks".into(), m.clone());
            }
            None => {}
        }
        if let Some(Value::Object(c)) = flow.get("coupling") {
            for (k, v) in c {
                let key = if k == "kind" { "coupling" } else { k.as_str() };
                flat.insert(key.into(), v.clone());
            }
        }
    }
    flat
}

/// The entry of `known` nearest to `key` by edit distance.
pub fn nearest<'a>(key: &str, known: &'a [String]) -> &'a str {
    known
        .iter()
        .min_by_key(|k| edit_distance(key, k))
        .map(String::as_str)
        .unwrap_or("")
}

/// Levenshtein distance (insertions, deletions, substitutions) between two strings.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("lr", "lr"), 0);
        let known: Vec<String> = ["lr", "layers", "quick_eval"].map(String::from).into();
        assert_eq!(nearest("quick_evaluation", &known), "quick_eval");
        assert_eq!(nearest("layer", &known), "layers");
    }

    /// Without --split-seed the split is the first draw of the run's generator; with it,
    /// runs of different seeds hold out the same jets, and config.json names the seed used.
    #[test]
    fn split_seed_fixes_the_split_alone() {
        let mut a = RunSettings::default();
        let by_seed = a.split(100, &mut Rng::new(7)).unwrap();
        assert_eq!(by_seed, Split::new(100, 0.7, &mut Rng::new(7)).unwrap());
        a.split_seed = Some(3);
        let fixed = a.split(100, &mut Rng::new(7)).unwrap();
        assert_eq!(fixed, a.split(100, &mut Rng::new(8)).unwrap());
        assert_ne!(fixed, by_seed);
        let cfg = serde_json::json!({"settings": {"seed": 7, "split_seed": 3}});
        assert_eq!(RunSettings::split_seed_of(&cfg), Some(3));
        let cfg = serde_json::json!({"settings": {"seed": 7, "split_seed": null}});
        assert_eq!(RunSettings::split_seed_of(&cfg), Some(7));
    }

    #[test]
    fn defaults_come_from_the_clap_attributes() {
        let d = RunSettings::default();
        assert_eq!(
            (d.steps, d.batch, d.patience, d.val_every),
            (1500, 256, 5, 100)
        );
        assert!(d.plots && !d.quick_eval && d.config.is_none());
        assert_eq!(d.out_dir("flow"), Path::new("runs/flow"));
        d.validate().unwrap();
        let bad = RunSettings {
            lr: -1.0,
            ..RunSettings::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("--lr"));
        let bad = RunSettings {
            generate: 0,
            ..RunSettings::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--generate"));
    }
}
