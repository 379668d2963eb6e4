//! The native pooling rows against an oracle written from the pools'
//! definition, for every implementation this CPU has: max and average
//! (with a per-position divisor table), any kernel size, stride (1, 2 and
//! gathered ones), padding, dilation, row range and map width (partial
//! last vectors of 8 and 16 lanes), NaN and infinite inputs for max, and
//! a sentinel around the output to catch stray stores.

#![allow(unsafe_code)]

use nnc_runtime::kernels::pool_rows::{nnc_pool_rows, PoolKind, PoolRows};
use proptest::prelude::*;

mod common;
use common::{kernels as implementations, values};

const SENTINEL: f32 = 12345.0;

/// Output `(oy, ox)`: the maximum (NaN if a tap is NaN) or the sum times
/// `inverse[oy, ox]` of the taps inside `x`, in f64.
fn oracle(s: &PoolRows, x: &[f32], inverse: &[f32], oy: usize, ox: usize) -> f64 {
    let mut taps = Vec::new();
    for ky in 0..s.kernel[0] {
        for kx in 0..s.kernel[1] {
            let iy = (oy * s.stride[0] + ky * s.dilation[0]) as i64 - s.padding[0] as i64;
            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as i64 - s.padding[1] as i64;
            if (0..s.h as i64).contains(&iy) && (0..s.w as i64).contains(&ix) {
                taps.push(f64::from(x[iy as usize * s.w + ix as usize]));
            }
        }
    }
    match s.kind {
        PoolKind::Max if taps.iter().any(|t| t.is_nan()) => f64::NAN,
        PoolKind::Max => taps.into_iter().fold(f64::NEG_INFINITY, f64::max),
        PoolKind::Avg => taps.iter().sum::<f64>() * f64::from(inverse[oy * s.ow + ox]),
    }
}

/// One pool's geometry: kernel, stride, `[top, left]` and `[bottom,
/// right]` padding, dilation.
type Geometry = ([usize; 2], [usize; 2], [[usize; 2]; 2], [usize; 2]);

/// Rows `rows` of a pool over an `h x w` map, with `specials` (NaN and
/// infinities) written over the input at pseudo-random places.
fn check(
    (kernel, stride, [padding, padding_end], dilation): Geometry,
    [h, w]: [usize; 2],
    kind: PoolKind,
    rows: (usize, usize),
    specials: &[f32],
    seed: u64,
) {
    let out_len = |len: usize, i: usize| {
        (len + padding[i] + padding_end[i])
            .checked_sub(dilation[i] * (kernel[i] - 1) + 1)
            .map(|span| span / stride[i] + 1)
    };
    let (Some(oh), Some(ow)) = (out_len(h, 0), out_len(w, 1)) else {
        return;
    };
    let (r0, r1) = (rows.0.min(oh), rows.1.min(oh).max(rows.0.min(oh)));
    let mut x = values(h * w, seed);
    for (i, &v) in specials.iter().enumerate() {
        let at = (seed as usize).wrapping_add(i * 7919) % x.len();
        x[at] = v;
    }
    // Any table will do: the rows multiply each sum by its entry.
    let inverse: Vec<f32> = values(oh * ow, seed ^ 0x3333)
        .into_iter()
        .map(|v| 0.5 + v.abs())
        .collect();
    for kernel_impl in implementations() {
        let s = PoolRows {
            h,
            w,
            ow,
            kernel,
            stride,
            padding,
            dilation,
            kind,
            kernel_impl,
        };
        // One sentinel row before and after the output rows.
        let mut out = vec![SENTINEL; (r1 - r0 + 2) * ow];
        // SAFETY: `x` holds the whole `h x w` plane, `inverse` every
        // output position, `out` the rows `r0..r1` between two sentinel
        // rows; kernel and stride are nonzero and `kernel_impl` is one
        // this CPU has.
        unsafe {
            nnc_pool_rows(
                &s,
                x.as_ptr(),
                inverse.as_ptr(),
                out.as_mut_ptr().add(ow),
                r0,
                r1,
            );
        }
        assert!(
            out[..ow]
                .iter()
                .chain(&out[(r1 - r0 + 1) * ow..])
                .all(|&v| v == SENTINEL),
            "{kernel_impl:?} {s:?}: a store outside rows {r0}..{r1}"
        );
        for oy in r0..r1 {
            for ox in 0..ow {
                let want = oracle(&s, &x, &inverse, oy, ox);
                let got = f64::from(out[(oy - r0 + 1) * ow + ox]);
                let close = if want.is_finite() {
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
                } else {
                    got == want || (got.is_nan() && want.is_nan())
                };
                assert!(
                    close,
                    "{kernel_impl:?} {s:?} rows {r0}..{r1}: ({oy}, {ox}) is {got}, want {want}"
                );
            }
        }
    }
}

#[test]
fn common_pools() {
    // 3x3 stride 2 pad 1 (ResNet's max pool), 2x2 stride 2, 3x3 stride 1
    // pad 1 (Inception's), on maps with whole and partial vectors.
    for size in [7, 8, 13, 16, 17, 35, 56, 112] {
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let sides = [[1, 1], [1, 1]];
            check(
                ([3, 3], [2, 2], sides, [1, 1]),
                [size, size],
                kind,
                (0, 200),
                &[],
                1,
            );
            check(
                ([2, 2], [2, 2], [[0, 0], [0, 0]], [1, 1]),
                [size, size],
                kind,
                (0, 200),
                &[],
                2,
            );
            check(
                ([3, 3], [1, 1], sides, [1, 1]),
                [size, size],
                kind,
                (2, 9),
                &[],
                3,
            );
        }
    }
}

/// 3x3 pools at strides 1 and 2, and 2x2 at stride 2, with every padding
/// up to 2 on each side,
/// on maps from 1 to 40 wide (one chunk to three, most reaching into the
/// padding; the narrow paths read windows in place with masked loads),
/// max with NaN and infinities and average.
#[test]
fn three_by_three_with_any_padding() {
    for (h, w) in [
        (1, 1),
        (2, 5),
        (7, 7),
        (14, 14),
        (13, 17),
        (28, 28),
        (5, 40),
    ] {
        for sides in [
            [[0, 0], [0, 0]],
            [[1, 1], [1, 1]],
            [[2, 0], [1, 2]],
            [[0, 2], [2, 1]],
        ] {
            for (kind, (size, stride)) in [PoolKind::Max, PoolKind::Avg]
                .into_iter()
                .flat_map(|k| [(k, (3, 1)), (k, (3, 2)), (k, (2, 2))])
            {
                let specials: &[f32] = match kind {
                    PoolKind::Max => &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY],
                    PoolKind::Avg => &[],
                };
                check(
                    ([size, size], [stride, stride], sides, [1, 1]),
                    [h, w],
                    kind,
                    (0, 100),
                    specials,
                    (h * 100 + w) as u64,
                );
            }
        }
    }
}

#[test]
fn max_keeps_nan_and_infinities() {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
    ];
    for seed in 1..20 {
        for stride in [1, 2, 3] {
            let geometry = ([3, 3], [stride, stride], [[1, 1], [1, 1]], [1, 1]);
            check(geometry, [11, 21], PoolKind::Max, (0, 20), &specials, seed);
        }
    }
}

/// 3x3 stride-2 pools on rows of several vectors, whose chunks at the
/// padding read masked loads in place (and whose maps with mostly such
/// chunks take masked loads for every chunk), with NaN and infinities
/// among the taps: the ResNets' pool and its neighbours.
#[test]
fn wide_stride_two_pools_at_the_padding() {
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN];
    for size in [33, 34, 56, 57, 112, 113] {
        for sides in [[[1, 1], [1, 1]], [[1, 0], [0, 1]], [[0, 1], [1, 0]]] {
            for seed in 1..4 {
                let geometry = ([3, 3], [2, 2], sides, [1, 1]);
                check(
                    geometry,
                    [size, size],
                    PoolKind::Max,
                    (0, 200),
                    &specials,
                    seed,
                );
                check(
                    geometry,
                    [size, size + 3],
                    PoolKind::Avg,
                    (0, 200),
                    &[],
                    seed,
                );
            }
        }
    }
}

#[test]
fn windows_past_the_input() {
    // Ceil mode's last windows start in the bottom and right padding, and
    // a window can lie wholly in the padding (max: -inf; average: 0).
    let geometry = ([3, 3], [2, 2], [[1, 0], [2, 3]], [1, 1]);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        check(geometry, [9, 10], kind, (0, 9), &[], 4);
        check(
            ([2, 2], [1, 1], [[1, 1], [1, 1]], [1, 1]),
            [1, 1],
            kind,
            (0, 9),
            &[],
            5,
        );
    }
}

#[test]
fn loads_past_the_row_end_leave_the_stored_lanes_alone() {
    // A last, partial chunk is read in place when its live windows lie in
    // the row: its loads run on into the next row, whose infinities and
    // NaNs must reach only lanes that are not stored.
    let specials = [f32::INFINITY; 24];
    let nans = [f32::NAN; 6];
    // Padding after the row (ceil mode's) puts the last live window
    // partly past the row's end: that one must take the padded copy.
    for w in [17, 18, 19, 21, 33, 35, 37, 49] {
        for right in [0, 1, 2] {
            for seed in 0..12 {
                for kind in [PoolKind::Max, PoolKind::Avg] {
                    let sides = [[0, 0], [0, right]];
                    let inf = if kind == PoolKind::Max {
                        &specials[..]
                    } else {
                        &specials[..0]
                    };
                    for (kernel, stride) in [([3, 3], [2, 2]), ([3, 3], [1, 1]), ([2, 2], [2, 2])] {
                        let geometry = (kernel, stride, sides, [1, 1]);
                        check(geometry, [9, w], kind, (0, 9), inf, seed);
                    }
                }
                let sides = [[0, 0], [0, right]];
                check(
                    ([3, 3], [2, 2], sides, [1, 1]),
                    [9, w],
                    PoolKind::Max,
                    (0, 9),
                    &nans,
                    seed,
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_geometries(
        (kh, kw) in (1usize..6, 1usize..6),
        (sh, sw) in (1usize..5, 1usize..5),
        (ph, pw) in (0usize..4, 0usize..4),
        (eh, ew) in (0usize..4, 0usize..4),
        (dh, dw) in (1usize..3, 1usize..3),
        (h, w) in (1usize..20, 1usize..70),
        rows in (0usize..10, 0usize..25),
        max in any::<bool>(),
        nan in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let specials: &[f32] = if nan && max { &[f32::NAN, f32::INFINITY] } else { &[] };
        let geometry = ([kh, kw], [sh, sw], [[ph, pw], [eh, ew]], [dh, dw]);
        check(geometry, [h, w], kind, rows, specials, seed);
    }
}
