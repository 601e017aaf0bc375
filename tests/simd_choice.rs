//! `JETGEN_SIMD` chooses the CPU kernels' instruction set at run time, and `jetgen info`
//! names the choice: the built binary run with each setting.

use std::process::Command;

fn info(simd: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetgen"));
    cmd.arg("info");
    match simd {
        Some(v) => cmd.env("JETGEN_SIMD", v),
        None => cmd.env_remove("JETGEN_SIMD"),
    };
    let out = cmd.output().expect("jetgen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| l.starts_with("cpu simd path:"))
        .unwrap_or_else(|| panic!("no simd line in:\n{text}"))
        .to_string()
}

#[test]
fn jetgen_info_names_the_run_time_choice() {
    let best = if jetgen::simd::Isa::avx2_fma().is_some() {
        "AVX2 + FMA"
    } else {
        "portable"
    };
    let auto = info(None);
    assert!(
        auto.starts_with(&format!("cpu simd path: {best} ")),
        "{auto}"
    );
    let forced = info(Some("portable"));
    assert!(forced.starts_with("cpu simd path: portable "), "{forced}");
    assert!(
        forced.contains("forced by JETGEN_SIMD=portable"),
        "{forced}"
    );
    let odd = info(Some("sse9"));
    assert!(odd.starts_with(&format!("cpu simd path: {best} ")), "{odd}");
    assert!(odd.contains("not understood"), "{odd}");
}
