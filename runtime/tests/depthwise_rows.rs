//! The native depthwise rows (the separable kernel's depthwise half)
//! against an f64 oracle written from the convolution's definition, for
//! every implementation this CPU has: any kernel size, stride (1, 2 and a
//! gathered 3), padding (different before and after the input in the
//! random cases), dilation, row range and activation (every one, applied
//! in registers or, for AVX2's transcendental ones, after the rows), with
//! a sentinel around the output to catch stray stores.

#![allow(unsafe_code)]

use nnc_runtime::kernels::depthwise_rows::{nnc_depthwise_rows, DepthwiseRows};
use nnc_runtime::kernels::gemm::Activation;
use proptest::prelude::*;

mod common;
use common::{act_f64, kernels as implementations, values, ACTIVATIONS};

const SENTINEL: f32 = 12345.0;

/// `out[oy, ox] = act(bias + sum taps[ky, kx] * x[oy*s - p + ky*d, ox*s -
/// p + kx*d])` over taps inside `x`, in f64.
fn oracle(s: &DepthwiseRows, x: &[f32], taps: &[f32], bias: f32, oy: usize, ox: usize) -> f64 {
    let mut acc = f64::from(bias);
    for ky in 0..s.kernel[0] {
        for kx in 0..s.kernel[1] {
            let iy = (oy * s.stride[0] + ky * s.dilation[0]) as i64 - s.padding[0] as i64;
            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as i64 - s.padding[1] as i64;
            if (0..s.h as i64).contains(&iy) && (0..s.w as i64).contains(&ix) {
                acc += f64::from(taps[ky * s.kernel[1] + kx])
                    * f64::from(x[iy as usize * s.w + ix as usize]);
            }
        }
    }
    act_f64(s.activation, acc)
}

/// [`check_sides`] with the same padding before and after the input.
#[allow(clippy::too_many_arguments)]
fn check(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    size: [usize; 2],
    activation: Activation,
    rows: (usize, usize),
    seed: u64,
) {
    let geometry = (kernel, stride, [padding, padding], dilation);
    check_sides(geometry, size, activation, rows, seed);
}

/// The rows of a depthwise conv padded by `[top, left]` and `[bottom,
/// right]` (which only decide the output width and height).
fn check_sides(
    (kernel, stride, [padding, padding_end], dilation): (
        [usize; 2],
        [usize; 2],
        [[usize; 2]; 2],
        [usize; 2],
    ),
    [h, w]: [usize; 2],
    activation: Activation,
    rows: (usize, usize),
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
    let x = values(h * w, seed);
    let taps = values(kernel[0] * kernel[1], seed ^ 0x5555);
    let bias = 0.25;
    for kernel_impl in implementations() {
        let s = DepthwiseRows::new(
            [h, w],
            ow,
            kernel,
            stride,
            padding,
            dilation,
            activation,
            kernel_impl,
        );
        // One sentinel row before and after the output rows.
        let mut out = vec![SENTINEL; (r1 - r0 + 2) * ow];
        // SAFETY: `x` holds the whole `h x w` plane, `taps` `kh * kw`
        // floats, and `out` the rows `r0..r1` between two sentinel rows;
        // `kernel_impl` is one this CPU has.
        unsafe {
            nnc_depthwise_rows(
                &s,
                x.as_ptr(),
                taps.as_ptr(),
                bias,
                out.as_mut_ptr().add(ow),
                r0,
                r1,
            );
        }
        assert!(out[..ow]
            .iter()
            .chain(&out[(r1 - r0 + 1) * ow..])
            .all(|&v| v == SENTINEL));
        for oy in r0..r1 {
            for ox in 0..ow {
                let want = oracle(&s, &x, &taps, bias, oy, ox);
                let got = out[(oy - r0 + 1) * ow + ox];
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{kernel_impl:?} {s:?} rows {r0}..{r1}: ({oy}, {ox}) is {got}, want {want}"
                );
            }
        }
    }
}

#[test]
fn mobilenet_shapes() {
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    // 3x3 pad 1 at strides 1 and 2, on maps from 7 to 112 wide (chunks of
    // 16 columns: partial, whole and several), whole maps and row blocks.
    for size in [7, 14, 28, 56, 112] {
        for stride in [1, 2] {
            check(
                [3, 3],
                [stride, stride],
                [1, 1],
                [1, 1],
                [size, size],
                relu6,
                (0, 9),
                1,
            );
            check(
                [3, 3],
                [stride, stride],
                [1, 1],
                [1, 1],
                [size, size],
                relu6,
                (3, 200),
                2,
            );
        }
    }
}

#[test]
fn edges_of_the_geometry() {
    // A map narrower than its padding, one output column, a 1x1 kernel,
    // dilation, a stride the AVX-512 version gathers, a tall kernel, and
    // an empty row range.
    check(
        [3, 3],
        [1, 1],
        [2, 2],
        [1, 1],
        [1, 1],
        Activation::None,
        (0, 9),
        3,
    );
    check(
        [3, 3],
        [2, 2],
        [0, 0],
        [1, 1],
        [3, 3],
        Activation::Relu,
        (0, 9),
        4,
    );
    check(
        [1, 1],
        [1, 1],
        [0, 0],
        [1, 1],
        [5, 37],
        Activation::None,
        (0, 9),
        5,
    );
    check(
        [3, 3],
        [1, 1],
        [2, 2],
        [2, 2],
        [9, 33],
        Activation::Relu,
        (0, 9),
        6,
    );
    check(
        [3, 5],
        [3, 3],
        [1, 2],
        [1, 1],
        [20, 50],
        Activation::None,
        (0, 9),
        7,
    );
    check(
        [17, 1],
        [1, 1],
        [8, 0],
        [1, 1],
        [20, 5],
        Activation::None,
        (0, 20),
        8,
    );
    check(
        [3, 3],
        [1, 1],
        [1, 1],
        [1, 1],
        [8, 8],
        Activation::None,
        (4, 4),
        9,
    );
}

#[test]
fn every_activation() {
    // The direct path at both strides and the padded path, each over a
    // partial last chunk, on rows from the middle of the map.
    for activation in ACTIVATIONS {
        for (kernel, stride) in [([3, 3], 1), ([3, 3], 2), ([5, 5], 1)] {
            check(
                kernel,
                [stride, stride],
                [kernel[0] / 2; 2],
                [1, 1],
                [13, 21],
                activation,
                (2, 11),
                10,
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_geometries(
        (kh, kw) in (1usize..6, 1usize..6),
        (sh, sw) in (1usize..4, 1usize..4),
        (ph, pw) in (0usize..3, 0usize..3),
        (eh, ew) in (0usize..3, 0usize..3),
        (dh, dw) in (1usize..3, 1usize..3),
        (h, w) in (1usize..20, 1usize..70),
        rows in (0usize..10, 0usize..25),
        relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let act = if relu { Activation::Relu } else { Activation::None };
        let geometry = ([kh, kw], [sh, sw], [[ph, pw], [eh, ew]], [dh, dw]);
        check_sides(geometry, [h, w], act, rows, seed);
    }

    /// 3x3 at equal strides 1 or 2 without dilation, which the AVX-512
    /// version reads in place with masked loads: any padding (up to wider
    /// than the map), maps narrower and wider than a vector, row ranges
    /// that end inside or past the map.
    #[test]
    fn direct_3x3_geometries(
        stride in 1usize..3,
        (ph, pw) in (0usize..4, 0usize..4),
        (eh, ew) in (0usize..4, 0usize..4),
        (h, w) in (1usize..40, 1usize..80),
        rows in (0usize..20, 0usize..45),
        relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let act = if relu { Activation::Relu } else { Activation::None };
        let geometry = ([3, 3], [stride, stride], [[ph, pw], [eh, ew]], [1, 1]);
        check_sides(geometry, [h, w], act, rows, seed);
    }
}
