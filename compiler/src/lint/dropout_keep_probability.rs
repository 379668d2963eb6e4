//! `dropout_keep_probability`: a classic `dropout` whose `p` is above 0.5.
//!
//! nnc's `p` is the probability of dropping a unit, as in `nn.Dropout`;
//! classic dropout multiplies by the keep probability `1 - p` at
//! inference. The notes write `p` for the keep probability, so a model
//! written from them says `p=0.8` meaning "keep 80%" and gets a scale of
//! 0.2. Dropping more than half the units is rare enough that a `p` above
//! 0.5 is more likely that mix-up. Inverted dropout is the identity at
//! inference, so its `p` changes nothing there and is not checked.

use super::receptive_field::percent;
use super::{decimal, kind, warning, Kind};
use crate::ir::{DropoutMode, Graph};
use nnc_frontend::Diagnostic;

/// The registry name.
pub const NAME: &str = "dropout_keep_probability";

/// One warning per classic dropout with `p > 0.5`.
pub fn dropout_keep_probability(graph: &Graph) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let a = match kind(&node.op) {
            Kind::Dropout(a) => a,
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
            | Kind::Identity
            | Kind::Pad(_)
            | Kind::Flatten
            | Kind::Other => continue,
        };
        if a.mode != DropoutMode::Classic || a.p <= 0.5 {
            continue;
        }
        let p = decimal(f64::from(a.p));
        let keep = decimal(1.0 - f64::from(a.p));
        found.push(
            warning(
                node,
                format!(
                    "classic dropout `{}` with p={p} keeps only {}% of its units",
                    node.name,
                    percent(1.0 - f64::from(a.p))
                ),
                format!("multiplies by 1 - p = {keep} at inference"),
            )
            .with_note(
                "nnc's `p` is the probability of dropping a unit, as in `nn.Dropout`; the notes write `p` for the probability of keeping one",
            )
            .with_help(format!(
                "if {p} is the probability of keeping a unit, write `p={keep}`"
            )),
        );
    }
    found
}
