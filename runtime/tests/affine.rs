//! The native per-channel affine run, `act(x * scale + shift)`, against an
//! f64 oracle for every micro-kernel this CPU has: runs around the vector
//! widths (tails of every length), every native activation, and in place.

#![allow(unsafe_code)]

use nnc_runtime::kernels::affine::{nnc_affine, Affine};

mod common;
use common::{act_f64, kernels, values, ACTIVATIONS};

const SENTINEL: f32 = 12345.0;

#[test]
fn runs_of_every_tail_match_the_oracle() {
    for kernel in kernels() {
        for act in ACTIVATIONS {
            let spec = Affine::new(act, kernel);
            for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100] {
                let x = values(n, n as u64 + 3);
                let (scale, shift) = (-1.75, 0.375);
                let mut out = vec![SENTINEL; n + 5];
                // SAFETY: `x` holds `n` floats, `out` more.
                unsafe { nnc_affine(&spec, x.as_ptr(), out.as_mut_ptr(), n, scale, shift) };
                for (i, (&v, &got)) in x.iter().zip(&out).enumerate() {
                    let want = act_f64(act, f64::from(v) * f64::from(scale) + f64::from(shift));
                    let tol = 1e-5 * (1.0 + want.abs());
                    assert!(
                        (f64::from(got) - want).abs() <= tol,
                        "{kernel:?} {act:?} n={n}: out[{i}] = {got}, want {want}"
                    );
                }
                assert!(
                    out[n..].iter().all(|&v| v == SENTINEL),
                    "{kernel:?} n={n}: wrote past the run"
                );
            }
        }
    }
}

#[test]
fn in_place_runs_read_before_they_write() {
    for kernel in kernels() {
        let spec = Affine::new(ACTIVATIONS[1], kernel);
        let x = values(45, 11);
        let mut buf = x.clone();
        let p = buf.as_mut_ptr();
        // SAFETY: the run is the whole buffer, read and written in place.
        unsafe { nnc_affine(&spec, p, p, buf.len(), 2.0, -0.5) };
        for (&v, &got) in x.iter().zip(&buf) {
            let want = act_f64(ACTIVATIONS[1], f64::from(v) * 2.0 - 0.5);
            assert!(
                (f64::from(got) - want).abs() <= 1e-6,
                "{kernel:?}: {got} against {want}"
            );
        }
    }
}
