//! `rnn` and `lstm`.

use super::{Consts, Kernel, Operands};
use crate::backend::BackendError;
use crate::ir::RecurrentAttrs;

/// `rnn` (`lstm == false`) or `lstm`.
pub fn build(
    _a: &RecurrentAttrs,
    _lstm: bool,
    _ops: Operands<'_>,
    _consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    Err(BackendError::Codegen(
        "rnn and lstm are not implemented yet".into(),
    ))
}

/// Arena scratch the kernel needs.
pub fn scratch_len(
    _a: &RecurrentAttrs,
    _lstm: bool,
    _inputs: &[&[usize]],
    _out: &[usize],
) -> usize {
    0
}
