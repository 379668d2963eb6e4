//! `max_pool2d`, `avg_pool2d` and `global_avg_pool` on `[N, C, H, W]`.
//!
//! Output sizes follow PyTorch, including `ceil_mode` (a last window that
//! would start inside the padding after the input is dropped, as in ONNX
//! when that padding differs from the padding before). Max pooling treats
//! padding as `-inf` and propagates NaN; average pooling follows PyTorch's
//! divisor rule for `count_include_pad`, which ONNX shares.

use nnc_runtime::Tensor;

use super::check::{dims4, positive_pair, Window};
use super::error::{operands, InterpError};
use crate::ir::{AvgPool2dAttrs, MaxPool2dAttrs, Padding};

/// `max_pool2d`: the maximum over each dilated window; padding never wins.
pub fn max_pool2d(x: &Tensor, a: &MaxPool2dAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "max_pool2d";
    let [n, c, h, w] = dims4(OP, "input", x)?;
    check_window(OP, a.kernel, a.stride, a.padding)?;
    positive_pair(OP, "dilation", a.dilation)?;
    let wy = Window::axis(0, a.kernel, a.stride, a.padding, a.dilation);
    let wx = Window::axis(1, a.kernel, a.stride, a.padding, a.dilation);
    let oh = wy.out_len(OP, "height", h, a.ceil_mode)?;
    let ow = wx.out_len(OP, "width", w, a.ceil_mode)?;

    let mut out = Tensor::zeros(vec![n, c, oh, ow])?;
    for (plane_index, plane) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let in_plane = &x.data()[plane_index * h * w..][..h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = f32::NEG_INFINITY;
                for ky in 0..wy.kernel {
                    let Some(iy) = tap(oy, ky, wy, h) else {
                        continue;
                    };
                    for kx in 0..wx.kernel {
                        let Some(ix) = tap(ox, kx, wx, w) else {
                            continue;
                        };
                        let v = in_plane[iy * w + ix];
                        if v > best || v.is_nan() {
                            best = v;
                        }
                    }
                }
                plane[oy * ow + ox] = best;
            }
        }
    }
    Ok(out)
}

/// `avg_pool2d`. With `count_include_pad` the divisor is the window clipped
/// to the padded input (`min(start + k, begin + len + end) - start` per
/// axis in padded coordinates, as in PyTorch and ONNX); otherwise it is the
/// number of real input elements in the window.
pub fn avg_pool2d(x: &Tensor, a: &AvgPool2dAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "avg_pool2d";
    let [n, c, h, w] = dims4(OP, "input", x)?;
    check_window(OP, a.kernel, a.stride, a.padding)?;
    let wy = Window::axis(0, a.kernel, a.stride, a.padding, [1, 1]);
    let wx = Window::axis(1, a.kernel, a.stride, a.padding, [1, 1]);
    let oh = wy.out_len(OP, "height", h, a.ceil_mode)?;
    let ow = wx.out_len(OP, "width", w, a.ceil_mode)?;

    let mut out = Tensor::zeros(vec![n, c, oh, ow])?;
    for (plane_index, plane) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let in_plane = &x.data()[plane_index * h * w..][..h * w];
        for oy in 0..oh {
            let (y0, y1, padded_h) = avg_extent(oy, wy, h);
            for ox in 0..ow {
                let (x0, x1, padded_w) = avg_extent(ox, wx, w);
                let mut sum = 0.0f64;
                for row in in_plane[y0 * w..y1 * w].chunks_exact(w) {
                    sum += row[x0..x1].iter().map(|&v| f64::from(v)).sum::<f64>();
                }
                let divisor = if a.count_include_pad {
                    padded_h * padded_w
                } else {
                    (y1 - y0) * (x1 - x0)
                };
                plane[oy * ow + ox] = if divisor == 0 {
                    0.0
                } else {
                    (sum / divisor as f64) as f32
                };
            }
        }
    }
    Ok(out)
}

/// `global_avg_pool`: the mean over `H, W`, `[N, C, H, W] -> [N, C, 1, 1]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor, InterpError> {
    const OP: &str = "global_avg_pool";
    let [n, c, h, w] = dims4(OP, "input", x)?;
    if h * w == 0 {
        return Err(operands(OP, "the input has no spatial elements to average"));
    }
    let means = x
        .data()
        .chunks_exact(h * w)
        .map(|plane| (plane.iter().map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64) as f32)
        .collect();
    Ok(Tensor::new(vec![n, c, 1, 1], means)?)
}

/// Checks the attributes common to both pools: positive kernel and stride,
/// and padding on each side at most half the kernel (PyTorch's rule, which
/// guarantees that every window overlaps the real input).
fn check_window(
    op: &'static str,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> Result<(), InterpError> {
    positive_pair(op, "kernel", kernel)?;
    positive_pair(op, "stride", stride)?;
    if (0..2).any(|i| padding.largest(i) > kernel[i] / 2) {
        return Err(operands(
            op,
            format!(
                "padding {padding} must be at most half the kernel [{}, {}] on each side",
                kernel[0], kernel[1]
            ),
        ));
    }
    Ok(())
}

/// The input index that tap `k` of output position `o` reads, if it is a
/// real (unpadded) element.
fn tap(o: usize, k: usize, win: Window, len: usize) -> Option<usize> {
    (o * win.stride + k * win.dilation)
        .checked_sub(win.pad)
        .filter(|&i| i < len)
}

/// For average-pool output position `o`: the real input range `start..end`
/// of its window and the window length clipped to the padded input.
fn avg_extent(o: usize, win: Window, len: usize) -> (usize, usize, usize) {
    // Positions in padded coordinates, where the real input is pad..pad+len.
    let start = o * win.stride;
    let end = (start + win.kernel).min(win.pad + len + win.pad_end);
    let padded = end - start;
    let real_start = start.max(win.pad) - win.pad;
    let real_end = (end.min(win.pad + len))
        .saturating_sub(win.pad)
        .max(real_start);
    (real_start, real_end, padded)
}
