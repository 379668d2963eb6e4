//! The Winograd transforms `lower-conv` produces for 3x3 stride-1
//! convolutions: `winograd_input` and `winograd_output` (the products in
//! between are a grouped `gemm`). Written as the matrix products of the
//! definition, `BT d BT^T` and `AT M AT^T`, in f64, so they check the
//! compiled kernels' unrolled additions rather than repeat them.

use nnc_runtime::Tensor;

use super::check::{dims4, presence, shape_is};
use super::error::{operands, InterpError};
use crate::ir::{WinogradInputAttrs, WinogradOutputAttrs};
use nnc_runtime::kernels::winograd::Transform;

fn transform(op: &'static str, m: usize) -> Result<Transform, InterpError> {
    Transform::of(m).ok_or_else(|| operands(op, format!("no Winograd transform for tiles of {m}")))
}

/// `l [r, k] · x [k, c] · rt^T`, with `rt [s, c]`: the two-sided product
/// of a tile.
fn two_sided(l: &[f32], x: &[f64], rt: &[f32], r: usize, k: usize, s: usize) -> Vec<f64> {
    let c = rt.len() / s;
    let mut lx = vec![0.0f64; r * c];
    for i in 0..r {
        for j in 0..c {
            lx[i * c + j] = (0..k).map(|t| f64::from(l[i * k + t]) * x[t * c + j]).sum();
        }
    }
    let mut out = vec![0.0f64; r * s];
    for i in 0..r {
        for j in 0..s {
            out[i * s + j] = (0..c)
                .map(|t| lx[i * c + t] * f64::from(rt[j * c + t]))
                .sum();
        }
    }
    out
}

/// `winograd_input`: `x [N, C, H, W]` to `[N, a*a*C, TH, TW]`, row `e*C +
/// c` holding element `e` of `BT d BT^T` for the patch `d` of channel `c`
/// at `(m*ty - top, m*tx - left)`, zero outside `x`.
pub fn winograd_input(x: &Tensor, a: &WinogradInputAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "winograd_input";
    let t = transform(OP, a.tile)?;
    let [n, c, h, w] = dims4(OP, "input", x)?;
    let [th, tw] = a.tiles;
    let side = t.a();
    // The bottom and right padding are the tiles' reach past `x`.
    let [py, px] = a.padding.begin;
    let mut out = Tensor::zeros(vec![n, side * side * c, th, tw])?;
    let xd = x.data();
    let od = out.data_mut();
    let mut d = vec![0.0f64; side * side];
    for b in 0..n {
        for ch in 0..c {
            let plane = &xd[(b * c + ch) * h * w..][..h * w];
            for ty in 0..th {
                for tx in 0..tw {
                    for r in 0..side {
                        for s in 0..side {
                            // Coordinates in x, or past it (and zero).
                            let iy = (t.m * ty + r).checked_sub(py).filter(|&y| y < h);
                            let ix = (t.m * tx + s).checked_sub(px).filter(|&x| x < w);
                            d[r * side + s] = match (iy, ix) {
                                (Some(iy), Some(ix)) => f64::from(plane[iy * w + ix]),
                                _ => 0.0,
                            };
                        }
                    }
                    let v = two_sided(t.bt, &d, t.bt, side, side, side);
                    for (e, &value) in v.iter().enumerate() {
                        od[((b * side * side + e) * c + ch) * th * tw + ty * tw + tx] =
                            value as f32;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `winograd_output`: `[N, a*a*out, TH, TW]` and optional `bias [out]` to
/// `[N, out, output_size]`; tile `(ty, tx)` of channel `o` is `AT M AT^T +
/// bias[o]`, `M` gathering element `e` from row `e*out + o`.
pub fn winograd_output(
    x: &Tensor,
    bias: Option<&Tensor>,
    a: &WinogradOutputAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "winograd_output";
    let t = transform(OP, a.tile)?;
    let [n, rows, th, tw] = dims4(OP, "operand", x)?;
    let (side, c_out) = (t.a(), a.out_channels);
    if rows != side * side * c_out {
        return Err(operands(
            OP,
            format!("{rows} rows are not a*a*out = {side}*{side}*{c_out}"),
        ));
    }
    presence(OP, "bias", a.bias, bias.is_some())?;
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[c_out])?;
    }
    let [oh, ow] = a.output_size;
    if oh > t.m * th || ow > t.m * tw {
        return Err(operands(
            OP,
            format!("{th}x{tw} tiles of {} do not cover {oh}x{ow}", t.m),
        ));
    }
    let mut out = Tensor::zeros(vec![n, c_out, oh, ow])?;
    let xd = x.data();
    let od = out.data_mut();
    let mut tile = vec![0.0f64; side * side];
    for b in 0..n {
        for o in 0..c_out {
            let shift = bias.map_or(0.0, |bias| f64::from(bias.data()[o]));
            for ty in 0..th {
                for tx in 0..tw {
                    for (e, v) in tile.iter_mut().enumerate() {
                        *v = f64::from(
                            xd[((b * side * side + e) * c_out + o) * th * tw + ty * tw + tx],
                        );
                    }
                    let y = two_sided(t.at, &tile, t.at, t.m, side, t.m);
                    for p in 0..t.m {
                        for q in 0..t.m {
                            let (oy, ox) = (t.m * ty + p, t.m * tx + q);
                            if oy < oh && ox < ow {
                                od[((b * c_out + o) * oh + oy) * ow + ox] =
                                    (y[p * t.m + q] + shift) as f32;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}
