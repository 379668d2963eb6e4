//! `explicit_pad`: a `pad` whose only user is a `conv2d`, `max_pool2d` or
//! `avg_pool2d` that could apply the same padding itself.
//!
//! A separate `pad` copies the whole map into a larger one, a kernel and a
//! buffer that the window op's own `pad` does without. The window op can
//! carry it when the padding is what it pads with and its padding is
//! symmetric: a constant `pad` of `H` and `W` only, the same before and
//! after, not negative (a crop), holding 0 for a `conv2d` or an
//! `avg_pool2d` that counts padding in its divisor, or `-inf` (or the
//! lowest float) for a `max_pool2d`; pools also need `ceil_mode=false` and
//! a total pad of at most half the kernel. The ONNX importer writes a `pad`
//! only for the asymmetric part of ONNX pads, which no window op can carry.

use super::{also_at, kind, pair, warning, Kind};
use crate::ir::{Graph, PadMode, Padding};
use nnc_frontend::Diagnostic;

/// The registry name.
pub const NAME: &str = "explicit_pad";

/// One warning per pad its user could carry.
pub fn explicit_pad(graph: &Graph) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let a = match kind(&node.op) {
            Kind::Pad(a) => a,
            Kind::Input
            | Kind::Fixed
            | Kind::Conv(_)
            | Kind::ConvTranspose(_)
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
            | Kind::Flatten
            | Kind::Other => continue,
        };
        let &[0, 0, top, left, 0, 0, bottom, right] = a.pads.as_slice() else {
            continue;
        };
        if a.mode != PadMode::Constant || top != bottom || left != right || top < 0 || left < 0 {
            continue;
        }
        if top == 0 && left == 0 {
            continue;
        }
        let extra = [top as usize, left as usize];
        let users = graph.users(id);
        let [user] = users.as_slice() else {
            continue;
        };
        let user_node = graph.node(*user);
        if graph.outputs().contains(&id)
            || user_node.inputs().iter().filter(|&&i| i == id).count() != 1
            || user_node.inputs().first() != Some(&id)
        {
            continue;
        }
        // The suggestion keeps the op's padding symmetric, as this pad is.
        let total = |own: Padding| [own.begin[0] + extra[0], own.begin[1] + extra[1]];
        let fits = |pad: [usize; 2], kernel: [usize; 2]| (0..2).all(|i| pad[i] <= kernel[i] / 2);
        let (fill, pad) = match kind(&user_node.op) {
            Kind::Conv(c) if a.value == 0.0 && c.padding.is_symmetric() => {
                ("zeros", total(c.padding))
            }
            Kind::AvgPool(p)
                if a.value == 0.0
                    && p.padding.is_symmetric()
                    && p.count_include_pad
                    && !p.ceil_mode
                    && fits(total(p.padding), p.kernel) =>
            {
                ("zeros", total(p.padding))
            }
            Kind::MaxPool(p)
                if a.value <= f32::MIN
                    && p.padding.is_symmetric()
                    && !p.ceil_mode
                    && fits(total(p.padding), p.kernel) =>
            {
                ("-inf", total(p.padding))
            }
            Kind::Conv(_)
            | Kind::AvgPool(_)
            | Kind::MaxPool(_)
            | Kind::Input
            | Kind::Fixed
            | Kind::ConvTranspose(_)
            | Kind::Linear
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
        let op = user_node.op.name();
        let d = warning(
            node,
            format!(
                "`{}` pads the input of `{}` explicitly, which {op} can do itself",
                node.name, user_node.name
            ),
            format!(
                "a padded copy of the map, {} of {fill} on each side",
                amount(extra)
            ),
        );
        let d = also_at(d, user_node, format!("could pad by {} itself", pair(pad)));
        found.push(
            d.with_note(format!(
                "{op} pads with {fill}, the same on both sides, so `pad={}` computes the same values without the copy",
                pair(pad)
            ))
            .with_help(format!(
                "remove `{}` and give `{}` `pad={}` (its own padding plus `{}`'s)",
                node.name,
                user_node.name,
                pair(pad),
                node.name
            )),
        );
    }
    found
}

/// "1 pixel", "2 pixels", or "1 row and 2 columns".
fn amount(p: [usize; 2]) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if p[0] == p[1] {
        plural(p[0], "pixel")
    } else {
        format!("{} and {}", plural(p[0], "row"), plural(p[1], "column"))
    }
}
