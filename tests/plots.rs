//! Every plot kind renders to a valid, non-trivial PNG (decoded and inspected here), and bad
//! input is a clear error that leaves no file behind. Set JETGEN_PLOT_DIR to keep the PNGs
//! (to look at them); otherwise they go to a temporary folder.

mod common;

use std::path::{Path, PathBuf};

use jetgen::data::JetNetData;
use jetgen::physics::relative_masses;
use jetgen::plots::{self, chart, Binning, Heatmap, Hist2d, Roc, Scale, Series, Style, XyPlot};

fn out_dir(test: &str) -> PathBuf {
    let dir = match std::env::var_os("JETGEN_PLOT_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("jetgen-plots-{}-{test}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample(class: &str) -> JetNetData {
    JetNetData::read(&common::sample_dir().join(format!("{class}.hdf5"))).unwrap()
}

/// Decodes `path` and checks it is an 8-bit RGB image of `w × h` that is neither blank nor
/// a flood: some ink, mostly background, many colours (anti-aliased text and lines), and
/// every colour of `must_have` present (within a few levels).
fn check_png(path: &Path, w: u32, h: u32, must_have: &[[u8; 3]]) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}",
        path.display()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (w, h), "{}", path.display());
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let ink = px.iter().filter(|p| **p != [255, 255, 255]).count() as f64 / px.len() as f64;
    assert!(
        ink > 0.02 && ink < 0.85,
        "{}: {ink:.3} of the pixels drawn",
        path.display()
    );
    let colours: std::collections::HashSet<[u8; 3]> = px.iter().copied().collect();
    assert!(
        colours.len() > 60,
        "{}: {} colours",
        path.display(),
        colours.len()
    );
    for c in must_have {
        let near = |p: &[u8; 3]| (0..3).all(|k| (p[k] as i32 - c[k] as i32).abs() <= 3);
        assert!(
            px.iter().any(near),
            "{}: colour {c:?} missing",
            path.display()
        );
    }
}

#[test]
fn comparison_histograms_with_ratio_panels() {
    let dir = out_dir("hist");
    let (g, t) = (sample("g"), sample("t"));
    let files = plots::comparison_plots(&g, &t, &dir.join("comparison")).unwrap();
    assert_eq!(files.len(), 6);
    for f in &files {
        check_png(f, 900, 760, &[chart::GEN]);
    }
    // a hand-made pair: a ratio far off the panel and an empty generated bin
    let real: Vec<f64> = (0..4000)
        .map(|i| (i as f64 * 0.618).fract() * 10.0)
        .collect();
    let gen: Vec<f64> = (0..1000)
        .map(|i| ((i as f64 * 0.618).fract() * 6.0).powf(1.2))
        .collect();
    let path = dir.join("histogram_explicit_range.png");
    let binning = Binning {
        range: Some((0.0, 10.0)),
        bins: 40,
        log_y: true,
    };
    plots::compare_histograms(&path, "Energy", "E (GeV)", &real, &gen, binning).unwrap();
    check_png(&path, 900, 760, &[chart::GEN]);
    // no finite real value: an error, and no file
    let bad = dir.join("histogram_bad.png");
    let auto = Binning {
        range: None,
        bins: 10,
        log_y: false,
    };
    let err = plots::compare_histograms(&bad, "x", "x", &[f64::NAN], &gen, auto).unwrap_err();
    assert!(err.to_string().contains("no finite value"), "{err}");
    assert!(!bad.exists());
}

#[test]
fn line_and_scatter_plots_with_log_axes() {
    let dir = out_dir("xy");
    let train: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 60.0 + 400.0 / (1.0 + s as f64)))
        .collect();
    let val: Vec<(f64, f64)> = (0..20)
        .map(|k| (10.0 * k as f64, 70.0 + 300.0 / (1.0 + 10.0 * k as f64)))
        .collect();
    let path = dir.join("loss.png");
    plots::line_plot(
        &path,
        "Training",
        "Training step",
        "Loss (NLL per jet)",
        &[
            ("train", chart::REAL, train.clone()),
            ("validation", chart::GEN, val.clone()),
        ],
    )
    .unwrap();
    check_png(&path, 900, 640, &[chart::REAL, chart::GEN]);
    // log-log: a power law with scattered measurements and a dashed fit
    let fit: Vec<(f64, f64)> = (0..50)
        .map(|k| {
            let n = 10f64.powf(2.0 + k as f64 * 0.06);
            (n, 3.0 / n.sqrt())
        })
        .collect();
    let meas: Vec<(f64, f64)> = (0..40)
        .map(|k| {
            let n = 10f64.powf(2.0 + k as f64 * 0.075);
            (n, 3.0 / n.sqrt() * (1.0 + 0.2 * (k as f64 * 2.3).sin()))
        })
        .collect();
    let plot = XyPlot {
        title: "Metric against sample size".into(),
        xlabel: "Generated jets N".into(),
        ylabel: "W1M (×10³)".into(),
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        ..Default::default()
    };
    let series = [
        Series::markers("bootstrap mean", chart::PALETTE[2], meas),
        Series::line("3 / √N", chart::BLACK, fit).with_style(Style::Dashed),
        Series::line("", chart::GEN, vec![(1e2, -1.0), (1e3, 0.0)]), // nothing shown on log y
    ];
    let path = dir.join("scatter_loglog.png");
    plots::xy_plot(&path, &plot, &series).unwrap();
    check_png(&path, 900, 640, &[chart::PALETTE[2]]);
    // nothing finite: an error, and no file
    let bad = dir.join("xy_bad.png");
    let empty = [Series::line("x", chart::GEN, vec![(f64::NAN, 1.0)])];
    assert!(plots::xy_plot(&bad, &plot, &empty).is_err());
    assert!(!bad.exists());
}

#[test]
fn roc_curves() {
    let dir = out_dir("roc");
    // top tagging by the relative jet mass: tops (signal) are heavier than gluon jets
    let (g, t) = (sample("g"), sample("t"));
    let by_mass = Roc::from_scores(&relative_masses(&t), &relative_masses(&g)).unwrap();
    // the jet's girth Σ pT_rel·ΔR: top jets are wider
    let girth = |d: &JetNetData| -> Vec<f64> {
        let per_jet = d.particles.chunks_exact(d.n_particles * 4);
        per_jet
            .map(|j| {
                j.chunks_exact(4)
                    .map(|p| p[2] as f64 * ((p[0] as f64).powi(2) + (p[1] as f64).powi(2)).sqrt())
                    .sum()
            })
            .collect()
    };
    let by_girth = Roc::from_scores(&girth(&t), &girth(&g)).unwrap();
    println!("AUC: mass {:.3}, girth {:.3}", by_mass.auc, by_girth.auc);
    assert!(by_mass.auc > 0.75, "mass AUC {}", by_mass.auc);
    let path = dir.join("roc.png");
    plots::roc_plot(
        &path,
        "Top vs gluon jets",
        &[("jet mass", &by_mass), ("jet girth", &by_girth)],
    )
    .unwrap();
    check_png(&path, 900, 640, &[chart::PALETTE[0], chart::PALETTE[1]]);
}

#[test]
fn average_jet_images_with_colour_bar() {
    let dir = out_dir("image");
    let (g, t) = (sample("g"), sample("t"));
    let path = dir.join("jet_images.png");
    plots::jet_images(&path, &g, &t, 40, 0.4).unwrap();
    // viridis: the colour bar runs from dark purple to yellow
    check_png(
        &path,
        84 + 2 * 430 + 150,
        44 + 430 + 20,
        &[[68, 1, 84], [253, 231, 37]],
    );
    // a single linear histogram
    let mut h = Hist2d::new((-1.0, 1.0), (-1.0, 1.0), 25, 25).unwrap();
    for i in 0..5000 {
        let (a, r) = (i as f64 * 2.399, (i as f64 / 5000.0).sqrt());
        h.fill(r * a.cos(), 0.6 * r * a.sin(), 1.0);
    }
    let spec = Heatmap {
        title: "Points per bin".into(),
        xlabel: "x (cm)".into(),
        ylabel: "y (cm)".into(),
        zlabel: "Entries".into(),
        log_z: false,
    };
    let path = dir.join("heatmap_linear.png");
    plots::heatmap(&path, &spec, &h).unwrap();
    check_png(&path, 84 + 430 + 150, 44 + 430 + 20, &[]);
    // a NaN pixel: an error, and no file
    h.values[3] = f64::NAN;
    let bad = dir.join("heatmap_bad.png");
    assert!(plots::heatmap(&bad, &spec, &h).is_err());
    assert!(!bad.exists());
}
