//! The two transforms of a Winograd F(m x m, 3x3) convolution (see
//! [`nnc_runtime::kernels::winograd`]); the products between them are the `gemm`
//! kernel. Both are native code (`backend::winograd`); the kernel hands
//! its range of planes to it in one call.
//!
//! - `winograd_input`: one task per input channel plane.
//! - `winograd_output`: one task per output plane, with the bias, the
//!   residual and the activation.

use super::gemm::constant;
use super::{Consts, Kernel, Operands};
use crate::backend::activation::native_activation;
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::{WinogradInputAttrs, WinogradOutputAttrs};
use nnc_runtime::kernels::winograd::{WinogradInput, WinogradOutput};
use nnc_runtime::kernels::{entry, tasks};

/// Whether a `winograd_input` output of `shape` (`[N, a*a*C, th, tw]`) is
/// laid out in its GEMM's panels of B ([`WinogradInput::in_panels`]):
/// where it is too large to stay in cache between the two.
pub fn in_panels(shape: &[usize]) -> bool {
    tasks::from_memory(4 * shape.iter().product::<usize>())
}

/// `winograd_input`.
pub fn input(
    a: &WinogradInputAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    // The tiles reach past the input as far as the bottom and right
    // padding; only the top and left place them.
    let mut spec = WinogradInput::new(a.tile, [c, h, w], a.tiles, a.padding.begin, ops.kernel)?;
    if in_panels(&ops.out.shape) {
        spec = spec.in_panels(ops.kernel.panel_width());
    }
    let spec = consts.keep(spec);
    let (src, dst) = (x.base, ops.out.base);
    Ok(Kernel::jit(
        n * c,
        Box::new(move |e: &mut Emit| {
            let spec = e.ptr(spec);
            let (src, dst) = (e.base(src), e.base(dst));
            let (begin, end) = (e.begin, e.end);
            e.call(&entry::WINOGRAD_INPUT, &[spec, src, dst, begin, end])?;
            Ok(())
        }),
    ))
}

/// `winograd_output`.
pub fn output(
    a: &WinogradOutputAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let (n, th, tw) = (x.shape[0], x.shape[2], x.shape[3]);
    let bias = if a.bias {
        Some(constant(&ops, 1, "Winograd output bias")?)
    } else {
        None
    };
    let activation = match a.epilogue.activation {
        Some(act) => Some(native_activation(Some(act))?),
        None => None,
    };
    let spec = WinogradOutput::new(
        a.tile,
        a.out_channels,
        [th, tw],
        a.output_size,
        bias,
        activation,
        ops.kernel,
    )?;
    let spec = consts.keep(spec);
    let residual = a
        .epilogue
        .residual
        .then(|| ops.inputs.last().map(|r| r.base))
        .flatten();
    let (src, dst) = (x.base, ops.out.base);
    Ok(Kernel::jit(
        n * a.out_channels,
        Box::new(move |e: &mut Emit| {
            let spec = e.ptr(spec);
            let (src, dst) = (e.base(src), e.base(dst));
            let residual = match residual {
                Some(r) => e.base(r),
                None => e.i(0),
            };
            let (begin, end) = (e.begin, e.end);
            e.call(
                &entry::WINOGRAD_OUTPUT,
                &[spec, src, dst, residual, begin, end],
            )?;
            Ok(())
        }),
    ))
}
