//! The native direct convolution (few input channels) against an f64
//! oracle written from the convolution's definition, for every
//! implementation this CPU has: kernel sizes, strides 1 and 2, paddings
//! (different before and after the input in the random cases)
//! wider than the kernel's reach, output channels that fill part of a
//! block, row ranges computed in one call or in row blocks one after
//! another, with and without bias, with a sentinel around the output rows
//! to catch stray stores.

#![allow(unsafe_code)]

use nnc_runtime::kernels::direct_conv::{nnc_direct_conv, DirectConv};
use nnc_runtime::kernels::gemm::Activation;
use proptest::prelude::*;

mod common;
use common::{kernels as implementations, values};

const SENTINEL: f32 = 12345.0;

/// One convolution and the output rows to compute.
#[derive(Clone, Debug)]
struct Case {
    /// Input channels per group.
    c_in: usize,
    /// Groups; output channels `out_channels / groups` per group.
    groups: usize,
    size: [usize; 2],
    out_channels: usize,
    kernel: [usize; 2],
    stride: usize,
    /// Top and left.
    padding: [usize; 2],
    /// Bottom and right, which only decide the output size.
    padding_end: [usize; 2],
    bias: bool,
    activation: Activation,
    rows: (usize, usize),
    /// Output rows per call, 0 for all of `rows` in one: consecutive
    /// calls of one layout, some starting or ending in the padding, as the
    /// runtime's row blocks make them (the kernel keeps the previous
    /// call's padded planes).
    block: usize,
    seed: u64,
}

impl Case {
    /// A grouped conv as RegNet's and ResNeXt's: `c_in` channels per
    /// group in and out, a square kernel with the same padding on every
    /// side, bias and ReLU, every output row in one call.
    fn grouped(
        (c_in, groups): (usize, usize),
        size: [usize; 2],
        (kernel, stride, padding): (usize, usize, usize),
        seed: u64,
    ) -> Case {
        Case {
            c_in,
            groups,
            size,
            out_channels: groups * c_in,
            kernel: [kernel, kernel],
            stride,
            padding: [padding, padding],
            padding_end: [padding, padding],
            bias: true,
            activation: Activation::Relu,
            rows: (0, 100),
            block: 0,
            seed,
        }
    }

    /// Checks every row in one call, then in calls of `block` rows, then
    /// the rows `part` in one call.
    fn check_in_turn(self, block: usize, part: (usize, usize)) {
        self.check();
        Case {
            block,
            ..self.clone()
        }
        .check();
        Case { rows: part, ..self }.check();
    }

    fn check(&self) {
        let [h, w] = self.size;
        let [kh, kw] = self.kernel;
        let out_len = |len: usize, i: usize, k: usize| {
            (len + self.padding[i] + self.padding_end[i])
                .checked_sub(k)
                .map(|span| span / self.stride + 1)
        };
        let (Some(oh), Some(ow)) = (out_len(h, 0, kh), out_len(w, 1, kw)) else {
            return;
        };
        let (r0, r1) = (
            self.rows.0.min(oh),
            self.rows.1.min(oh).max(self.rows.0.min(oh)),
        );
        let groups = self.groups;
        let per_group = self.out_channels / groups;
        let x = values(groups * self.c_in * h * w, self.seed);
        let weight = values(self.out_channels * self.c_in * kh * kw, self.seed ^ 0x5555);
        let bias = values(self.out_channels, self.seed ^ 0xaaaa);
        for kernel_impl in implementations() {
            let conv = DirectConv::new(
                [self.c_in, h, w],
                [oh, ow],
                self.kernel,
                self.stride,
                self.padding,
                groups,
                &weight,
                self.bias.then_some(&bias[..]),
                self.activation,
                kernel_impl,
            );
            let mut out = vec![SENTINEL; self.out_channels * oh * ow];
            for g in 0..groups {
                let input = x[g * self.c_in * h * w..].as_ptr();
                let output = out[g * per_group * oh * ow..].as_mut_ptr();
                let block = if self.block == 0 { r1 - r0 } else { self.block };
                for b0 in (r0..r1).step_by(block.max(1)) {
                    let b1 = (b0 + block).min(r1);
                    // SAFETY: `input` starts group `g`'s `c_in` planes of
                    // `x` and `output` the group's channels of `out`, both
                    // whole.
                    unsafe { nnc_direct_conv(&conv, input, output, b0, b1, g) };
                }
            }
            for o in 0..self.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let got = out[(o * oh + oy) * ow + ox];
                        if !(r0..r1).contains(&oy) {
                            assert_eq!(
                                got, SENTINEL,
                                "{kernel_impl:?} {self:?}: ({o}, {oy}, {ox}) written"
                            );
                            continue;
                        }
                        let mut acc = if self.bias { f64::from(bias[o]) } else { 0.0 };
                        for c in 0..self.c_in {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy =
                                        (oy * self.stride + ky) as i64 - self.padding[0] as i64;
                                    let ix =
                                        (ox * self.stride + kx) as i64 - self.padding[1] as i64;
                                    if (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix) {
                                        acc += f64::from(
                                            weight[((o * self.c_in + c) * kh + ky) * kw + kx],
                                        ) * f64::from(
                                            x[((o / per_group * self.c_in + c) * h + iy as usize)
                                                * w
                                                + ix as usize],
                                        );
                                    }
                                }
                            }
                        }
                        let want = match self.activation {
                            Activation::Relu => acc.max(0.0),
                            Activation::Clip { min, max } => {
                                acc.max(f64::from(min)).min(f64::from(max))
                            }
                            _ => acc,
                        };
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{kernel_impl:?} {self:?}: ({o}, {oy}, {ox}) is {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
}

/// Grouped convs with 3x3 kernels as ResNeXt and RegNet have them: 4, 8,
/// 16 and 32 channels per group (a group's output channels fill part of a
/// block, one block, or two), strides 1 and 2.
#[test]
fn grouped_convs() {
    for (c_in, groups, stride) in [(4, 8, 1), (8, 4, 2), (16, 3, 1), (32, 2, 2)] {
        Case::grouped((c_in, groups), [13, 21], (3, stride, 1), 7).check();
    }
}

/// Rows of 14 columns, a vector each, whose 16-channel tiles compute
/// the row's 14 positions only: RegNet's 14x14 grouped convs (16 and 32
/// channels per group), whole and in row blocks, and a map whose rows are
/// 14 wide in a flat layout (2 rows).
#[test]
fn rows_of_fourteen() {
    for (c_in, groups, size) in [(16, 3, [14, 14]), (32, 2, [14, 14]), (16, 1, [2, 14])] {
        Case::grouped((c_in, groups), size, (3, 1, 1), 5).check_in_turn(5, (3, 11));
    }
}

/// Stride 2 onto rows of 28 or more, where the 16-channel tile reads the
/// input in place and the positions next to the padding one at a time:
/// kernels 3 and 5 at paddings 1 and 2 (the left columns and top rows
/// next to it), inputs of even and odd width (the last column's last tap
/// in the input or in the padding after it), whole maps, row ranges and
/// row blocks.
#[test]
fn stride_two_in_place() {
    for (kernel, padding, size) in [(3, 1, [20, 64]), (3, 1, [9, 59]), (5, 2, [12, 61])] {
        Case::grouped((16, 2), size, (kernel, 2, padding), 9).check_in_turn(3, (2, 5));
    }
}

/// Outputs at most 8 columns wide (one ymm of a chunk): the 7x7 maps of
/// RegNet's and ResNeXt's last stage (16 and 32 channels per group),
/// narrower ones, odd row counts and ranges, and stride 2 onto them.
#[test]
fn narrow_outputs() {
    for (c_in, groups, size, stride) in [
        (16, 3, [7, 7], 1),
        (32, 2, [7, 7], 1),
        (16, 2, [14, 14], 2),
        (3, 1, [5, 8], 1),
        (2, 2, [6, 3], 1),
    ] {
        for rows in [(0, 100), (1, 6), (2, 3), (0, 1)] {
            let case = Case::grouped((c_in, groups), size, (3, stride, 1), 3);
            Case { rows, ..case }.check();
        }
    }
}

/// A layer's row blocks one after another (top, middle and bottom blocks
/// of one layout): each call must zero the planes' rows that are padding
/// for it and held input rows in the call before. Strides 1 and 2,
/// paddings 1 and 2, 16 channels per group (one vector of channels) and
/// 8 (8-channel tiles).
#[test]
fn row_blocks_in_turn() {
    for (c_in, stride, padding, block) in [(16, 1, 1, 3), (16, 2, 1, 2), (8, 1, 2, 2), (8, 2, 2, 3)]
    {
        Case {
            c_in,
            groups: 2,
            size: [11, 13],
            out_channels: 2 * c_in,
            kernel: [3, 3],
            stride,
            padding: [padding, padding],
            padding_end: [padding, padding],
            bias: true,
            activation: Activation::None,
            rows: (0, 100),
            block,
            seed: 5,
        }
        .check();
    }
}

#[test]
fn network_stems() {
    // ResNet's 7x7 and MobileNetV2's 3x3 stems at stride 2, on a smaller
    // image (two 16-column chunks and a partial one), all rows and a block.
    for (kernel, padding, out_channels) in [(7, 3, 64), (3, 1, 32)] {
        for rows in [(0, 100), (3, 7)] {
            Case {
                c_in: 3,
                groups: 1,
                size: [40, 90],
                out_channels,
                kernel: [kernel, kernel],
                stride: 2,
                padding: [padding, padding],
                padding_end: [padding, padding],
                bias: true,
                activation: Activation::Clip { min: 0.0, max: 6.0 },
                rows,
                block: 0,
                seed: 1,
            }
            .check();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_geometries(
        c_in in 1usize..5,
        groups in 1usize..4,
        (h, w) in (1usize..24, 1usize..60),
        per_group in 1usize..40,
        (kh, kw) in (1usize..8, 1usize..8),
        stride in 1usize..3,
        (ph, pw) in (0usize..5, 0usize..5),
        (eh, ew) in (0usize..5, 0usize..5),
        bias in any::<bool>(),
        relu in any::<bool>(),
        rows in (0usize..12, 0usize..30),
        block in 0usize..4,
        seed in any::<u64>(),
    ) {
        Case {
            c_in,
            groups,
            size: [h, w],
            out_channels: groups * per_group,
            kernel: [kh, kw],
            stride,
            padding: [ph, pw],
            padding_end: [eh, ew],
            bias,
            activation: if relu { Activation::Relu } else { Activation::None },
            rows,
            block,
            seed,
        }
        .check();
    }
}
