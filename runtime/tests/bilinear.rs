//! The native bilinear rows against an f64 oracle: planes wider than a
//! vector (several vectors of outputs and a tail), growing and shrinking,
//! row ranges, and tables that do not fit refused when loaded.

#![allow(unsafe_code)]

use nnc_runtime::kernels::bilinear::{nnc_bilinear, Bilinear};
use nnc_runtime::kernels::gemm::MicroKernel;

mod common;
use common::values;

const SENTINEL: f32 = 12345.0;

/// Align-corners taps from `len` inputs to `out` outputs.
fn taps(len: usize, out: usize) -> Vec<[(u32, f32); 2]> {
    (0..out)
        .map(|o| {
            let x = if out > 1 {
                o as f32 * (len - 1) as f32 / (out - 1) as f32
            } else {
                0.0
            };
            let low = (x as usize).min(len - 1);
            let high = (low + 1).min(len - 1);
            let frac = x - low as f32;
            [(low as u32, 1.0 - frac), (high as u32, frac)]
        })
        .collect()
}

#[test]
fn rows_match_the_oracle() {
    if !MicroKernel::Avx512.is_available() {
        return;
    }
    for ([h, w], [oh, ow]) in [
        ([5, 7], [10, 14]),
        ([20, 37], [40, 75]),
        ([33, 40], [9, 17]),
    ] {
        let (rows, columns) = (taps(h, oh), taps(w, ow));
        let built = Bilinear::new([h, w], &rows, &columns, MicroKernel::Avx512);
        assert!(
            matches!(built, Ok(Some(_))),
            "no native kernel with AVX-512: {built:?}"
        );
        let Ok(Some(spec)) = built else { return };
        let x = values(h * w, (h * w) as u64);
        for (r0, r1) in [(0, oh), (1, oh.min(4)), (oh - 1, oh + 3)] {
            let mut out = vec![SENTINEL; oh * ow];
            // SAFETY: `x` is the plane, `out` the output plane.
            unsafe { nnc_bilinear(&spec, x.as_ptr(), out.as_mut_ptr(), r0, r1) };
            for oy in 0..oh {
                for ox in 0..ow {
                    let got = out[oy * ow + ox];
                    if !(r0..r1).contains(&oy) {
                        assert_eq!(got, SENTINEL, "row {oy} outside {r0}..{r1} written");
                        continue;
                    }
                    let at = |(iy, wy): (u32, f32), (ix, wx): (u32, f32)| {
                        f64::from(x[iy as usize * w + ix as usize]) * f64::from(wy) * f64::from(wx)
                    };
                    let ([t, b], [l, r]) = (rows[oy], columns[ox]);
                    let want = at(t, l) + at(t, r) + at(b, l) + at(b, r);
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-5,
                        "{h}x{w} -> {oh}x{ow}: ({oy}, {ox}) = {got}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn tables_outside_the_input_are_refused() {
    if !MicroKernel::Avx512.is_available() {
        return;
    }
    // A column index past the input: refused when built.
    let rows = taps(4, 8);
    let mut columns = taps(6, 12);
    columns[3][1].0 = 6;
    let built = Bilinear::new([4, 6], &rows, &columns, MicroKernel::Avx512);
    assert!(built.is_err(), "{built:?}");
}
