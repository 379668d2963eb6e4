//! Benchmarks for nnc live in `benches/`; see `README.md`.
