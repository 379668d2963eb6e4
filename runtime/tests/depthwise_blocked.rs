//! The channel-blocked depthwise kernel (AVX2 and AVX-512) against an f64 oracle
//! written from the convolution's definition: any kernel size, stride,
//! padding (different before and after), dilation, map size (narrower and
//! wider than a vector, so both the transposed and the scalar columns of
//! the copies), channel count (whole and partial blocks of 8 and 16) and
//! activation, with sentinels around the block's output planes to catch
//! stray stores. On a CPU without AVX2 there is nothing to check.

#![allow(unsafe_code)]

use nnc_runtime::kernels::depthwise_blocked::{nnc_depthwise_blocked, DepthwiseBlocked};
use nnc_runtime::kernels::gemm::{Activation, MicroKernel};
use proptest::prelude::*;

mod common;
use common::{act_f64, values, ACTIVATIONS};

const SENTINEL: f32 = 12345.0;

/// The geometry of one check: kernel, stride, padding before and after,
/// dilation.
type Geometry = ([usize; 2], [usize; 2], [[usize; 2]; 2], [usize; 2]);

/// Every block of a depthwise conv of `channels` planes of `[h, w]`, in
/// blocks of 8 (AVX2) and of 16 (AVX-512) channels, as this CPU can run.
fn check(geometry: Geometry, [h, w]: [usize; 2], channels: usize, act: Activation, seed: u64) {
    for micro_kernel in [MicroKernel::Avx2Fma, MicroKernel::Avx512] {
        if DepthwiseBlocked::available(micro_kernel) {
            check_with(micro_kernel, geometry, [h, w], channels, act, seed);
        }
    }
}

fn check_with(
    micro_kernel: MicroKernel,
    geometry: Geometry,
    [h, w]: [usize; 2],
    channels: usize,
    act: Activation,
    seed: u64,
) {
    let (kernel, stride, [before, after], dilation) = geometry;
    let out_len = |len: usize, i: usize| {
        (len + before[i] + after[i])
            .checked_sub(dilation[i] * (kernel[i] - 1) + 1)
            .map(|span| span / stride[i] + 1)
    };
    let (Some(oh), Some(ow)) = (out_len(h, 0), out_len(w, 1)) else {
        return;
    };
    let taps = kernel[0] * kernel[1];
    let x = values(channels * h * w, seed);
    let weights = values(channels * taps, seed ^ 0x5555);
    let bias: Vec<f32> = (0..channels).map(|c| 0.1 * c as f32 - 0.3).collect();
    let spec = DepthwiseBlocked::new(
        [h, w],
        [oh, ow],
        kernel,
        stride,
        before,
        dilation,
        channels,
        &weights,
        Some(&bias),
        act,
        micro_kernel,
    );
    assert!(spec.is_some(), "the weights are long enough");
    let Some(spec) = spec else { return };
    let plane = oh * ow;
    // A sentinel plane before and after the output.
    let mut out = vec![SENTINEL; (channels + 2) * plane];
    for block in 0..spec.blocks() {
        let c0 = block * spec.lanes();
        // SAFETY: AVX2 is available; the input holds every plane from
        // `c0` on, the output room for them between the sentinels.
        unsafe {
            nnc_depthwise_blocked(
                &spec,
                x.as_ptr().add(c0 * h * w),
                out.as_mut_ptr().add((c0 + 1) * plane),
                block,
            );
        }
    }
    assert_eq!(
        spec.lanes(),
        if micro_kernel == MicroKernel::Avx512 {
            16
        } else {
            8
        }
    );
    let what = format!("{micro_kernel:?} {geometry:?} [{h}, {w}] x {channels} {act:?}");
    assert!(
        out[..plane]
            .iter()
            .chain(&out[(channels + 1) * plane..])
            .all(|&v| v == SENTINEL),
        "{what}: a store outside the output"
    );
    for c in 0..channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = f64::from(bias[c]);
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let iy = (oy * stride[0] + ky * dilation[0]) as i64 - before[0] as i64;
                        let ix = (ox * stride[1] + kx * dilation[1]) as i64 - before[1] as i64;
                        if (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix) {
                            acc += f64::from(weights[c * taps + ky * kernel[1] + kx])
                                * f64::from(x[c * h * w + iy as usize * w + ix as usize]);
                        }
                    }
                }
                let want = act_f64(act, acc);
                let got = out[(c + 1) * plane + oy * ow + ox];
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{what}: channel {c} ({oy}, {ox}) is {got}, want {want}"
                );
            }
        }
    }
}

/// EfficientNet-B0's and MobileNet's small-map layers, with every
/// activation: 3x3 and 5x5 at strides 1 and 2 on 7x7 to 28x28 maps, a
/// partial last block.
#[test]
fn small_map_layers_with_every_activation() {
    for (i, act) in ACTIVATIONS.into_iter().enumerate() {
        for (k, s, size) in [(3, 1, 7), (3, 2, 14), (5, 1, 14), (5, 2, 28), (5, 1, 7)] {
            let pad = k / 2;
            check(
                ([k, k], [s, s], [[pad, pad], [pad, pad]], [1, 1]),
                [size, size],
                21,
                act,
                i as u64,
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_geometries(
        (kh, kw) in (1usize..6, 1usize..6),
        (sh, sw) in (1usize..4, 1usize..4),
        (ph, pw) in (0usize..3, 0usize..3),
        (eh, ew) in (0usize..3, 0usize..3),
        (dh, dw) in (1usize..3, 1usize..3),
        (h, w) in (1usize..20, 1usize..30),
        channels in 1usize..20,
        act in 0usize..ACTIVATIONS.len(),
        seed in any::<u64>(),
    ) {
        let geometry = ([kh, kw], [sh, sw], [[ph, pw], [eh, ew]], [dh, dw]);
        check(geometry, [h, w], channels, ACTIVATIONS[act], seed);
    }
}
