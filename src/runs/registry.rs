//! The model families, by the name their checkpoints record (`jetgen_model`): the one place
//! that names them. `jetgen train <family>`, `jetgen sample`, `jetgen eval --model`, the
//! benches and the C API's `jetgen_model_load` all dispatch through [`FAMILIES`].

use std::path::Path;

use clap::ArgMatches;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::{flow, fm, gan, library, vae};
use crate::runs::finish::RunReport;
use crate::runs::generator::Generator;
use crate::runs::progress::{StepInfo, TrainProgress};
use crate::runs::settings::{from_command_line, Settings};

/// One model family.
pub struct Family {
    /// Its name (`jetgen train <name>`, `jetgen_model` in checkpoints).
    pub name: &'static str,
    /// One line for `jetgen train --help`.
    pub about: &'static str,
    /// Adds the family's training options to a command.
    pub train_args: fn(clap::Command) -> clap::Command,
    /// Trains from parsed options (with `--config` applied), showing progress.
    pub train: fn(&ArgMatches) -> Result<RunReport>,
    /// Loads a checkpoint of this family.
    pub load: fn(&Path, Device) -> Result<Box<dyn Generator>>,
    /// The family's benchmark models (`jetgen bench generate`).
    pub bench_models: &'static [BenchModel],
}

/// A benchmark model of a family: what it is, for the bench table, and how to write its
/// (untrained) checkpoint.
pub struct BenchModel {
    pub name: &'static str,
    pub write: fn(&Path, Device) -> Result<()>,
}

/// Every family; the first is `jetgen train`'s default.
pub const FAMILIES: &[Family] = &[Family {
    name: flow::FAMILY,
    about: "A coupling normalising flow (RQS or affine; unconditional or conditioned on mass and multiplicity)",
    train_args: <flow::FlowSettings as clap::Args>::augment_args,
    train: |m| {
        train_from_matches::<flow::FlowSettings>(m, flow::FlowSettings::describe, |d, s, p| {
            flow::train_flow(d, s, p)
        })
    },
    load: |path, device| Ok(Box::new(flow::FlowGenerator::load(path, device)?)),
    bench_models: &[BenchModel {
        name: "10-layer RQS flow",
        write: flow::checkpoint::write_bench_checkpoint,
    }],
}, Family {
    name: library::FAMILY,
    about: "The library generator: the nearest training jet in mass/pT/multiplicity (k = 1), or an optimal-transport interpolation between the k nearest",
    train_args: <library::LibrarySettings as clap::Args>::augment_args,
    train: |m| {
        train_from_matches::<library::LibrarySettings>(
            m,
            library::LibrarySettings::describe,
            library::train_library,
        )
    },
    load: |path, _device| Ok(Box::new(library::LibraryGenerator::load(path)?)),
    bench_models: &[BenchModel {
        name: "k = 2 library of 20k jets",
        write: library::checkpoint::write_bench_checkpoint,
    }],
}, Family {
    name: gan::FAMILY,
    about: "A GAN on particle clouds: FC generator and critic with the LSGAN, WGAN-GP or CramerGAN loss",
    train_args: <gan::GanSettings as clap::Args>::augment_args,
    train: |m| {
        train_from_matches::<gan::GanSettings>(m, gan::GanSettings::describe, gan::train_gan)
    },
    load: |path, device| Ok(Box::new(gan::GanGenerator::load(path, device)?)),
    bench_models: &[
        BenchModel {
            name: "FC GAN generator (latent 128, 3×256)",
            write: gan::checkpoint::write_bench_checkpoint,
        },
        BenchModel {
            name: "MPGAN generator (args.txt: 2 MP layers, node 32, edge 96-160-192, node 256-256)",
            write: gan::particle_model::write_bench_checkpoint,
        },
    ],
}, Family {
    name: fm::FAMILY,
    about: "Flow matching with an EPiC (permutation-equivariant deep-sets) velocity network; optional mini-batch OT coupling and mass conditioning",
    // the EPiC-FM reference trains with a cosine schedule
    train_args: |c| {
        <fm::FmSettings as clap::Args>::augment_args(c)
            .mut_arg("lr_schedule", |a| a.default_value("cosine"))
    },
    train: |m| train_from_matches::<fm::FmSettings>(m, fm::FmSettings::describe, fm::train_fm),
    load: |path, device| Ok(Box::new(fm::FmGenerator::load(path, device)?)),
    bench_models: &[BenchModel {
        name: "EPiC-FM 6×128, global 10 (midpoint 10, NFE 20)",
        write: fm::write_bench_checkpoint,
    }],
}, Family {
    name: vae::FAMILY_VAE,
    about: "A jet VAE (MSE, Chamfer, Chamfer + jet pT/mass or Sinkhorn-EMD reconstruction; Cartesian or relative particles)",
    train_args: <vae::VaeSettings as clap::Args>::augment_args,
    train: |m| vae::train_from_matches(m, true),
    load: |path, device| Ok(Box::new(vae::VaeGenerator::load(path, device)?)),
    bench_models: &[BenchModel {
        name: "VAE 90-512-256-20",
        write: vae::write_bench_checkpoint,
    }],
}, Family {
    name: vae::FAMILY_AE,
    about: "A jet autoencoder (the VAE's networks without sampling; anomaly detection with `jetgen anomaly`)",
    train_args: <vae::VaeSettings as clap::Args>::augment_args,
    train: |m| vae::train_from_matches(m, false),
    load: |path, device| Ok(Box::new(vae::VaeGenerator::load(path, device)?)),
    bench_models: &[BenchModel {
        name: "VAE 90-512-256-20",
        write: vae::write_bench_checkpoint,
    }],
}];

/// The family called `name`.
pub fn family(name: &str) -> Result<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name).ok_or_else(|| {
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        Error::invalid(format!(
            "unknown model family '{name}' (available: {})",
            names.join(", ")
        ))
    })
}

/// The family a checkpoint records in its `jetgen_model` metadata.
pub fn family_of_checkpoint(path: &Path) -> Result<&'static Family> {
    let meta = crate::io::safetensors_metadata(path)?;
    let name = meta.get("jetgen_model").ok_or_else(|| {
        Error::file(
            path,
            "not a jetgen model checkpoint (no jetgen_model metadata)",
        )
    })?;
    family(name).map_err(|e| Error::file(path, e.to_string()))
}

/// Load any family's checkpoint (a run directory or its `checkpoint.safetensors`) onto
/// `device`, dispatching on the family it records, after the family-independent checks of
/// the shared validator (a jetgen checkpoint of that family, every weight finite; see
/// [`crate::runs::checkpoint`]) — the family's loader validates its sizes, shapes and
/// scales with the same validator.
pub fn load_generator(model: &Path, device: Device) -> Result<Box<dyn Generator>> {
    let ckpt = crate::runs::dir::checkpoint_of(model);
    let family = family_of_checkpoint(&ckpt)?;
    crate::runs::checkpoint::CheckpointFile::open(&ckpt, Some(family.name))?;
    (family.load)(&ckpt, device)
}

/// A family's training function: jets, settings, progress callback → the finished run.
pub type TrainFn<S> = fn(&JetNetData, &S, &mut dyn FnMut(&StepInfo)) -> Result<RunReport>;

/// `jetgen train` for a family with settings `S`: settings from the command line and
/// `--config` (validated before anything is read), the data, a progress bar, the run.
pub fn train_from_matches<S: Settings>(
    matches: &ArgMatches,
    describe: fn(&S, &JetNetData) -> String,
    train: TrainFn<S>,
) -> Result<RunReport> {
    let settings: S = from_command_line(matches)?;
    settings.validate()?;
    settings.run().device()?.ensure_available()?;
    let data = JetNetData::read(&settings.run().data_path())?;
    settings.run().validate_for_data(data.n_jets)?;
    if let Some(recorded) = settings
        .run()
        .config
        .as_deref()
        .and_then(crate::runs::settings::recorded_data_checksum)
    {
        let now = data.checksum();
        if recorded != now {
            eprintln!(
                "warning: the data differ from those of the run the config came from \
                 (checksum {now}, recorded {recorded})"
            );
        }
    }
    println!("{}", describe(&settings, &data));
    let bar = TrainProgress::new(settings.run().steps_for(data.n_jets * 7 / 10));
    let report = crate::on_thread_pool(|| train(&data, &settings, &mut |s| bar.observe(s)));
    bar.finish();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_dispatch_on_their_recorded_family() {
        let dir = std::env::temp_dir().join(format!("jetgen-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // a flow checkpoint loads as a flow Generator, from its file or its directory
        let ckpt = dir.join("checkpoint.safetensors");
        flow::checkpoint::write_bench_checkpoint(&ckpt, Device::Cpu).unwrap();
        let g = load_generator(&dir, Device::Cpu).unwrap();
        assert_eq!(
            (g.family(), g.variant().as_str(), g.particles()),
            ("flow", "vnf", 30)
        );
        assert_eq!(g.name(), "flow/vnf");
        assert!(!g.conditioning().mass && !g.conditioning().multiplicity);
        let jets = g.generate(3, 1).unwrap();
        assert_eq!((jets.n_jets, jets.n_particles), (3, 30));
        assert_eq!(
            jets,
            load_generator(&ckpt, Device::Cpu)
                .unwrap()
                .generate(3, 1)
                .unwrap()
        );
        assert!(g.generate_conditional(&Default::default(), 0).is_err());
        // a family nobody registered, and a safetensors file of no family: clean errors
        let t = crate::Tensor::from_slice(&[1.0f32], &[1], Device::Cpu).unwrap();
        let other = dir.join("other.safetensors");
        let meta = [("jetgen_model".to_string(), "no-such-family".to_string())].into();
        crate::nn::store::save_tensors(&other, &[("w".into(), t.clone())], &meta).unwrap();
        let e = load_generator(&other, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("unknown model family 'no-such-family'") && e.contains("flow"),
            "{e}"
        );
        crate::nn::store::save_tensors(&other, &[("w".into(), t)], &Default::default()).unwrap();
        let e = load_generator(&other, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no jetgen_model"), "{e}");
        for name in ["flow", "vae", "ae", "library", "gan", "fm"] {
            assert!(family(name).is_ok(), "{name} is registered");
        }
        assert!(family("nosuchfamily").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
