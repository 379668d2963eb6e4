//! Shared helpers for nnc's test suites: where the repository's models and
//! cases live, and how to list them.
//!
//! Architecture invariant: this crate depends on every other nnc crate and
//! nothing depends on it. The suites themselves live in `tests/tests/*.rs`
//! and read their inputs from `tests/cases/**` and `models/`.

pub mod random_model;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Every `.nn` file under `dir` (recursively), sorted.
pub fn nn_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "nn") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The bundled models in `models/`.
pub fn models() -> Vec<PathBuf> {
    nn_files(&repo_root().join("models"))
}

/// Every case under `tests/cases/`.
pub fn cases() -> Vec<PathBuf> {
    nn_files(&repo_root().join("tests/cases"))
}

/// A tensor from a shape and its row-major values. Panics on a length
/// mismatch, which in a test is a bug in the test.
#[allow(clippy::unwrap_used)]
pub fn tensor(shape: &[usize], data: &[f32]) -> nnc_runtime::Tensor {
    nnc_runtime::Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
}

/// A tensor of values drawn uniformly from [-1, 1).
#[allow(clippy::unwrap_used)]
pub fn random(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng) -> nnc_runtime::Tensor {
    use rand::Rng;
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    nnc_runtime::Tensor::new(shape.to_vec(), data).unwrap()
}

/// Asserts `actual` has `shape` and each element is within
/// `tol * (1 + |expected|)` of `expected`.
pub fn assert_close(actual: &nnc_runtime::Tensor, shape: &[usize], expected: &[f32], tol: f32) {
    assert_eq!(actual.shape(), shape, "shape");
    assert_eq!(actual.len(), expected.len(), "length");
    for (i, (&a, &e)) in actual.data().iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "element {i}: got {a}, expected {e}\nactual: {:?}\nexpected: {expected:?}",
            actual.data()
        );
    }
}

/// [`assert_close`] with the tolerance of hand-computed cases, 1e-6.
pub fn assert_near(actual: &nnc_runtime::Tensor, shape: &[usize], expected: &[f32]) {
    assert_close(actual, shape, expected, 1e-6);
}
