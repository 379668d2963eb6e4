//! Subcommands of the `nnc` binary that need more than a few lines.

pub mod bench;
pub mod bundle;
pub mod compile;
pub mod cores;
pub mod import;
pub mod lint;
pub mod profile;
pub mod run;
