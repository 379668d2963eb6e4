//! `gridding`: a chain of dilated convolutions whose rates leave holes in
//! what the top layer sees (the notes' dilated-conv section; Wang et al.,
//! 2018, "Understanding convolution for semantic segmentation").
//!
//! A chain is a path of stride-1 convolutions each feeding the next, through
//! ops that keep positions ([`super::per_position`]: activations, norms,
//! dropout, a bias or per-channel scale, 1x1 convs). A residual add, a
//! concat, a pool or a strided conv ends it. Along one axis, layer `i`
//! with kernel `k_i` and dilation `r_i` adds one of the offsets `0, r_i,
//! ..., (k_i - 1) r_i`, so the top layer sees exactly the sums of one
//! offset per layer; the lint computes that set and warns when it has holes
//! within its span, at the top of every chain of two or more convolutions
//! with a dilation above 1.
//!
//! The notes' rule of thumb, hybrid dilated convolution (HDC), asks for
//! `M_2 <= k` with `M_n = r_n` and `M_i = max(M_{i+1} - 2 r_i, M_{i+1} - 2
//! (M_{i+1} - r_i), r_i)`, and for rates without a common factor greater
//! than 1. It is stated for a first rate of 1 and rates that grow, so it
//! can miss holes (`[4, 1]` passes it) and report holes that are not there
//! (`[1, 3, 1]` sees every pixel). The sampling set decides; the warning
//! quotes the rule where the model breaks it.

use super::{also_at, kind, names, per_position, warning, Kind};
use crate::ir::{Graph, NodeId};
use nnc_frontend::Diagnostic;
use std::collections::{HashMap, HashSet};

/// The registry name.
pub const NAME: &str = "gridding";

/// Sampling sets wider than this (in input pixels) are not computed.
const MAX_SPAN: usize = 1 << 16;

/// Offsets listed before the rest are elided.
const MAX_LISTED: usize = 8;

/// One warning per chain top whose sampling set has holes.
pub fn gridding(graph: &Graph) -> Vec<Diagnostic> {
    let order = graph.topo_order();
    let windows: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| window(graph, id).is_some())
        .collect();
    let below: HashMap<NodeId, NodeId> = windows
        .iter()
        .filter_map(|&id| previous(graph, id).map(|p| (id, p)))
        .collect();
    let has_next: HashSet<NodeId> = below.values().copied().collect();
    let mut found = Vec::new();
    for &top in &windows {
        if has_next.contains(&top) && !leaves_chain(graph, top, &below) {
            continue;
        }
        let mut chain = vec![top];
        while let Some(&p) = chain.last().and_then(|c| below.get(c)) {
            chain.push(p);
        }
        chain.reverse();
        if chain.len() < 2 {
            continue;
        }
        if let Some(d) = judge(graph, &chain) {
            found.push(d);
        }
    }
    found
}

/// The kernel and dilation of a stride-1 convolution with a window (not
/// 1x1): a chain member.
fn window(graph: &Graph, id: NodeId) -> Option<([usize; 2], [usize; 2])> {
    match kind(&graph.node(id).op) {
        Kind::Conv(a) if a.stride == [1, 1] && a.kernel != [1, 1] => Some((a.kernel, a.dilation)),
        Kind::Conv(_)
        | Kind::Input
        | Kind::Fixed
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
        | Kind::Other => None,
    }
}

/// The chain member below `id`: the window conv its data operand comes
/// from through ops that keep positions.
fn previous(graph: &Graph, id: NodeId) -> Option<NodeId> {
    let mut at = *graph.node(id).inputs().first()?;
    loop {
        if window(graph, at).is_some() {
            return Some(at);
        }
        at = per_position(graph, at)?;
    }
}

/// True if `id`'s value also goes somewhere other than the next chain
/// member (a graph output, a residual add, a pool), so that its own
/// sampling set matters as well as the top's.
fn leaves_chain(graph: &Graph, id: NodeId, below: &HashMap<NodeId, NodeId>) -> bool {
    let mut stack = vec![id];
    let mut seen = HashSet::new();
    while let Some(at) = stack.pop() {
        if !seen.insert(at) {
            continue;
        }
        if graph.outputs().contains(&at) {
            return true;
        }
        for user in graph.users(at) {
            if below.get(&user) == Some(&id) {
                continue;
            }
            if per_position(graph, user) == Some(at) {
                stack.push(user);
            } else {
                return true;
            }
        }
    }
    false
}

/// What the top of a chain sees along one axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampling {
    /// Pixels the window spans: `1 + sum((k_i - 1) * r_i)`.
    pub span: usize,
    /// Offsets from the window's first pixel that no sum of taps reaches,
    /// ascending.
    pub holes: Vec<usize>,
    /// The greatest common divisor of the rates.
    pub common_factor: usize,
    /// Every kernel is odd, so the set is symmetric about the centre.
    pub centred: bool,
}

/// The sampling set of a stack of layers `(kernel, rate)` along one axis,
/// bottom first: the sums of one offset `t * r_i` (`t < k_i`) per layer.
/// `None` when it is wider than 65,536 pixels or a kernel is empty.
pub fn sample(layers: &[(usize, usize)]) -> Option<Sampling> {
    if layers.iter().any(|&(k, _)| k == 0) {
        return None;
    }
    let span = 1 + layers
        .iter()
        .try_fold(0usize, |s, &(k, r)| s.checked_add((k - 1).checked_mul(r)?))?;
    if span > MAX_SPAN {
        return None;
    }
    let mut reached = vec![false; span];
    reached[0] = true;
    let mut width = 1;
    for &(k, r) in layers {
        let mut next = vec![false; span];
        for (at, _) in reached[..width].iter().enumerate().filter(|(_, &x)| x) {
            for tap in 0..k {
                next[at + tap * r] = true;
            }
        }
        width += (k - 1) * r;
        reached = next;
    }
    Some(Sampling {
        span,
        holes: (0..span).filter(|&i| !reached[i]).collect(),
        common_factor: layers.iter().fold(0, |g, &(_, r)| gcd(g, r)),
        centred: layers.iter().all(|&(k, _)| k % 2 == 1),
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// HDC's `M_2` for layers `(kernel, rate)` from the bottom up (two or more).
fn hdc_m2(layers: &[(usize, usize)]) -> Option<usize> {
    let (&(_, top), rest) = layers.split_last()?;
    if rest.is_empty() {
        return None;
    }
    let mut m = top as i64;
    for &(_, r) in rest[1..].iter().rev() {
        let r = r as i64;
        m = (m - 2 * r).max(m - 2 * (m - r)).max(r);
    }
    usize::try_from(m).ok()
}

impl Sampling {
    /// True when the set is exactly every `common_factor`-th pixel.
    fn periodic(&self) -> bool {
        self.common_factor > 1
            && (0..self.span)
                .all(|i| self.holes.binary_search(&i).is_ok() == (i % self.common_factor != 0))
    }

    /// "1 of every 2" or "13 of the 25".
    fn share(&self) -> String {
        if self.periodic() {
            format!("1 of every {}", self.common_factor)
        } else {
            format!("{} of the {}", self.span - self.holes.len(), self.span)
        }
    }

    /// The holes as offsets: `±1, ±3` from the centre when the set is
    /// symmetric, else positions from the window's first pixel.
    fn offsets(&self) -> String {
        let listed: Vec<String> = if self.centred {
            let centre = (self.span - 1) / 2;
            self.holes
                .iter()
                .filter(|&&h| h > centre)
                .map(|h| format!("±{}", h - centre))
                .collect()
        } else {
            self.holes.iter().map(usize::to_string).collect()
        };
        let more = listed.len().saturating_sub(MAX_LISTED);
        let mut text = listed
            .into_iter()
            .take(MAX_LISTED)
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        if self.centred {
            format!("the offsets {text} from the centre")
        } else {
            format!("the pixels {text} of 0..{}", self.span - 1)
        }
    }
}

/// The warning for a chain (bottom first), if its top sees holes.
fn judge(graph: &Graph, chain: &[NodeId]) -> Option<Diagnostic> {
    let windows: Vec<([usize; 2], [usize; 2])> =
        chain.iter().filter_map(|&id| window(graph, id)).collect();
    if windows.iter().all(|(_, d)| *d == [1, 1]) {
        return None;
    }
    let axis_layers = |axis: usize| -> Vec<(usize, usize)> {
        windows
            .iter()
            .filter(|(k, _)| k[axis] > 1)
            .map(|(k, d)| (k[axis], d[axis]))
            .collect()
    };
    let layers = [axis_layers(0), axis_layers(1)];
    let sampled = [sample(&layers[0])?, sample(&layers[1])?];
    if sampled.iter().all(|s| s.holes.is_empty()) {
        return None;
    }
    let same = layers[0] == layers[1];
    let top = graph.node(*chain.last()?);
    let first = graph.node(*chain.first()?);
    let input = first
        .inputs()
        .first()
        .map_or("its input", |&i| graph.node(i).name.as_str());
    let rates: Vec<String> = windows.iter().map(|(_, d)| super::pair(*d)).collect();
    let message = format!(
        "gridding: dilations {} leave holes in what `{}` sees of `{input}`",
        rates.join(", "),
        top.name
    );
    let axis_name = ["vertically", "horizontally"];
    let label = if same {
        format!("sees {} pixels in each direction", sampled[0].share())
    } else {
        let parts: Vec<String> = (0..2)
            .filter(|&a| !sampled[a].holes.is_empty())
            .map(|a| format!("{} pixels {}", sampled[a].share(), axis_name[a]))
            .collect();
        format!("sees {}", parts.join(" and "))
    };
    let mut d = warning(top, message, label);
    for (&id, (_, dilation)) in chain.iter().zip(&windows).rev().skip(1) {
        if *dilation != [1, 1] {
            d = also_at(
                d,
                graph.node(id),
                format!("dilation {}", super::pair(*dilation)),
            );
        }
    }
    for axis in 0..2 {
        let s = &sampled[axis];
        if s.holes.is_empty() || (same && axis == 1) {
            continue;
        }
        let direction = if same {
            "in each direction"
        } else {
            axis_name[axis]
        };
        d = d.with_note(format!(
            "of the {} pixels its window spans {direction}, `{}` never sees {}",
            s.span,
            top.name,
            s.offsets()
        ));
        let rates: Vec<String> = layers[axis].iter().map(|(_, r)| r.to_string()).collect();
        if s.common_factor > 1 {
            d = d.with_note(format!(
                "the rates {} share the factor {}: every offset the stack reaches is a multiple of it",
                rates.join(", "),
                s.common_factor
            ));
        }
        let kernel = layers[axis].first().map_or(1, |&(k, _)| k);
        match hdc_m2(&layers[axis]) {
            Some(m2) if m2 > kernel => {
                d = d.with_note(format!(
                    "the HDC rule needs M_2 <= {kernel} (the kernel size); here M_2 = {m2}"
                ))
            }
            Some(_) | None => {}
        }
    }
    let names: Vec<&str> = chain
        .iter()
        .map(|&id| graph.node(id).name.as_str())
        .collect();
    Some(d.with_help(suggest(&layers, &names)))
}

/// Saw-tooth rates for the chain: `[1, 2, 5]` repeated, or `[1, 2, 3]`
/// repeated for kernels too small for it, from the layer below the first
/// dilated one up; the rates below stay 1.
fn suggest(layers: &[Vec<(usize, usize)>; 2], chain: &[&str]) -> String {
    let axis = usize::from(layers[0].is_empty());
    let layers = &layers[axis];
    // The cycle starts at the layer below the first dilated one, which
    // already has rate 1, so a stack over an undilated trunk keeps it.
    let start = layers
        .iter()
        .position(|&(_, r)| r > 1)
        .unwrap_or(0)
        .saturating_sub(1);
    let fits = |cycle: &[usize]| -> Option<Vec<usize>> {
        let rates: Vec<usize> = (0..layers.len())
            .map(|i| {
                if i < start {
                    1
                } else {
                    cycle[(i - start) % cycle.len()]
                }
            })
            .collect();
        let tried: Vec<(usize, usize)> = layers
            .iter()
            .zip(&rates)
            .map(|(&(k, _), &r)| (k, r))
            .collect();
        sample(&tried).filter(|s| s.holes.is_empty()).map(|_| rates)
    };
    let rates = fits(&[1, 2, 5]).or_else(|| fits(&[1, 2, 3]));
    let whom = if chain.len() <= 6 {
        names(chain.iter().copied())
    } else {
        format!(
            "the {} convolutions from `{}` to `{}`",
            chain.len(),
            chain.first().copied().unwrap_or_default(),
            chain.last().copied().unwrap_or_default()
        )
    };
    match rates {
        Some(rates) if chain.len() == layers.len() => {
            let list: Vec<String> = rates.iter().map(usize::to_string).collect();
            format!(
                "use saw-tooth rates without a common factor, such as dilation [{}] for {whom}, with pad = dilation * (kernel - 1) / 2 to keep the size",
                list.join(", ")
            )
        }
        Some(_) | None => {
            format!("use saw-tooth rates without a common factor, such as [1, 2, 5], for {whom}")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn holes(rates: &[usize]) -> Vec<usize> {
        let layers: Vec<(usize, usize)> = rates.iter().map(|&r| (3, r)).collect();
        sample(&layers).map(|s| s.holes).unwrap_or_default()
    }

    #[test]
    fn saw_tooth_rates_see_every_pixel() {
        assert!(holes(&[1, 2, 5]).is_empty());
        assert!(holes(&[1, 1, 1]).is_empty());
        assert!(holes(&[1, 3, 1]).is_empty());
    }

    #[test]
    fn common_factors_leave_every_other_pixel() {
        let s = sample(&[(3, 2), (3, 4), (3, 6)]).unwrap();
        assert_eq!(s.span, 25);
        assert!(s.periodic());
        assert_eq!(s.share(), "1 of every 2");
        assert_eq!(holes(&[2, 2, 2]), vec![1, 3, 5, 7, 9, 11]);
    }

    #[test]
    fn hdc_m2_matches_the_paper() {
        // Wang et al.: [1, 2, 5] with 3x3 kernels gives M_2 = 2 <= 3; [1, 2, 9] gives 5.
        assert_eq!(hdc_m2(&[(3, 1), (3, 2), (3, 5)]), Some(2));
        assert_eq!(hdc_m2(&[(3, 1), (3, 2), (3, 9)]), Some(5));
        assert_eq!(holes(&[1, 2, 9]), vec![7, 8, 16, 17]);
    }
}
