//! Shared helpers for nnc's test suites: where the repository's models and
//! cases live, and how to list them.
//!
//! Architecture invariant: this crate depends on every other nnc crate and
//! nothing depends on it. The suites themselves live in `tests/tests/*.rs`
//! and read their inputs from `tests/cases/**` and `models/`.

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
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
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
