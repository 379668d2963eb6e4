//! The weights of a graph: which tensors it expects, loading them from a
//! safetensors file with every name and shape checked, or seeding them.
//!
//! Seeded initialisation (used when no weights file is given) draws every
//! tensor uniformly from a range that depends on its role, with
//! `nnc_runtime::seeded_uniform` (ChaCha8 seeded by `seed ^ fnv1a64(name)`,
//! so a tensor depends only on its name, shape and the seed):
//!
//! | role | range |
//! |---|---|
//! | conv, linear, recurrent weight and bias | `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, PyTorch's default bound |
//! | norm weight (gamma) | `U(0.5, 1.5)` |
//! | norm bias (beta) | `U(-0.5, 0.5)` |
//! | batch-norm running mean | `U(-0.5, 0.5)` |
//! | batch-norm running variance | `U(0.5, 1.5)` |
//! | `constant` value | `U(-1, 1)` |
//! | `prelu` slope | `U(0, 0.5)` |
//!
//! BN statistics are deliberately not the trivial (0, 1, 1, 0), so tests
//! that fold BN into convolutions exercise every term of the formula.

use crate::ir::{Graph, Op, WeightRole};
use nnc_runtime::{
    check_weights, checked_numel, load_safetensors_within, seeded_uniform_part, MemoryLimit,
    Tensor, TensorError, WeightError, WeightSet,
};
use rayon::prelude::*;
use std::path::Path;

/// Every weight the graph uses, with its expected shape, in name order.
pub fn expected_weights(graph: &Graph) -> Vec<(String, Vec<usize>)> {
    let mut expected: Vec<(String, Vec<usize>)> = graph
        .node_ids()
        .into_iter()
        .filter_map(|id| {
            let node = graph.node(id);
            match &node.op {
                Op::Weight(w) => Some((w.name.clone(), node.ty.shape.clone())),
                _ => None,
            }
        })
        .collect();
    expected.sort();
    expected
}

/// The range seeded initialisation draws a weight of this role from.
pub fn init_range(role: WeightRole) -> (f32, f32) {
    match role {
        WeightRole::Kernel { fan_in } | WeightRole::Bias { fan_in } => {
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            (-bound, bound)
        }
        WeightRole::NormWeight => (0.5, 1.5),
        WeightRole::NormBias => (-0.5, 0.5),
        WeightRole::RunningMean => (-0.5, 0.5),
        WeightRole::RunningVar => (0.5, 1.5),
        WeightRole::Constant => (-1.0, 1.0),
        WeightRole::Slope => (0.0, 0.5),
    }
}

/// Elements of a seeded tensor drawn by one task.
const SEED_PART: usize = 1 << 16;

/// Weights for every `weight` node of the graph, seeded as documented above.
pub fn seeded_weights(graph: &Graph, seed: u64) -> Result<WeightSet, TensorError> {
    // Each tensor depends only on its name, shape and the seed, so they are
    // drawn on all cores.
    let nodes: Vec<_> = graph
        .node_ids()
        .into_iter()
        .filter_map(|id| {
            let node = graph.node(id);
            match &node.op {
                Op::Weight(w) => Some((w, &node.ty.shape)),
                _ => None,
            }
        })
        .collect();
    let tensors = nodes
        .par_iter()
        .map(|(w, shape)| {
            let (low, high) = init_range(w.role);
            let count = checked_numel(shape).ok_or_else(|| TensorError::Overflow {
                shape: shape.to_vec(),
            })?;
            // A few large tensors hold most of a model's weights (resnet18's
            // last convs): they are drawn in parts, on all cores.
            // Zeroed by the allocator: a large buffer is fresh pages, left
            // untouched until drawn into (no memset of 47 MB for resnet18),
            // so the advice below still comes before their first write.
            let mut data: Vec<f32> = vec![0.0; count];
            // 2 MiB pages: with 4 KiB ones, faulting in resnet18's 47 MB of
            // seeded weights took more time than drawing them.
            nnc_runtime::pages::advise_huge_pages(data.as_ptr().cast(), 4 * count);
            data.par_chunks_mut(SEED_PART)
                .enumerate()
                .try_for_each(|(i, part)| {
                    seeded_uniform_part(&w.name, low, high, seed, i * SEED_PART, part)
                })?;
            Ok((w.name.clone(), Tensor::new(shape.to_vec(), data)?))
        })
        .collect::<Result<Vec<_>, TensorError>>()?;
    let mut weights = WeightSet::new();
    for (name, tensor) in tensors {
        weights.insert(name, tensor);
    }
    Ok(weights)
}

/// Loads a safetensors file and checks it against the graph: every problem
/// (missing, extra or mis-shaped tensors) is reported, not only the first.
/// A tensor, or all of them, larger than `limit` is refused before it is
/// decoded.
pub fn load_weights(
    graph: &Graph,
    path: &Path,
    limit: MemoryLimit,
) -> Result<WeightSet, Vec<WeightError>> {
    let weights = load_safetensors_within(path, limit).map_err(|e| vec![e])?;
    let problems = check_weights(&expected_weights(graph), &weights);
    if problems.is_empty() {
        Ok(weights)
    } else {
        Err(problems)
    }
}

/// Renders weight-loading problems as one message: the file, how many
/// problems, then one line each (every line names the tensor and, for a
/// shape mismatch, both shapes).
pub fn describe_load_errors(path: &Path, errors: &[WeightError]) -> String {
    if let [only] = errors {
        let mismatch = matches!(
            only,
            WeightError::MissingTensor { .. }
                | WeightError::UnexpectedTensor { .. }
                | WeightError::ShapeMismatch { .. }
        );
        if !mismatch {
            // The file itself could not be read; there is nothing to compare.
            return format!("cannot load weights: {only}");
        }
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    format!(
        "the weights in `{}` do not match the model ({} problem{}):\n{}",
        path.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        lines.join("\n")
    )
}
