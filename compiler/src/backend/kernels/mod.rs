//! One kernel per lowered op: [`build`] decides how the op's work splits
//! into tasks and returns the code emitter for it. One file per op family.

mod conv;
mod copy;
mod depthwise;
mod elementwise;
mod gemm;
pub(super) use gemm::{gemv_in_place, linear_over_rows};
mod im2col;
mod indexing;
mod interpolate;
mod lanes;
mod norm;
mod pool;
mod recurrent;
mod reduce;
mod softmax;
mod winograd;

use super::BackendError;
use crate::ir::{Node, Op, ReduceAttrs, Reduction};
use cranelift_codegen::ir::{InstBuilder, Value};
use nnc_runtime::kernels::constants::{Constant, Constants};
use nnc_runtime::kernels::gemm::MicroKernel;
use nnc_runtime::kernels::Base;

/// A tensor the kernel reads or writes: where it lives and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buf {
    pub base: Base,
    pub shape: Vec<usize>,
}

impl Buf {
    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Data the kernels point at, owned by the compiled model: weights in the
/// layout their kernels read, index tables and the native kernels'
/// descriptors (`nnc_runtime::kernels::constants`).
#[derive(Default)]
pub struct Consts(Constants);

impl Consts {
    /// Takes over `other`'s constants (whose addresses do not change).
    pub fn merge(&mut self, other: Consts) {
        self.0.merge(other.0);
    }

    /// Keeps `values` alive and returns where they are.
    pub fn add(&mut self, values: Vec<f32>) -> Base {
        Base::Const(self.0.add(Constant::Floats(values)))
    }

    /// Keeps a table of indices alive and returns where it is. They are
    /// stored as the bit patterns of `f32`s, which kernels load as `i32`s
    /// and never compute with as floats.
    pub fn add_indices(&mut self, values: Vec<u32>) -> Base {
        self.add(values.into_iter().map(f32::from_bits).collect())
    }

    /// Keeps a table of element offsets alive and returns where it is.
    pub fn add_offsets(&mut self, values: Vec<i64>) -> ConstPtr {
        ConstPtr(self.0.add(Constant::Offsets(values)))
    }

    /// Keeps a native kernel's descriptor alive and returns the address
    /// its kernel is called with.
    pub fn keep(&mut self, descriptor: impl Into<Constant>) -> ConstPtr {
        ConstPtr(self.0.add(descriptor))
    }

    /// Bytes of constant data.
    pub fn bytes(&self) -> usize {
        self.0.bytes()
    }

    pub fn constants(&self) -> &Constants {
        &self.0
    }

    /// The constants, for the executable or a bundle to keep.
    pub fn into_constants(self) -> Constants {
        self.0
    }
}

pub use super::jit::{Body, ConstPtr};

/// A kernel to compile: its task count, the code, and what `nnc compile`
/// reports about it.
pub struct Kernel {
    pub tasks: usize,
    pub body: Body,
    /// The GEMM micro-kernel it calls, if any.
    pub micro_kernel: Option<String>,
    /// Whether Cranelift's optimiser should run: false for kernels that
    /// only move data.
    pub optimize: bool,
    /// A second step that finishes the op once every task of this one is
    /// done (the sum of a split separable product's partial results).
    pub then: Option<Box<Kernel>>,
    /// A step that prepares this one's scratch before any of its tasks
    /// starts (the state a recurrent layer's split steps synchronise on).
    pub before: Option<Box<Kernel>>,
}

impl Kernel {
    /// A kernel without native calls.
    pub fn jit(tasks: usize, body: Body) -> Kernel {
        Kernel {
            tasks: tasks.max(1),
            body,
            micro_kernel: None,
            optimize: true,
            then: None,
            before: None,
        }
    }

    /// A kernel that only moves data.
    pub fn copy(tasks: usize, body: Body) -> Kernel {
        Kernel {
            optimize: false,
            ..Kernel::jit(tasks, body)
        }
    }
}

/// What `build` needs besides the node: the operand tensors (the data
/// operands and the weights, as the op orders them), the output, the
/// weights' values for kernels that transform them at compile time, and
/// how many threads to split work for.
pub struct Operands<'a> {
    pub inputs: Vec<Buf>,
    pub values: Vec<Option<&'a [f32]>>,
    pub out: Buf,
    /// Arena space only this kernel uses, of [`scratch_len`] floats.
    pub scratch: Option<Base>,
    pub threads: usize,
    /// The native kernels' instruction set.
    pub kernel: MicroKernel,
    /// When the only reader of the output takes its channels in this many
    /// equal parts, part `q` on thread `q` (see [`channel_parts`]), the
    /// kernel splits its own work by output channels the same way, so each
    /// core writes the channels it will read; 1 otherwise.
    pub out_channel_parts: usize,
}

/// How many equal parts of its depthwise input's channels `op`'s kernel
/// splits across threads (part `q` on thread `q`), or 1 if it does not
/// split by channels.
pub fn channel_parts(op: &Op, out: &[usize], threads: usize) -> usize {
    match op {
        Op::SeparableConv2d(a) => conv::k_parts(a, out, threads),
        _ => 1,
    }
}

/// Floats of arena scratch space the kernel of `op` needs, given its
/// operands' and output's shapes and the threads work is split for.
pub fn scratch_len(op: &Op, inputs: &[&[usize]], out: &[usize], threads: usize) -> usize {
    if let Op::SeparableConv2d(a) = op {
        conv::scratch_len(a, out, threads)
    } else if let Op::Rnn(a) = op {
        recurrent::scratch_len(a, false, inputs, out, threads)
    } else if let Op::Lstm(a) = op {
        recurrent::scratch_len(a, true, inputs, out, threads)
    } else if let Op::Gru(a) = op {
        recurrent::scratch_len_gru(a, inputs, out, threads)
    } else {
        0
    }
}

/// Task `t`'s batch item (or plane) and output rows `r0..r1` (clipped to
/// `oh`) when each item's rows are cut into `blocks` blocks of `rows`.
pub(super) fn row_block(
    e: &mut crate::backend::jit::Emit,
    t: Value,
    blocks: usize,
    rows: usize,
    oh: usize,
) -> (Value, Value, Value) {
    let n = e.div_imm(t, blocks);
    let block = e.rem_imm(t, blocks);
    let r0 = e.mul_imm(block, rows);
    let r1 = e.add_imm(r0, rows);
    let limit = e.i(oh);
    let r1 = e.b.ins().umin(r1, limit);
    (n, r0, r1)
}

/// Floats in an op's output buffer: its type's elements, but for a
/// Winograd input transform that lays each element's matrix out in the
/// GEMM's panels ([`winograd::in_panels`]), its tiles rounded up to the
/// widest panel.
pub fn output_len(op: &Op, ty: &crate::ir::TensorType) -> usize {
    match (op, ty.shape.as_slice()) {
        (Op::WinogradInput(_), &[n, rows, th, tw]) if winograd::in_panels(&ty.shape) => {
            n * rows * (th * tw).next_multiple_of(nnc_runtime::kernels::gemm::MAX_PANEL_WIDTH)
        }
        _ => ty.numel(),
    }
}

/// Whether an op only reinterprets its operand's memory (no kernel).
pub fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_) | Op::Flatten(_) | Op::Identity | Op::Constant(_)
    ) || matches!(op, Op::Dropout(a) if a.mode == crate::ir::DropoutMode::Inverted)
}

/// Whether an op may write its output over its first operand: each output
/// element depends only on the operand elements at the same index.
pub fn can_run_in_place(op: &Op) -> bool {
    matches!(
        op,
        Op::Activation(_)
            | Op::Unary(_)
            | Op::Prelu(_)
            | Op::Binary(_)
            | Op::Elementwise(_)
            | Op::Dropout(_)
            | Op::BatchNorm(_)
    )
}

/// The kernel of `node`, or `None` for a view.
pub fn build(
    node: &Node,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Option<Kernel>, BackendError> {
    let unlowered = || BackendError::NotLowered {
        node: node.name.clone(),
        op: node.op.name(),
    };
    let kernel = match &node.op {
        Op::Input(_) | Op::Weight(_) | Op::Reshape(_) | Op::Flatten(_) | Op::Identity => {
            return Ok(None)
        }
        Op::Dropout(a) if a.mode == crate::ir::DropoutMode::Inverted => return Ok(None),
        Op::Activation(_)
        | Op::Unary(_)
        | Op::Prelu(_)
        | Op::Binary(_)
        | Op::Elementwise(_)
        | Op::Dropout(_)
        | Op::BatchNorm(_) => elementwise::build(&node.op, ops, consts)?,
        Op::Gemm(a) => gemm::gemm(a, ops, consts)?,
        Op::Linear(a) => gemm::linear(a, ops, consts)?,
        Op::Im2Col(a) => im2col::build(a, ops, consts),
        Op::Col2Im(a) => conv::col2im(a, ops, consts)?,
        Op::DepthwiseConv2d(a) => depthwise::depthwise(a, ops, consts)?,
        Op::SeparableConv2d(a) => conv::separable(a, ops, consts)?,
        Op::MaxPool2d(a) => pool::max_pool(a, ops, consts),
        Op::AvgPool2d(a) => pool::avg_pool(a, ops, consts),
        // The reductions' row kernel, which keeps four accumulators in
        // flight where this op's own kernel kept one: 1.2 to 2.6 times
        // faster on [1, 1280, 7, 7], [8, 256, 14, 14] and [1, 64, 56, 56].
        Op::GlobalAvgPool => reduce::build(
            &ReduceAttrs {
                function: Reduction::Mean,
                dims: vec![2, 3],
                keepdim: true,
            },
            ops,
        ),
        Op::GroupNorm(_) | Op::LayerNorm(_) | Op::InstanceNorm(_) => {
            norm::build(&node.op, ops, consts)?
        }
        Op::Softmax(a) => softmax::build(a, false, ops),
        Op::LogSoftmax(a) => softmax::build(a, true, ops),
        Op::Reduce(a) => reduce::build(a, ops),
        Op::LocalResponseNorm(a) => norm::local_response_norm(a, ops),
        Op::Permute(a) => copy::permute(a, ops),
        Op::Select(a) => copy::select(a, ops),
        Op::Concat(a) => copy::concat(a, ops),
        Op::Rnn(a) | Op::Lstm(a) => {
            recurrent::build(a, matches!(node.op, Op::Lstm(_)), ops, consts)?
        }
        Op::Pad(a) => copy::pad(a, ops),
        Op::Indexing(a) => indexing::build(a, ops, consts)?,
        Op::MatMul => gemm::matmul(ops),
        // A constant is its weight operand.
        Op::Constant(_) => return Ok(None),
        Op::Gru(a) => recurrent::build_gru(a, ops, consts)?,
        Op::WinogradInput(a) => winograd::input(a, ops, consts)?,
        Op::WinogradOutput(a) => winograd::output(a, ops, consts)?,
        Op::Interpolate(a) => interpolate::build(&node.name, a, ops, consts)?,
        // `lower-conv` leaves a `conv2d` only for the direct kernel (few
        // input channels) and rewrites every other convolution; the
        // backend runs only after it.
        Op::Conv2d(a) if a.direct_window() => conv::direct(a, ops, consts)?,
        Op::Conv2d(_) | Op::ConvTranspose2d(_) => return Err(unlowered()),
    };
    Ok(Some(kernel))
}
