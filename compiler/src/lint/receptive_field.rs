//! `receptive_field`: global pooling, or a classifier on a flattened map,
//! reads units that each see only part of the input.
//!
//! The receptive field is `nnc stats`' ([`crate::stats`]): the extent in
//! input pixels that one position of a map depends on. Global average
//! pooling then averages positions whose windows are smaller than the
//! image, so no unit it pools has seen the whole object; a `linear`
//! classifier on a flattened map weighs such units by position. Either way
//! part of the image never influences a single unit before pooling. A field
//! that some op made global (a spatial norm) counts as the whole input. The
//! input size is the largest `H` and `W` of the model's rank-4 inputs.

use super::{also_at, decimal, kind, per_position, warning, Kind};
use crate::ir::{Graph, NodeId};
use crate::stats::{stats, ReceptiveField};
use nnc_frontend::Diagnostic;
use std::collections::{HashMap, HashSet};

/// The registry name.
pub const NAME: &str = "receptive_field";

/// One warning per pooled or classified map whose field is smaller than
/// the input.
pub fn receptive_field(graph: &Graph) -> Vec<Diagnostic> {
    let image = graph
        .inputs()
        .iter()
        .map(|&i| &graph.node(i).ty.shape)
        .filter(|s| s.len() == 4)
        .fold(None, |acc: Option<[usize; 2]>, s| {
            let [h, w] = acc.unwrap_or([0, 0]);
            Some([h.max(s[2]), w.max(s[3])])
        });
    let Some(image) = image else {
        return Vec::new();
    };
    let fields: HashMap<NodeId, ReceptiveField> = stats(graph)
        .layers
        .into_iter()
        .map(|l| (l.id, l.receptive_field))
        .collect();
    let field = |id: NodeId| match kind(&graph.node(id).op) {
        // `stats` lists ops only; an input is its own 1x1 field.
        Kind::Input => ReceptiveField::Window {
            size: [1.0, 1.0],
            stride: [1.0, 1.0],
        },
        Kind::Fixed
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
        | Kind::Pad(_)
        | Kind::Flatten
        | Kind::Other => fields.get(&id).copied().unwrap_or(ReceptiveField::None),
    };
    let mut found = Vec::new();
    let mut reported = HashSet::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let (map, pooled) = match kind(&node.op) {
            Kind::GlobalPool => match node.inputs().first() {
                Some(&x) => (x, true),
                None => continue,
            },
            Kind::Linear => match classified_map(graph, id) {
                Some(x) => (x, false),
                None => continue,
            },
            Kind::Input
            | Kind::Fixed
            | Kind::Conv(_)
            | Kind::ConvTranspose(_)
            | Kind::MaxPool(_)
            | Kind::AvgPool(_)
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
        let ReceptiveField::Window { size, stride } = field(map) else {
            continue;
        };
        if (size[0] >= image[0] as f64 && size[1] >= image[1] as f64) || !reported.insert(map) {
            continue;
        }
        let seen = size[0].min(image[0] as f64) * size[1].min(image[1] as f64);
        let share = seen / (image[0] * image[1]) as f64;
        let extent = |v: [f64; 2]| format!("{}x{}", decimal(v[0]), decimal(v[1]));
        let picture = format!("{}x{}", image[0], image[1]);
        let map_node = graph.node(map);
        let (message, label, before) = if pooled {
            (
                format!(
                    "receptive field: each unit that `{}` averages sees {} of the {picture} input",
                    node.name,
                    extent(size)
                ),
                format!(
                    "averages units that each see {}% of the image",
                    percent(share)
                ),
                "pooling",
            )
        } else {
            (
                format!(
                    "receptive field: each unit that the classifier `{}` reads sees {} of the {picture} input",
                    node.name,
                    extent(size)
                ),
                format!(
                    "weighs units that each see {}% of the image",
                    percent(share)
                ),
                "the classifier",
            )
        };
        let d = warning(node, message, label);
        let d = also_at(
            d,
            map_node,
            format!(
                "receptive field {}, neighbouring units {} pixels apart",
                extent(size),
                extent(stride)
            ),
        )
        .with_note(format!(
            "{}% of the image never influences a single unit of `{}` before {before}, so no unit can respond to anything larger than {} pixels",
            percent(1.0 - share),
            map_node.name,
            extent(size)
        ))
        .with_help(format!(
            "grow the receptive field to the input before {before}: more 3x3 layers (two see 5x5), strides or pooling earlier, or dilated convolutions; `nnc stats` shows the field of every layer"
        ));
        found.push(d);
    }
    found
}

/// The rank-4 map a `linear` classifies: its operand traced back through
/// ops that keep positions to a `flatten` or `reshape` of a rank-4 value.
fn classified_map(graph: &Graph, linear: NodeId) -> Option<NodeId> {
    let mut at = *graph.node(linear).inputs().first()?;
    loop {
        let node = graph.node(at);
        match kind(&node.op) {
            Kind::Flatten => {
                let x = *node.inputs().first()?;
                return (graph.node(x).ty.rank() == 4).then_some(x);
            }
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
            | Kind::Pad(_)
            | Kind::Other => at = per_position(graph, at)?,
        }
    }
}

/// A share as a whole percentage, never rounded to 0 or 100.
pub(crate) fn percent(share: f64) -> String {
    let p = (share * 100.0).round();
    let p = if share > 0.0 && p < 1.0 {
        1.0
    } else if share < 1.0 && p > 99.0 {
        99.0
    } else {
        p
    };
    format!("{p}")
}
