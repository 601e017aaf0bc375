//! Seeded splits of a data set into consecutive parts (train / validation / test): one
//! shuffle ([`Rng::shuffle`]) and cuts at the cumulative fractions.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Split `0..n` into parts with the given `fractions` (each ≥ 0, summing to 1, e.g. the
/// MPGAN/flow papers' 0.7/0.3 or jetnet's 0.7/0.15/0.15): the indices are shuffled with
/// `rng`, then cut at ⌊n·(f₁ + … + f_k)⌋, so the last part takes the rounding remainder and
/// a 70 % first part of n jets has ⌊7n/10⌋ of them.
pub fn split_indices(n: usize, fractions: &[f64], rng: &mut Rng) -> Result<Vec<Vec<usize>>> {
    let total: f64 = fractions.iter().sum();
    if fractions.is_empty()
        || fractions.iter().any(|f| !(*f >= 0.0 && f.is_finite()))
        || (total - 1.0).abs() > 1e-9
    {
        return Err(Error::invalid(format!(
            "split fractions must be ≥ 0 and sum to 1, got {fractions:?}"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut parts = Vec::with_capacity(fractions.len());
    let (mut start, mut cumulative) = (0, 0.0);
    for (k, f) in fractions.iter().enumerate() {
        cumulative += f;
        let end = if k + 1 == fractions.len() {
            n
        } else {
            // the small slack keeps 0.7·2000 = 1399.9999… at 1400
            ((cumulative * n as f64 + 1e-9).floor() as usize).clamp(start, n)
        };
        parts.push(order[start..end].to_vec());
        start = end;
    }
    Ok(parts)
}

/// A train/validation split of `n` items with `train_fraction` in the first part.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

impl Split {
    /// The seeded split (see [`split_indices`]); both parts must be non-empty.
    pub fn new(n: usize, train_fraction: f64, rng: &mut Rng) -> Result<Split> {
        let mut parts = split_indices(n, &[train_fraction, 1.0 - train_fraction], rng)?;
        let validation = parts.pop().unwrap_or_default();
        let train = parts.pop().unwrap_or_default();
        if train.is_empty() || validation.is_empty() {
            return Err(Error::invalid(format!(
                "{n} jets do not split into non-empty training and validation parts"
            )));
        }
        Ok(Split { train, validation })
    }
}

/// Which part of a run's split [`run_split`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Train,
    Validation,
}

/// The jets of one part of the seeded 70/30 split a JetNet-layout run trained with (flow,
/// fm, gan, library): read from the data file its `config.json` names, checked against the
/// recorded checksum and size, and split exactly as training split it
/// (`Split::new(n, 0.7, Rng::new(seed))`, the first draw of the run's seed, or of its
/// `--split-seed`). How
/// `jetgen eval --real run:DIR` evaluates against a run's own validation jets.
pub fn run_split(dir: &std::path::Path, part: Part) -> Result<crate::data::JetNetData> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::file(&config_path, format!("cannot read the run's config: {e}")))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&config_path, format!("not JSON: {e}")))?;
    let data = &config["data"];
    let field = |v: &serde_json::Value, what: &str| -> Result<String> {
        v.as_str().map(str::to_string).ok_or_else(|| {
            Error::file(
                &config_path,
                format!("no {what} recorded (not a JetNet-layout run?)"),
            )
        })
    };
    let split = field(&data["split"], "data.split")?;
    if split != "70/30 seeded" {
        return Err(Error::file(
            &config_path,
            format!("split \"{split}\" is not the seeded 70/30 split this can rebuild"),
        ));
    }
    let path = std::path::PathBuf::from(field(&data["path"], "data.path")?);
    let checksum = field(&data["checksum"], "data.checksum")?;
    let seed = crate::runs::settings::RunSettings::split_seed_of(&config)
        .ok_or_else(|| Error::file(&config_path, "no settings.seed recorded"))?;
    let jets = crate::data::JetNetData::read(&path)?;
    if jets.checksum() != checksum {
        return Err(Error::file(
            &path,
            format!(
                "its jets changed since the run in {} trained on them (checksum {} ≠ {checksum})",
                dir.display(),
                jets.checksum()
            ),
        ));
    }
    let s = Split::new(jets.n_jets, 0.7, &mut Rng::new(seed))?;
    jets.select(match part {
        Part::Train => &s.train,
        Part::Validation => &s.validation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_seeded_disjoint_and_cut_at_the_floor() {
        let s = Split::new(2000, 0.7, &mut Rng::new(0)).unwrap();
        assert_eq!((s.train.len(), s.validation.len()), (1400, 600));
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..2000).collect::<Vec<_>>());
        assert_eq!(s, Split::new(2000, 0.7, &mut Rng::new(0)).unwrap());
        assert_ne!(s, Split::new(2000, 0.7, &mut Rng::new(1)).unwrap());
        // ⌊7n/10⌋ for every n, as the integer form n·7/10
        for n in 2..200 {
            let s = Split::new(n.max(4), 0.7, &mut Rng::new(3)).unwrap();
            assert_eq!(s.train.len(), n.max(4) * 7 / 10);
        }
        assert!(Split::new(1, 0.7, &mut Rng::new(0)).is_err());
        assert!(split_indices(10, &[0.5, f64::NAN], &mut Rng::new(0)).is_err());
    }

    #[test]
    fn the_shuffle_is_the_classic_fisher_yates() {
        // the loop every split and random mask used before Rng::shuffle existed
        let mut rng = Rng::new(9);
        let mut want: Vec<usize> = (0..50).collect();
        for i in (1..want.len()).rev() {
            want.swap(i, rng.below(i + 1));
        }
        let mut got: Vec<usize> = (0..50).collect();
        Rng::new(9).shuffle(&mut got);
        assert_eq!(got, want);
    }
}
