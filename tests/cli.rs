//! The `jetgen` binary as a user runs it: a tiny `train`, then `sample` and `eval` from its
//! run directory, `--config` round trips (command-line options win, unknown keys are
//! errors), `--class`, and bad arguments — a clear message and a non-zero exit, never a
//! panic. Every run is tiny (a few steps of a 2-layer flow), so the file takes seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::sample_dir;

fn jetgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetgen"))
        .args(args)
        .output()
        .expect("the jetgen binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jetgen-cli-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample_file() -> String {
    sample_dir().join("g.hdf5").display().to_string()
}

/// The options of a tiny training run (seconds).
fn tiny(out: &Path) -> Vec<String> {
    [
        "train",
        "--steps",
        "4",
        "--batch",
        "16",
        "--layers",
        "2",
        "--hidden",
        "8",
        "--blocks",
        "1",
        "--val-every",
        "2",
        "--generate",
        "40",
        "--quick-eval",
        "--plots",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--data".into(),
        sample_file(),
        "--out".into(),
        out.display().to_string(),
    ])
    .collect()
}

fn run_tiny(out: &Path, extra: &[&str]) -> Output {
    let mut args = tiny(out);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    jetgen(&refs)
}

fn settings_of(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["settings"].clone()
}

/// One tiny trained run shared by the tests that only read it.
fn trained() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("trained").join("run");
        let out = run_tiny(&run, &[]);
        assert!(out.status.success(), "train failed:\n{}", text(&out));
        run
    })
}

/// A failed command: non-zero exit, no panic, and a message containing `want`.
fn assert_clean_failure(out: &Output, want: &str) {
    let all = text(out);
    assert!(
        !out.status.success(),
        "expected a failure, got success:\n{all}"
    );
    assert_ne!(out.status.code(), Some(101), "panicked:\n{all}");
    assert!(!all.contains("panicked"), "panic message:\n{all}");
    assert!(all.contains(want), "message lacks '{want}':\n{all}");
}

#[test]
fn train_writes_a_complete_run_directory() {
    let run = trained();
    for f in [
        "config.json",
        "checkpoint.safetensors",
        "train_log.csv",
        "generated.hdf5",
        "metrics.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let s = settings_of(run);
    assert_eq!(
        (s["steps"].as_u64(), s["layers"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(s["quick_eval"], true);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["family"], "flow");
    let log = std::fs::read_to_string(run.join("train_log.csv")).unwrap();
    assert!(
        log.starts_with("step,train_nll,val_nll,jets_per_s"),
        "{log}"
    );
}

#[test]
fn sample_and_eval_from_a_trained_run() {
    let run = trained();
    let dir = scratch("sample");
    let gen = dir.join("gen.hdf5");
    let out = jetgen(&[
        "sample",
        "--model",
        run.to_str().unwrap(),
        "--n",
        "30",
        "--seed",
        "3",
        "--out",
        gen.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("wrote 30 jets"), "{}", text(&out));
    // a second sample for a small real set, then the full suite between the two
    let real = dir.join("real.hdf5");
    let out = jetgen(&[
        "sample",
        "--model",
        run.to_str().unwrap(),
        "--n",
        "30",
        "--seed",
        "4",
        "--out",
        real.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json = dir.join("eval.json");
    let out = jetgen(&[
        "eval",
        "--gen",
        gen.to_str().unwrap(),
        "--real",
        real.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in ["w1m", "w1p", "w1efp", "fpd", "kpd", "cov", "mmd"] {
        assert!(v[key]["value"].is_number(), "{key}: {}", v[key]);
        assert!(v[key].get("error").is_some(), "{key} has no error");
    }
    assert_eq!(v["w1p"]["per_feature"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        (v["n_real"].as_u64(), v["n_generated"].as_u64()),
        (Some(30), Some(30))
    );
    for key in ["protocol", "seconds", "real", "generated", "seed"] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    // eval straight from the model, through its Generator
    let out = jetgen(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--n",
        "25",
        "--real",
        real.to_str().unwrap(),
        "--quick",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("25 jets from"), "{}", text(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_against_a_runs_own_validation_and_training_splits() {
    // run:DIR rebuilds the seeded 70/30 split the run trained with: 600 of the sample's
    // 2,000 jets for --real, the other 1,400 for --train (memorisation)
    let run = trained();
    let arg = format!("run:{}", run.display());
    let out = jetgen(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--n",
        "25",
        "--real",
        &arg,
        "--train",
        &arg,
        "--quick",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(600 jets"), "{}", text(&out));
    // the two parts are disjoint and together the whole file
    let split = |part| jetgen::runs::split::run_split(run, part).unwrap();
    let (val, train) = (
        split(jetgen::runs::split::Part::Validation),
        split(jetgen::runs::split::Part::Train),
    );
    assert_eq!((val.n_jets, train.n_jets), (600, 1400));
    // a run whose data changed since, and a directory that holds no run, are refused
    let dir = scratch("run-split");
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v["data"]["checksum"] = "fnv1a64:0000000000000000".into();
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let gen = run.join("generated.hdf5");
    let eval_against = |real_run: &Path| {
        let real = format!("run:{}", real_run.display());
        jetgen(&[
            "eval",
            "--gen",
            gen.to_str().unwrap(),
            "--real",
            &real,
            "--quick",
        ])
    };
    assert_clean_failure(&eval_against(&dir), "changed since the run");
    assert_clean_failure(
        &eval_against(&dir.join("nothing")),
        "cannot read the run's config",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_round_trip_repeats_a_run() {
    let first = trained();
    let dir = scratch("roundtrip");
    let second = dir.join("again");
    let out = jetgen(&[
        "train",
        "--config",
        first.join("config.json").to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let (mut a, mut b) = (settings_of(first), settings_of(&second));
    a["out"] = serde_json::Value::Null;
    b["out"] = serde_json::Value::Null;
    assert_eq!(a, b, "the repeated run has the same settings");
    // same seed, same settings: the same jets
    let g1 = std::fs::read(first.join("generated.hdf5")).unwrap();
    let g2 = std::fs::read(second.join("generated.hdf5")).unwrap();
    assert_eq!(
        g1, g2,
        "same settings and seed give the same generated jets"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn command_line_options_win_over_the_config_file() {
    let dir = scratch("precedence");
    let config = dir.join("settings.json");
    std::fs::write(
        &config,
        r#"{"layers": 3, "patience": 2, "lr-schedule": "cosine"}"#,
    )
    .unwrap();
    let run = dir.join("run");
    // --layers 2 on the command line (tiny() gives it), --patience 5 equal to its default
    let out = run_tiny(
        &run,
        &["--config", config.to_str().unwrap(), "--patience", "5"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = settings_of(&run);
    assert_eq!(s["layers"], 2, "command line beats the file");
    assert_eq!(s["patience"], 5, "an explicit default still beats the file");
    assert_eq!(s["lr_schedule"], "cosine", "the file beats the default");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_or_mistyped_config_keys_are_errors() {
    let dir = scratch("badconfig");
    for (body, want) in [
        (r#"{"quick_evaluation": true}"#, "did you mean 'quick_eval'"),
        (r#"{"layer": 3}"#, "did you mean 'layers'"),
        (r#"{"layers": "three"}"#, "setting 'layers'"),
        (r#"{"variant": "gan"}"#, "setting 'variant'"),
        (r#"[1, 2]"#, "JSON object"),
        ("{not json", "not valid JSON"),
    ] {
        let config = dir.join("c.json");
        std::fs::write(&config, body).unwrap();
        let run = dir.join("never");
        let out = run_tiny(&run, &["--config", config.to_str().unwrap()]);
        assert_clean_failure(&out, want);
        assert!(!run.exists(), "a refused run leaves no directory ({body})");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn class_picks_the_file_next_to_data() {
    let dir = scratch("class");
    let run = dir.join("run");
    let out = run_tiny(&run, &["--class", "t"]);
    assert!(out.status.success(), "{}", text(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert!(
        config["data"]["path"].as_str().unwrap().ends_with("t.hdf5"),
        "{}",
        config["data"]
    );
    assert_eq!(config["settings"]["class"], "t");
    assert_clean_failure(&run_tiny(&dir.join("x"), &["--class", "x"]), "--class");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_arguments_fail_cleanly() {
    let dir = scratch("badargs");
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    for (extra, want) in [
        (&["--bins", "0"][..], "bins"),
        (&["--bins", "100000"][..], "bins"),
        (&["--hidden", "0"][..], "hidden"),
        (&["--lr", "-1"][..], "--lr"),
        (&["--lr", "nan"][..], "--lr"),
        (&["--generate", "0"][..], "--generate"),
        (&["--epochs", "0"][..], "--epochs"),
        (&["--batch", "5000"][..], "larger than the training split"),
        (&["--dropout", "1.5"][..], "dropout"),
        (&["--steps", "many"][..], "--steps"),
        (&["--variant", "gan"][..], "--variant"),
        (&["--device", "tpu"][..], "tpu"),
    ] {
        // every one of these is refused before anything is read or written
        let sample = sample_file();
        let mut args = vec!["train", "--data", &sample, "--out", run_s];
        args.extend(extra);
        assert_clean_failure(&jetgen(&args), want);
        assert!(
            !run.exists(),
            "a refused run leaves no directory ({extra:?})"
        );
    }
    for (args, want) in [
        (&["train", "nosuchfamily"][..], "nosuchfamily"),
        (&["frobnicate"][..], "frobnicate"),
        (
            &["sample", "--model", "/nonexistent/run"][..],
            "/nonexistent/run",
        ),
        (&["sample", "--model", run_s, "--n", "0"][..], "--n"),
        (
            &[
                "eval",
                "--real",
                "/nonexistent.hdf5",
                "--gen",
                "/nonexistent.hdf5",
            ][..],
            "nonexistent",
        ),
        (&["eval"][..], "--gen"),
        (
            &["bench", "nothing", "--iters", "1"][..],
            "unknown bench suite",
        ),
        // --score names a reconstruction loss, which --by latent does not use
        (
            &[
                "anomaly",
                "--model",
                "/nonexistent/run",
                "--background",
                "/nonexistent.hdf5",
                "--signal",
                "/nonexistent.hdf5",
                "--score",
                "mse",
                "--by",
                "latent",
            ][..],
            "--by latent",
        ),
        (
            &["dimensionality", "/nonexistent/run", "/nonexistent/run2"][..],
            "/nonexistent/run/config.json",
        ),
        (
            &["dimensionality", run_s, run_s, "--tail", "0"][..],
            "--tail",
        ),
    ] {
        assert_clean_failure(&jetgen(args), want);
    }
    // outputs that are inputs: refused before anything is written
    let trained = trained();
    let flow = trained.to_str().unwrap();
    assert_clean_failure(&jetgen(&["dimensionality", flow, flow]), "not a VAE");
    let ckpt = trained.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let spelled = trained.join(".").join("checkpoint.safetensors");
    assert_clean_failure(
        &jetgen(&[
            "sample",
            "--model",
            trained.to_str().unwrap(),
            "--out",
            spelled.to_str().unwrap(),
        ]),
        "is also an input",
    );
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "the model survives");
    let gen = trained.join("generated.hdf5");
    assert_clean_failure(
        &jetgen(&[
            "eval",
            "--gen",
            gen.to_str().unwrap(),
            "--real",
            gen.to_str().unwrap(),
            "--json",
            gen.to_str().unwrap(),
        ]),
        "is also an input",
    );
    // a checkpoint-shaped file of another kind
    let not_model = common::vectors_dir().join("mlp_adam/init.safetensors");
    assert_clean_failure(
        &jetgen(&[
            "sample",
            "--model",
            not_model.to_str().unwrap(),
            "--out",
            run_s,
        ]),
        "jetgen_model",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_and_version_succeed() {
    let out = jetgen(&["train", "--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for option in [
        "--variant",
        "--config",
        "--lr-schedule",
        "--quick-eval",
        "--val-every",
    ] {
        assert!(help.contains(option), "train --help lacks {option}");
    }
    assert!(jetgen(&["train", "flow", "--help"]).status.success());
    assert!(jetgen(&["--version"]).status.success());
}

#[test]
fn bench_roofline_reports_the_machine_model() {
    let dir = scratch("roofline");
    let json = dir.join("roofline.json");
    let out = jetgen(&[
        "bench",
        "roofline",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FMA peak"), "{}", text(&out));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let machine = &rows[0]["machine"];
    for key in [
        "flops_one",
        "flops_all",
        "bandwidth_bytes_per_s",
        "exp_one",
        "ln_one",
    ] {
        let v = machine[key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "{key}: {machine}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_existing_run_is_never_replaced_or_mixed() {
    let dir = scratch("existing");
    let run = dir.join("run");
    let out = run_tiny(&run, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read(run.join("config.json")).unwrap();
    let log = std::fs::read(run.join("train_log.csv")).unwrap();
    // a second run into it is refused, and so is one with a bad option: nothing changes
    assert_clean_failure(&run_tiny(&run, &["--seed", "9"]), "--overwrite");
    assert_clean_failure(&run_tiny(&run, &["--bins", "0"]), "bins");
    assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config);
    assert_eq!(std::fs::read(run.join("train_log.csv")).unwrap(), log);
    // a run holding the directory's lock keeps a second writer out
    let lock = jetgen::runs::RunDir::new(&run).lock().unwrap();
    assert_clean_failure(
        &run_tiny(&run, &["--overwrite"]),
        "in use by another jetgen run",
    );
    drop(lock);
    // --overwrite replaces it
    let out = run_tiny(&run, &["--overwrite", "--seed", "9"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(settings_of(&run)["seed"], 9);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_json_records_the_data_and_warns_when_a_repeat_differs() {
    let first = trained();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("config.json")).unwrap()).unwrap();
    let data = jetgen::data::JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    assert_eq!(config["data"]["checksum"], data.checksum().as_str());
    assert!(config["data"]["path"].as_str().unwrap().ends_with("g.hdf5"));
    let dir = scratch("otherdata");
    let out = jetgen(&[
        "train",
        "--config",
        first.join("config.json").to_str().unwrap(),
        "--class",
        "t",
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("warning: the data differ"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_default_run_directory_never_replaces_a_run() {
    let dir = scratch("default-out");
    for _ in 0..2 {
        let mut args = tiny(Path::new("unused"));
        args.truncate(args.len() - 2); // drop "--out unused"
        let out = Command::new(env!("CARGO_BIN_EXE_jetgen"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(dir.join("runs/flow/config.json").exists());
    assert!(
        dir.join("runs/flow-2/config.json").exists(),
        "second run beside the first"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Writes `data` as a JetNet HDF5 file.
fn write_jets(path: &Path, data: &jetgen::data::JetNetData) {
    data.write_hdf5(path).unwrap();
}

#[test]
fn the_built_in_sample_works_from_any_directory() {
    let dir = scratch("builtin");
    let run = dir.join("run");
    // no --data: the sample built into the binary, from a directory without data/
    let mut args: Vec<String> = tiny(&run);
    let at = args.iter().position(|a| a == "--data").unwrap();
    args.drain(at..at + 2);
    let out = Command::new(env!("CARGO_BIN_EXE_jetgen"))
        .args(&args)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["settings"]["data"], "builtin:g");
    // the same jets as the file in the repository (same checksum)
    let file = jetgen::data::JetNetData::read(&sample_dir().join("g.hdf5")).unwrap();
    assert_eq!(config["data"]["checksum"], file.checksum().as_str());
    // eval without --real, from that directory
    let out = Command::new(env!("CARGO_BIN_EXE_jetgen"))
        .args(["eval", "--gen", "run/generated.hdf5", "--quick"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("builtin:g (2000 jets"),
        "{}",
        text(&out)
    );
    // an explicit --data still reads that file, and builtin:t is the top sample
    let missing = dir.join("data/sample/g.hdf5");
    let mut args = tiny(&dir.join("r2"));
    args[at + 1] = missing.display().to_string();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_clean_failure(&jetgen(&refs), "data/sample/g.hdf5");
    assert_clean_failure(
        &jetgen(&["eval", "--gen", "builtin:q", "--quick"]),
        "no such built-in sample",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_libcuda_without_its_symbols_prints_no_panic() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let dir = scratch("fakecuda");
    let src = dir.join("fake.c");
    std::fs::write(&src, "int jetgen_fake_libcuda(void) { return 0; }\n").unwrap();
    let lib = dir.join("libcuda.so.1");
    let built = Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no C compiler ({cc}) to build a fake libcuda.so.1");
        return;
    }
    std::fs::copy(&lib, dir.join("libcuda.so")).unwrap();
    let with_fake =
        |cmd: &mut Command| -> Output { cmd.env("LD_LIBRARY_PATH", &dir).output().unwrap() };
    // the CLI: `info` probes the driver, `eval --device auto` too
    let out = with_fake(Command::new(env!("CARGO_BIN_EXE_jetgen")).arg("info"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    assert!(
        text(&out).contains("device (auto): cpu")
            && text(&out).contains("not a usable CUDA driver"),
        "{}",
        text(&out)
    );
    let out = with_fake(Command::new(env!("CARGO_BIN_EXE_jetgen")).args([
        "sample",
        "--device",
        "cuda",
        "--model",
        trained().to_str().unwrap(),
        "--out",
        dir.join("x.hdf5").to_str().unwrap(),
    ]));
    assert_clean_failure(&out, "CUDA");
    // the C API, in a child process of this test binary that sees the fake library
    let out = with_fake(
        Command::new(std::env::current_exe().unwrap())
            .args(["c_api_probe_child", "--exact", "--ignored", "--nocapture"])
            .env("JETGEN_PROBE_CHILD", "1"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("probe child: cpu"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    std::fs::remove_dir_all(&dir).ok();
}

/// Run by `a_libcuda_without_its_symbols_prints_no_panic` in a child process.
#[test]
#[ignore]
fn c_api_probe_child() {
    if std::env::var_os("JETGEN_PROBE_CHILD").is_none() {
        return;
    }
    use jetgen::ffi::*;
    let mut ctx = std::ptr::null_mut();
    // SAFETY: a valid out pointer; the context is freed below.
    let status = unsafe { jetgen_context_create(JETGEN_DEVICE_AUTO, 1, &mut ctx) };
    assert_eq!(status, JetgenStatus::Ok);
    let mut device = 0;
    // SAFETY: a live context and a valid out pointer.
    assert_eq!(
        unsafe { jetgen_context_device(ctx, &mut device) },
        JetgenStatus::Ok
    );
    assert_eq!(device, JETGEN_DEVICE_CPU);
    // SAFETY: from jetgen_context_create.
    unsafe { jetgen_context_free(ctx) };
    println!("probe child: cpu");
}

#[test]
fn huge_samples_are_refused_and_odd_samples_evaluate_with_warnings() {
    let dir = scratch("oddsamples");
    let run = trained();
    let out_file = dir.join("huge.hdf5");
    let out = jetgen(&[
        "sample",
        "--model",
        run.to_str().unwrap(),
        "--n",
        "1000000000000",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, "too many");
    assert!(!out_file.exists());
    // generated jets with empty jets and junk in the padding: evaluated, warned, finite
    let gen = jetgen::data::JetNetData::read(&run.join("generated.hdf5")).unwrap();
    let mut odd = gen.clone();
    let p = odd.n_particles;
    for i in [1, 5] {
        odd.particles[i * p * 4..(i + 1) * p * 4].fill(0.0);
    }
    let odd_file = dir.join("odd.hdf5");
    write_jets(&odd_file, &odd);
    let json = dir.join("m.json");
    let out = jetgen(&[
        "eval",
        "--gen",
        odd_file.to_str().unwrap(),
        "--real",
        &sample_file(),
        "--quick",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("2 empty generated jets"), "{all}");
    assert!(!all.contains("inf") && !all.contains("NaN"), "{all}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        v["w1p"]["value"].is_f64() && v["w1p"]["error"].is_f64(),
        "{v}"
    );
    assert_eq!(v["empty_generated"], 2);
    // every jet empty: refused; a single jet: a warning
    let mut empty = gen.clone();
    empty.particles.fill(0.0);
    write_jets(&odd_file, &empty);
    assert_clean_failure(
        &jetgen(&[
            "eval",
            "--gen",
            odd_file.to_str().unwrap(),
            "--real",
            &sample_file(),
            "--quick",
        ]),
        "empty",
    );
    write_jets(&odd_file, &gen.select(&[0]).unwrap());
    let out = jetgen(&[
        "eval",
        "--gen",
        odd_file.to_str().unwrap(),
        "--real",
        &sample_file(),
        "--quick",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("only 1 generated jet"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_mass_outside_the_training_range_warns() {
    let dir = scratch("massrange");
    let run = dir.join("cnf");
    let out = run_tiny(&run, &["--variant", "cnf-m"]);
    assert!(out.status.success(), "{}", text(&out));
    let gen = dir.join("g.hdf5");
    let sample = |mass: &str| {
        jetgen(&[
            "sample",
            "--model",
            run.to_str().unwrap(),
            "--n",
            "20",
            "--mass",
            mass,
            "--out",
            gen.to_str().unwrap(),
        ])
    };
    let out = sample("5.0");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("outside the training jets' range"),
        "{}",
        text(&out)
    );
    let out = sample("0.1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));
    assert_clean_failure(&sample("-1"), "--mass");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn library_train_and_the_memorisation_diagnostic() {
    let dir = scratch("library");
    let run = dir.join("lib");
    let data = sample_file();
    let out = jetgen(&[
        "train",
        "library",
        "--k",
        "1",
        "--condition",
        "mass,multiplicity",
        "--data",
        &data,
        "--generate",
        "100",
        "--plots",
        "false",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "train library failed:\n{}",
        text(&out)
    );
    let all = text(&out);
    assert!(
        all.contains("memorisation") && all.contains("copies"),
        "{all}"
    );
    // a k = 1 library copies: every generated jet is a training jet
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["memorisation"]["copies"].as_f64(), Some(1.0));
    // eval --train: the generated jets against the very file they were drawn from
    let gen = run.join("generated.hdf5");
    let json = dir.join("eval.json");
    let out = jetgen(&[
        "eval",
        "--gen",
        gen.to_str().unwrap(),
        "--real",
        &data,
        "--train",
        &data,
        "--quick",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "eval --train failed:\n{}", text(&out));
    assert!(text(&out).contains("certified exact"), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["memorisation"]["copies"].as_f64(), Some(1.0));
    assert_clean_failure(
        &jetgen(&[
            "train",
            "library",
            "--k",
            "0",
            "--data",
            &data,
            "--out",
            run.to_str().unwrap(),
        ]),
        "--k",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn flow_matching_trains_and_samples_with_a_chosen_solver() {
    let dir = scratch("fm");
    let run = dir.join("run");
    let out = jetgen(&[
        "train",
        "fm",
        "--data",
        &sample_file(),
        "--steps",
        "4",
        "--batch",
        "16",
        "--layers",
        "1",
        "--hidden",
        "8",
        "--global",
        "3",
        "--time-embed",
        "4",
        "--solver-steps",
        "2",
        "--val-steps",
        "1",
        "--val-jets",
        "40",
        "--val-every",
        "2",
        "--generate",
        "40",
        "--quick-eval",
        "--plots",
        "false",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // the family's own default schedule is recorded
    assert_eq!(settings_of(&run)["lr_schedule"], "cosine");
    let gen = dir.join("gen.hdf5");
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--model",
            run.to_str().unwrap(),
            "--n",
            "12",
            "--out",
            gen.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        jetgen(&args)
    };
    let out = sample(&[]);
    assert!(
        out.status.success() && text(&out).contains("4 network evaluations per jet"),
        "{}",
        text(&out)
    );
    let out = sample(&["--solver", "rk4", "--steps", "3"]);
    assert!(
        text(&out).contains("wrote 12 jets") && text(&out).contains("12 network evaluations"),
        "{}",
        text(&out)
    );
    let out = sample(&["--solver", "dopri5", "--tol", "1e-3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_clean_failure(&sample(&["--steps", "0"]), "--steps");
    // a model that does not integrate an ODE refuses the solver options
    let flow = trained();
    let out = jetgen(&[
        "sample",
        "--model",
        flow.to_str().unwrap(),
        "--n",
        "5",
        "--out",
        gen.to_str().unwrap(),
        "--solver",
        "euler",
    ]);
    assert_clean_failure(&out, "does not generate by integrating an ODE");
    std::fs::remove_dir_all(&dir).ok();
}
