//! `checkerboard`: a `conv_transpose2d` whose kernel is not a multiple of
//! its stride (Odena, Dumoulin and Olah, 2016, "Deconvolution and
//! checkerboard artifacts").
//!
//! Along one axis, input `i` writes its `k` taps to outputs `i*s - pad +
//! t*d`, so output `o` sums the taps `t` with `t*d ≡ o + pad (mod s)`. When
//! the number of such taps differs between residues, neighbouring outputs
//! sum different numbers of products: a periodic pattern that training has
//! to fight. With `d = 1` this is `k % s != 0`; a dilation sharing a factor
//! with the stride leaves some outputs with no tap at all.

use super::{kind, pair, warning, Kind};
use crate::ir::{ConvTranspose2dAttrs, Graph};
use nnc_frontend::Diagnostic;

/// The registry name.
pub const NAME: &str = "checkerboard";

/// One warning per transposed convolution that overlaps unevenly.
pub fn checkerboard(graph: &Graph) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let a = match kind(&node.op) {
            Kind::ConvTranspose(a) => a,
            Kind::Input
            | Kind::Fixed
            | Kind::Conv(_)
            | Kind::Linear
            | Kind::MaxPool(_)
            | Kind::AvgPool(_)
            | Kind::GlobalPool
            | Kind::BatchNorm
            | Kind::Norm
            | Kind::Activation
            | Kind::Arithmetic
            | Kind::Dropout(_)
            | Kind::Identity
            | Kind::Pad(_)
            | Kind::Flatten
            | Kind::Other => continue,
        };
        let taps = [0, 1].map(|axis| taps_per_residue(a, axis));
        let uneven = |t: &Vec<usize>| t.iter().min() != t.iter().max();
        if !taps.iter().any(uneven) {
            continue;
        }
        let message = format!(
            "checkerboard artifacts: transposed convolution `{}` overlaps unevenly (kernel {}, stride {})",
            node.name,
            pair(a.kernel),
            pair(a.stride)
        );
        let label = if taps.iter().any(|t| t.contains(&0)) {
            "some outputs receive no kernel tap at all".to_string()
        } else {
            let mut counts: Vec<usize> = taps.iter().flatten().copied().collect();
            counts.sort_unstable_by(|x, y| y.cmp(x));
            counts.dedup();
            let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
            format!("neighbouring outputs sum {} kernel taps", or_list(&counts))
        };
        let mut d = warning(node, message, label).with_note(
            "where the windows of neighbouring inputs overlap, an output sums more products than its neighbour, a periodic pattern that shows as a checkerboard (Odena et al., 2016)",
        );
        if a.dilation != [1, 1] && taps.iter().any(|t| t.contains(&0)) {
            d = d.with_note(format!(
                "dilation {} and stride {} share a factor, so the taps of one input land on every other output only",
                pair(a.dilation),
                pair(a.stride)
            ));
        }
        d = d.with_help(fix(a, &taps.map(|t| uneven(&t))));
        found.push(d);
    }
    found
}

/// How many of the kernel's taps reach an output of each residue modulo
/// the stride, along `axis`.
fn taps_per_residue(a: &ConvTranspose2dAttrs, axis: usize) -> Vec<usize> {
    let stride = a.stride[axis].max(1);
    let mut counts = vec![0; stride];
    for t in 0..a.kernel[axis] {
        counts[t * a.dilation[axis] % stride] += 1;
    }
    counts
}

/// "2 and 1", "3, 2 and 1".
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The help: a kernel that is a multiple of the stride (with the `pad` and
/// `output_padding` that keep the output size, when some do), or an
/// upsampling that does not overlap followed by a convolution.
fn fix(a: &ConvTranspose2dAttrs, uneven: &[bool; 2]) -> String {
    let mut kernel = a.kernel;
    let mut dilation = a.dilation;
    for axis in 0..2 {
        if uneven[axis] {
            let s = a.stride[axis].max(1);
            kernel[axis] = a.kernel[axis].div_ceil(s) * s;
            dilation[axis] = 1;
        }
    }
    let mut pads = [0usize; 2];
    let mut output_padding = [0usize; 2];
    let mut keeps_size = true;
    for axis in 0..2 {
        // The output size is (H - 1)*s + extent - 2*pad + output_padding
        // with extent = dilation*(kernel - 1) + 1; keep extent - 2*pad +
        // output_padding.
        let target = (a.dilation[axis] * a.kernel[axis].saturating_sub(1)) as i64
            - 2 * a.padding[axis] as i64
            + a.output_padding[axis] as i64;
        let extent = (dilation[axis] * kernel[axis].saturating_sub(1)) as i64;
        let limit = a.stride[axis].max(dilation[axis]) as i64;
        let found = (0..limit).find_map(|op| {
            let twice_pad = extent + op - target;
            (twice_pad >= 0 && twice_pad % 2 == 0).then_some((twice_pad / 2, op))
        });
        match found {
            Some((p, op)) => {
                pads[axis] = p as usize;
                output_padding[axis] = op as usize;
            }
            None => keeps_size = false,
        }
    }
    let mut attrs = format!("kernel={}", pair(kernel));
    if dilation != a.dilation {
        attrs.push_str(&format!(", dilation={}", pair(dilation)));
    }
    let size = if keeps_size {
        attrs.push_str(&format!(", pad={}", pair(pads)));
        if output_padding != [0, 0] {
            attrs.push_str(&format!(", output_padding={}", pair(output_padding)));
        }
        " keeps the output size"
    } else {
        ""
    };
    format!(
        "use a kernel that is a multiple of the stride: `{attrs}`{size}; or upsample without overlap (a conv_transpose2d with kernel={} and stride={}) and then convolve with a conv2d",
        pair(a.stride),
        pair(a.stride)
    )
}
