//! Subcommands of the `nnc` binary that need more than a few lines.

pub mod bench;
pub mod compile;
pub mod profile;
