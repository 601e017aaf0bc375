//! The ODE solvers against closed forms: measured orders of convergence of Euler, midpoint
//! and RK4, Dopri5's global error within its tolerance (and fewer evaluations for looser
//! tolerances), backward integration, evaluation counts, bad input.

use jetgen::ode::{solve, Method, SolverSettings, State};
use jetgen::{Result, Tensor};

/// y′ = A y with A = [[−0.5, 2], [−2, −0.5]] (a damped rotation), y(0) = (1, 0):
/// y(t) = e^{−t/2} (cos 2t, −sin 2t).
fn rotation(_t: f64, y: &[Tensor]) -> Result<State> {
    let v = y[0].to_vec_f64()?;
    Ok(vec![Tensor::from_f64(
        &[-0.5 * v[0] + 2.0 * v[1], -2.0 * v[0] - 0.5 * v[1]],
        &[2],
    )?])
}

fn rotation_exact(t: f64) -> [f64; 2] {
    let d = (-0.5 * t).exp();
    [d * (2.0 * t).cos(), -d * (2.0 * t).sin()]
}

fn error_at(method: Method, steps: usize) -> f64 {
    let y0 = vec![Tensor::from_f64(&[1.0, 0.0], &[2]).unwrap()];
    let sol = solve(
        &mut rotation,
        y0,
        0.0,
        2.0,
        &SolverSettings::fixed(method, steps),
    )
    .unwrap();
    assert_eq!(sol.nfe, steps * method.evals_per_step().unwrap());
    let y = sol.y[0].to_vec_f64().unwrap();
    let e = rotation_exact(2.0);
    ((y[0] - e[0]).powi(2) + (y[1] - e[1]).powi(2)).sqrt()
}

#[test]
fn fixed_step_methods_converge_at_their_order() {
    for (method, order) in [
        (Method::Euler, 1.0),
        (Method::Midpoint, 2.0),
        (Method::Rk4, 4.0),
    ] {
        // observed order from halving h twice: log2(e(h)/e(h/2))
        let (e1, e2, e3) = (
            error_at(method, 40),
            error_at(method, 80),
            error_at(method, 160),
        );
        let p1 = (e1 / e2).log2();
        let p2 = (e2 / e3).log2();
        assert!(
            (p1 - order).abs() < 0.25 && (p2 - order).abs() < 0.15,
            "{method:?}: orders {p1:.3}, {p2:.3} (errors {e1:e}, {e2:e}, {e3:e})"
        );
    }
}

/// y′ = cos(t)·y, y(0) = 1: y(t) = e^{sin t}; a second component z′ = −2tz, z = e^{−t²}.
fn scalar_pair(t: f64, y: &[Tensor]) -> Result<State> {
    let a = y[0].to_vec_f64()?;
    let b = y[1].to_vec_f64()?;
    Ok(vec![
        Tensor::from_f64(&[t.cos() * a[0]], &[1])?,
        Tensor::from_f64(&[-2.0 * t * b[0], -2.0 * t * b[1]], &[2])?,
    ])
}

#[test]
fn dopri5_error_is_within_tolerance_and_tracks_it() {
    let t1 = 3.0;
    let mut last_nfe = usize::MAX;
    for tol in [1e-4, 1e-6, 1e-8] {
        let y0 = vec![
            Tensor::from_f64(&[1.0], &[1]).unwrap(),
            Tensor::from_f64(&[1.0, 2.0], &[2]).unwrap(),
        ];
        let sol = solve(
            &mut scalar_pair,
            y0,
            0.0,
            t1,
            &SolverSettings::adaptive(tol, tol),
        )
        .unwrap();
        let a = sol.y[0].to_vec_f64().unwrap()[0];
        let b = sol.y[1].to_vec_f64().unwrap();
        let err = [
            (a - t1.sin().exp()).abs(),
            (b[0] - (-t1 * t1).exp()).abs(),
            (b[1] - 2.0 * (-t1 * t1).exp()).abs(),
        ];
        let worst = err.iter().cloned().fold(0.0, f64::max);
        // local error control; the global error stays within a small multiple of tol
        assert!(worst < 20.0 * tol, "tol {tol}: error {worst:e}");
        assert!(sol.steps > 0 && sol.nfe >= 6 * sol.steps);
        // tighter tolerance costs more evaluations (reported in the opposite order)
        if last_nfe != usize::MAX {
            assert!(
                sol.nfe > last_nfe,
                "tol {tol}: nfe {} ≤ {last_nfe}",
                sol.nfe
            );
        }
        last_nfe = sol.nfe;
    }
}

#[test]
fn integration_runs_backwards_too() {
    // from y(2) (exact) back to t = 0 recovers y(0) = (1, 0)
    let e = rotation_exact(2.0);
    for settings in [
        SolverSettings::fixed(Method::Rk4, 200),
        SolverSettings::adaptive(1e-8, 1e-8),
    ] {
        let y0 = vec![Tensor::from_f64(&e, &[2]).unwrap()];
        let sol = solve(&mut rotation, y0, 2.0, 0.0, &settings).unwrap();
        let y = sol.y[0].to_vec_f64().unwrap();
        assert!(
            (y[0] - 1.0).abs() < 1e-6 && y[1].abs() < 1e-6,
            "{settings:?}: {y:?}"
        );
    }
}

#[test]
fn bad_settings_and_states_are_errors() {
    let y0 = || vec![Tensor::from_f64(&[1.0, 0.0], &[2]).unwrap()];
    let e = |r: Result<jetgen::ode::Solution>| r.err().unwrap().to_string();
    assert!(e(solve(
        &mut rotation,
        y0(),
        0.0,
        1.0,
        &SolverSettings::fixed(Method::Euler, 0)
    ))
    .contains("--steps"));
    let mut s = SolverSettings::adaptive(1e-5, 1e-5);
    s.rtol = f64::NAN;
    assert!(e(solve(&mut rotation, y0(), 0.0, 1.0, &s)).contains("--rtol"));
    assert!(e(solve(
        &mut rotation,
        vec![],
        0.0,
        1.0,
        &SolverSettings::default()
    ))
    .contains("at least one"));
    assert!(e(solve(
        &mut rotation,
        y0(),
        0.0,
        f64::INFINITY,
        &SolverSettings::default()
    ))
    .contains("finite"));
    // a right-hand side of the wrong shape
    let mut wrong =
        |_t: f64, _y: &[Tensor]| -> Result<State> { Ok(vec![Tensor::from_f64(&[1.0], &[1])?]) };
    assert!(
        e(solve(
            &mut wrong,
            y0(),
            0.0,
            1.0,
            &SolverSettings::default()
        ))
        .contains("shape")
            || e(solve(
                &mut wrong,
                y0(),
                0.0,
                1.0,
                &SolverSettings::default()
            ))
            .contains("returned")
    );
    // a blow-up (y′ = y², y(0) = 1 explodes at t = 1) is an error, not a NaN result
    let mut blowup = |_t: f64, y: &[Tensor]| -> Result<State> {
        let v = y[0].to_vec_f64()?;
        Ok(vec![Tensor::from_f64(&[v[0] * v[0]], &[1])?])
    };
    let one = vec![Tensor::from_f64(&[1.0], &[1]).unwrap()];
    let mut tight = SolverSettings::adaptive(1e-6, 1e-6);
    tight.max_steps = 500;
    assert!(solve(&mut blowup, one, 0.0, 2.0, &tight).is_err());
    assert_eq!(Method::parse("rk4").unwrap(), Method::Rk4);
    assert!(Method::parse("rk45").is_err());
}
