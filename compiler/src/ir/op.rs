//! The closed set of operators and their typed attributes.
//!
//! Every attribute is stored resolved: defaults applied, negative dims
//! normalised, pairs expanded to `[h, w]`, paddings to [`Padding`]. Adding a variant must break every
//! `match` that needs to handle it, so matches on `Op` never use `_ =>`.

use super::elementwise::{Activation, BinaryOp, ElementwiseAttrs, Epilogue, UnaryFunction};
use super::indexing::Indexing;
use super::interpolate::{InterpolateAttrs, InterpolateMode};
use super::padding::Padding;
use super::reduce::ReduceAttrs;

/// Which parameter of its op a weight is; decides its seeded initialisation
/// (see `crate::weights`) and how passes treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRole {
    /// Conv, linear or recurrent weight; `fan_in` inputs per output.
    Kernel { fan_in: usize },
    /// Additive bias of a conv, linear or recurrent op.
    Bias { fan_in: usize },
    /// Norm scale (gamma).
    NormWeight,
    /// Norm shift (beta).
    NormBias,
    /// BatchNorm running mean.
    RunningMean,
    /// BatchNorm running variance (positive).
    RunningVar,
    /// The value of a `constant` (an imported ONNX initializer that no op
    /// owns).
    Constant,
    /// The negative slope of a `prelu`.
    Slope,
}

/// `input name: dtype[shape]`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputAttrs {
    pub name: String,
}

/// A named parameter tensor, loaded from the weights file or seeded.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightAttrs {
    /// Full PyTorch-style path, e.g. `layer1.0.conv1.weight`.
    pub name: String,
    pub role: WeightRole,
}

/// `conv2d`. Inputs: `x [N, C_in, H, W]`, `weight [out, C_in/groups, kh, kw]`, optional `bias [out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dAttrs {
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
    /// Set by `fuse`; empty as written in a `.nn` file.
    pub epilogue: Epilogue,
}

impl Conv2dAttrs {
    /// Whether the backend's direct convolution computes this window: no
    /// dilation or fused residual, and the same stride of 1 or 2 on both
    /// axes (groups are computed one after another). `lower-conv` leaves
    /// such a conv as `conv2d` when it has few input channels, or few per
    /// group.
    pub fn direct_window(&self) -> bool {
        self.dilation == [1, 1] && matches!(self.stride, [1, 1] | [2, 2]) && !self.epilogue.residual
    }
}

/// `conv_transpose2d`. Inputs: `x [N, C_in, H, W]`, `weight [C_in, out/groups, kh, kw]`, optional `bias [out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose2dAttrs {
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
    /// Set by `fuse`; empty as written in a `.nn` file.
    pub epilogue: Epilogue,
}

/// `batch_norm` (inference form). Inputs: `x [N, C, ...]`, `weight`, `bias`,
/// `running_mean`, `running_var`, each `[C]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormAttrs {
    pub eps: f32,
}

/// `group_norm`: normalises over `(C/groups, H, W)` per sample and group.
/// Inputs: `x`, then `weight [C]`, `bias [C]` when `affine`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNormAttrs {
    pub groups: usize,
    pub eps: f32,
    pub affine: bool,
}

/// `layer_norm`: normalises over the last `normalized_dims` dims per sample.
/// Inputs: `x`, then `weight`, `bias` of the normalised shape when `affine`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormAttrs {
    pub normalized_dims: usize,
    pub eps: f32,
    pub affine: bool,
}

/// `instance_norm`: normalises over `(H, W)` per sample and channel.
/// Inputs: `x`, then `weight [C]`, `bias [C]` when `affine`.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceNormAttrs {
    pub eps: f32,
    pub affine: bool,
}

/// `prelu`: `x` where `x >= 0`, else `weight[c] * x` for channel `c` (dim
/// 1; every element shares `weight[0]` when `num_parameters` is 1).
/// Inputs: `x`, `weight [num_parameters]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PreluAttrs {
    pub num_parameters: usize,
}

/// `local_response_norm` across channels (dim 1) of `x [N, C, ...]`:
/// `y = x / (k + alpha/size * sum of x^2 over the window)^beta`, where the
/// window of channel `c` is `c - before ..= c - before + size - 1`, clipped
/// to the channels (zero padding). PyTorch's window has `before =
/// size / 2`; ONNX's `LRN` has `(size - 1) / 2`, which differs for even
/// sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalResponseNormAttrs {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub k: f32,
    /// Channels of the window before the channel normalised, below `size`.
    pub before: usize,
}

impl LocalResponseNormAttrs {
    /// One output, `v / (k + alpha/size * sum)^beta` for the window's sum
    /// of squares `sum`, in f64: the interpreter's, and the compiled
    /// kernel's where its f32 sum overflows.
    pub fn normalise(&self, v: f32, sum: f64) -> f32 {
        nnc_runtime::kernels::tasks::lrn_normalise(v, sum, self.size, self.alpha, self.beta, self.k)
    }
}

/// `max_pool2d`. Padding counts as `-inf`; no side exceeds half the kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool2dAttrs {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

/// `avg_pool2d`. No side of the padding exceeds half the kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct AvgPool2dAttrs {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub ceil_mode: bool,
    /// Divide by the window clipped to the padded input, zero padding
    /// included (PyTorch's default); otherwise by the number of input
    /// elements in the window.
    pub count_include_pad: bool,
}

/// `linear`. Inputs: `x [..., in]`, `weight [out, in]`, optional `bias [out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearAttrs {
    pub out_features: usize,
    pub bias: bool,
    /// Set by `fuse`; empty as written in a `.nn` file.
    pub epilogue: Epilogue,
}

/// `flatten`: merges dims `start_dim..=end_dim` (both normalised).
#[derive(Clone, Debug, PartialEq)]
pub struct FlattenAttrs {
    pub start_dim: usize,
    pub end_dim: usize,
}

/// `reshape` to a fully resolved shape (no `-1`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReshapeAttrs {
    pub shape: Vec<usize>,
}

/// `permute`: output dim `i` is input dim `dims[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PermuteAttrs {
    pub dims: Vec<usize>,
}

/// `select`: picks `index` along `dim` and removes that dim.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectAttrs {
    pub dim: usize,
    pub index: usize,
}

/// `concat` along `dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConcatAttrs {
    pub dim: usize,
}

/// `softmax` and `log_softmax` along `dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxAttrs {
    pub dim: usize,
}

/// How a dropout layer behaves at inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropoutMode {
    /// Scaled by `1/(1-p)` in training, the identity at inference (PyTorch).
    Inverted,
    /// Unscaled in training, multiplied by the keep probability `1-p` at
    /// inference (the original formulation).
    Classic,
}

/// `dropout` with drop probability `p`.
#[derive(Clone, Debug, PartialEq)]
pub struct DropoutAttrs {
    pub p: f32,
    pub mode: DropoutMode,
}

/// `rnn` and `lstm`. Input `[seq, batch, in]` (or `[batch, seq, in]` with
/// `batch_first`); output the last layer's hidden state at every step,
/// `[seq, batch, hidden]` (or batch first). Inputs after `x`, per layer `l`:
/// `weight_ih_l{l} [G*hidden, in_l]`, `weight_hh_l{l} [G*hidden, hidden]`,
/// then when `bias` `bias_ih_l{l} [G*hidden]`, `bias_hh_l{l} [G*hidden]`,
/// where `G` is 1 for `rnn` and 4 for `lstm` (gate order i, f, g, o as in
/// PyTorch). Initial states are zero unless `initial_state`.
///
/// With `direction` reverse, each layer reads the sequence from its last
/// step to its first and its weights are named `*_l{l}_reverse`; with
/// bidirectional, each layer has both sets and its output is the forward and
/// the reverse hidden states concatenated, `2*hidden` features (PyTorch's
/// `bidirectional=True`). With `initial_state`, the operands after `x` are
/// `h0` (and `c0` for `lstm`), each `[layers*directions, batch, hidden]`,
/// then the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentAttrs {
    pub hidden: usize,
    pub layers: usize,
    pub bias: bool,
    pub batch_first: bool,
    pub direction: RnnDirection,
    pub initial_state: bool,
    /// Per batch element, how many steps of its sequence are real (each in
    /// `1..=seq`); empty when all are. A shorter sequence stops early: its
    /// outputs after its last step are zero and its final state is the one
    /// after its last step (a reverse pass starts at its last step).
    pub lengths: Vec<usize>,
    /// What the op returns.
    pub output: RecurrentOutput,
    /// `gru` only: whether the reset gate scales the recurrent product
    /// (`n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`, PyTorch's and
    /// ONNX's `linear_before_reset=1`) or the state before it (`n =
    /// tanh(W_in x + b_in + W_hn (r * h) + b_hn)`, ONNX's default and
    /// Keras's `reset_after=False`).
    pub linear_before_reset: bool,
}

/// The result of a recurrent op: the last layer's hidden state at every
/// step, or the final states of every layer and direction (PyTorch's
/// `h_n` and, for `lstm`, `c_n`, each `[layers*directions, batch, hidden]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentOutput {
    Sequence,
    HiddenState,
    CellState,
}

impl RecurrentOutput {
    /// The spelling in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            RecurrentOutput::Sequence => "sequence",
            RecurrentOutput::HiddenState => "h_n",
            RecurrentOutput::CellState => "c_n",
        }
    }
}

/// Which way a recurrent layer reads its sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RnnDirection {
    Forward,
    Reverse,
    Bidirectional,
}

impl RnnDirection {
    /// The spelling in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            RnnDirection::Forward => "forward",
            RnnDirection::Reverse => "reverse",
            RnnDirection::Bidirectional => "bidirectional",
        }
    }

    /// How many directions each layer runs.
    pub fn count(self) -> usize {
        match self {
            RnnDirection::Forward | RnnDirection::Reverse => 1,
            RnnDirection::Bidirectional => 2,
        }
    }

    /// The weight-name suffix of each direction a layer runs, in output
    /// order: `""` for forward, `"_reverse"` for reverse.
    pub fn suffixes(self) -> &'static [&'static str] {
        match self {
            RnnDirection::Forward => &[""],
            RnnDirection::Reverse => &["_reverse"],
            RnnDirection::Bidirectional => &["", "_reverse"],
        }
    }
}

impl RecurrentAttrs {
    /// Initial-state operands between `x` and the weights: `h0`, and `c0`
    /// for `lstm` (`gates` = 4).
    pub fn state_operands(&self, gates: usize) -> usize {
        match (self.initial_state, gates) {
            (false, _) => 0,
            (true, 4) => 2,
            (true, _) => 1,
        }
    }
}

/// `pad`: widens each dim by `pads[d]` elements before and `pads[rank + d]`
/// after (ONNX's order); a negative pad crops that many instead.
#[derive(Clone, Debug, PartialEq)]
pub struct PadAttrs {
    pub pads: Vec<i64>,
    pub mode: PadMode,
    /// The fill value of `PadMode::Constant`.
    pub value: f32,
}

/// What the padding holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// `value` everywhere.
    Constant,
    /// The input mirrored at its edge, the edge itself not repeated.
    Reflect,
    /// The edge element repeated.
    Edge,
}

impl PadMode {
    /// The spelling in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
        }
    }
}

/// `constant`: a tensor of a fixed shape, held in its weight `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantAttrs {
    pub shape: Vec<usize>,
}

/// `im2col`: `x [N, C, H, W]` to the column matrix `[N, C*kh*kw, H_out,
/// W_out]` of a convolution's input windows, row `(c*kh + ky)*kw + kx`;
/// padding reads as zero. The rows of one conv group are contiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct Im2ColAttrs {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub dilation: [usize; 2],
}

/// `gemm`: a grouped matrix product over the channel axis. Operands `x [N,
/// groups*K, S...]`, `weight [M, K]`, optional `bias [M]`, then the
/// epilogue's residual. Output `[N, M, S...]` with
/// `y[n, g*M/groups + m, s] = sum_k weight[g*M/groups + m, k] * x[n, g*K + k, s]`.
/// A 1x1 conv is a gemm on its input; an im2col'd conv a gemm on the columns.
///
/// With `winograd: Some(m)` (a Winograd F(mxm, 3x3) conv's products, one
/// group per transformed element) the weight operand is the conv's own 3x3
/// weight `[M/groups, K, 3, 3]`, and the `[M, K]` weight above is its
/// transform: row `e*M/groups + o` is element `e` of `G g G^T` for filter
/// `(o, k)` (see `nnc_runtime::kernels::winograd::transform`). The transform is computed where the
/// weight is used (the backend transforms while packing) rather than
/// stored: ResNet-18's transformed weights are 72 MB.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    pub out_channels: usize,
    pub groups: usize,
    pub bias: bool,
    pub epilogue: Epilogue,
    pub winograd: Option<usize>,
}

/// `col2im`: the scatter-add half of a transposed convolution. Operand
/// `cols [N, out*kh*kw, H, W]` (row `(o*kh + ky)*kw + kx`, as `gemm` makes
/// it from a `conv_transpose2d` weight), optional `bias [out]`, then the
/// epilogue's residual; output `[N, out, H_out, W_out]` where column
/// `(iy, ix)` lands at `(iy*stride - pad + ky*dilation, ...)`. `output_size`
/// is stored because `output_padding` makes it ambiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct Col2ImAttrs {
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub output_size: [usize; 2],
    pub bias: bool,
    pub epilogue: Epilogue,
}

/// `winograd_input`: the input transform of Winograd's F(m x m, 3x3) (see
/// [`nnc_runtime::kernels::winograd`]). Operand `x [N, C, H, W]`; output `[N, a*a*C,
/// tiles[0], tiles[1]]` (`a = m + 2`) whose row `e*C + c` holds element `e`
/// (row-major in the `a x a` tile) of `BT d BT^T`, `d` being the patch of
/// channel `c` at `(m*ty - top, m*tx - left)` (`padding.begin`), zero
/// outside `x`. Rows are grouped by element so that a `gemm` with `groups =
/// a*a` is the per-element channel sum. `padding` is the conv's; its
/// bottom and right sides are only what the tiles cover past `x`.
#[derive(Clone, Debug, PartialEq)]
pub struct WinogradInputAttrs {
    /// Outputs per tile side, `m`.
    pub tile: usize,
    /// Tiles down and across.
    pub tiles: [usize; 2],
    pub padding: Padding,
}

/// `winograd_output`: the output transform of F(m x m, 3x3). Operand `[N,
/// a*a*out, TH, TW]` (row `e*out + o`, as `gemm` makes it from
/// `winograd_input` rows), optional `bias [out]`, then the epilogue's
/// residual; output `[N, out, output_size]` where tile `(ty, tx)` fills
/// the `m x m` block at `(m*ty, m*tx)` with `AT M AT^T`, clipped to
/// `output_size`.
#[derive(Clone, Debug, PartialEq)]
pub struct WinogradOutputAttrs {
    pub out_channels: usize,
    pub tile: usize,
    pub output_size: [usize; 2],
    pub bias: bool,
    pub epilogue: Epilogue,
}

/// `separable_conv2d`: a depthwise conv and the 1x1 pointwise conv that
/// reads it, as one op whose kernel works tile by tile, optionally after
/// the 1x1 conv that expands its input (`expand`). Operands: `x`; with
/// `expand`, its weight `[C, in]` and bias `[C]` when `expand.bias`; the
/// depthwise weight `[C_mid, 1, kh, kw]` and bias `[C_mid]` when
/// `depthwise.bias`; the pointwise weight `[out, C_mid]`, its bias `[out]`
/// when `bias`; then the pointwise epilogue's residual. The depthwise
/// epilogue holds at most an activation.
#[derive(Clone, Debug, PartialEq)]
pub struct SeparableConv2dAttrs {
    pub expand: Option<Expansion>,
    pub depthwise: Conv2dAttrs,
    pub out_channels: usize,
    pub bias: bool,
    pub epilogue: Epilogue,
}

impl SeparableConv2dAttrs {
    /// The index of the depthwise weight among the operands.
    pub fn depthwise_operand(&self) -> usize {
        1 + self.expand.as_ref().map_or(0, |e| 1 + usize::from(e.bias))
    }

    /// The operands before the epilogue's residual: `x` and the weights.
    pub fn own_operands(&self) -> usize {
        self.depthwise_operand() + 2 + usize::from(self.depthwise.bias) + usize::from(self.bias)
    }
}

/// The 1x1 stride-1 conv a `separable_conv2d` starts with when it has one
/// (the expansion of MobileNetV2's inverted residual blocks): `x [N, in,
/// H, W]` becomes `act(weight · x + bias)` with the depthwise conv's `C`
/// input channels. The kernel computes it a block of rows at a time, so it
/// never exists whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Expansion {
    pub in_channels: usize,
    pub bias: bool,
    pub activation: Option<Activation>,
}

/// The operators of the IR.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Input(InputAttrs),
    Weight(WeightAttrs),
    Conv2d(Conv2dAttrs),
    ConvTranspose2d(ConvTranspose2dAttrs),
    BatchNorm(BatchNormAttrs),
    GroupNorm(GroupNormAttrs),
    LayerNorm(LayerNormAttrs),
    InstanceNorm(InstanceNormAttrs),
    /// An elementwise activation (`relu`, `sigmoid`, ...).
    Activation(Activation),
    /// Elementwise unary math (`exp`, `sqrt`, ...).
    Unary(UnaryFunction),
    Prelu(PreluAttrs),
    MaxPool2d(MaxPool2dAttrs),
    AvgPool2d(AvgPool2dAttrs),
    /// Mean over `H, W`: `[N, C, H, W] -> [N, C, 1, 1]`.
    GlobalAvgPool,
    Linear(LinearAttrs),
    Flatten(FlattenAttrs),
    Reshape(ReshapeAttrs),
    Permute(PermuteAttrs),
    Select(SelectAttrs),
    /// Elementwise arithmetic with NumPy broadcasting (`add`, `sub`, ...).
    Binary(BinaryOp),
    Concat(ConcatAttrs),
    Softmax(SoftmaxAttrs),
    /// `log(softmax(x))`, computed as `x - max - log(sum(exp(x - max)))`.
    LogSoftmax(SoftmaxAttrs),
    /// `mean`, `sum`, `amax`, `amin` over some dims, and `global_max_pool`.
    Reduce(ReduceAttrs),
    LocalResponseNorm(LocalResponseNormAttrs),
    Dropout(DropoutAttrs),
    Identity,
    Rnn(RecurrentAttrs),
    Lstm(RecurrentAttrs),
    // Produced by `fuse` and `lower-conv`; never written in a `.nn` file.
    Elementwise(ElementwiseAttrs),
    Im2Col(Im2ColAttrs),
    Gemm(GemmAttrs),
    Col2Im(Col2ImAttrs),
    /// A conv with `groups = C_in` (any channel multiplier).
    DepthwiseConv2d(Conv2dAttrs),
    SeparableConv2d(SeparableConv2dAttrs),
    /// NumPy `matmul` of two operands of rank at least 2; the leading dims
    /// broadcast.
    MatMul,
    Pad(PadAttrs),
    Constant(ConstantAttrs),
    /// `gru`, PyTorch's gate order r, z, n (`G` = 3).
    Gru(RecurrentAttrs),
    WinogradInput(WinogradInputAttrs),
    WinogradOutput(WinogradOutputAttrs),
    /// `slice`, `index_select`, `repeat`, `expand`.
    Indexing(Indexing),
    /// Nearest or bilinear resizing of `[N, C, H, W]` to `[N, C, size]`.
    Interpolate(InterpolateAttrs),
}

impl Op {
    /// The epilogue of an op that can carry one.
    pub fn epilogue(&self) -> Option<&Epilogue> {
        match self {
            Op::Conv2d(a) | Op::DepthwiseConv2d(a) => Some(&a.epilogue),
            Op::ConvTranspose2d(a) => Some(&a.epilogue),
            Op::Linear(a) => Some(&a.epilogue),
            Op::Gemm(a) => Some(&a.epilogue),
            Op::Col2Im(a) => Some(&a.epilogue),
            Op::SeparableConv2d(a) => Some(&a.epilogue),
            Op::WinogradOutput(a) => Some(&a.epilogue),
            Op::Input(_)
            | Op::Weight(_)
            | Op::BatchNorm(_)
            | Op::GroupNorm(_)
            | Op::LayerNorm(_)
            | Op::InstanceNorm(_)
            | Op::Activation(_)
            | Op::Unary(_)
            | Op::Prelu(_)
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::GlobalAvgPool
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Permute(_)
            | Op::Select(_)
            | Op::Binary(_)
            | Op::Concat(_)
            | Op::Softmax(_)
            | Op::LogSoftmax(_)
            | Op::Reduce(_)
            | Op::LocalResponseNorm(_)
            | Op::Dropout(_)
            | Op::Identity
            | Op::Rnn(_)
            | Op::Lstm(_)
            | Op::Elementwise(_)
            | Op::Im2Col(_)
            | Op::MatMul
            | Op::Pad(_)
            | Op::Constant(_)
            | Op::Gru(_)
            | Op::WinogradInput(_)
            | Op::Indexing(_)
            | Op::Interpolate(_) => None,
        }
    }

    /// The epilogue, mutable.
    pub fn epilogue_mut(&mut self) -> Option<&mut Epilogue> {
        match self {
            Op::Conv2d(a) | Op::DepthwiseConv2d(a) => Some(&mut a.epilogue),
            Op::ConvTranspose2d(a) => Some(&mut a.epilogue),
            Op::Linear(a) => Some(&mut a.epilogue),
            Op::Gemm(a) => Some(&mut a.epilogue),
            Op::Col2Im(a) => Some(&mut a.epilogue),
            Op::SeparableConv2d(a) => Some(&mut a.epilogue),
            Op::WinogradOutput(a) => Some(&mut a.epilogue),
            Op::Input(_)
            | Op::Weight(_)
            | Op::BatchNorm(_)
            | Op::GroupNorm(_)
            | Op::LayerNorm(_)
            | Op::InstanceNorm(_)
            | Op::Activation(_)
            | Op::Unary(_)
            | Op::Prelu(_)
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::GlobalAvgPool
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Permute(_)
            | Op::Select(_)
            | Op::Binary(_)
            | Op::Concat(_)
            | Op::Softmax(_)
            | Op::LogSoftmax(_)
            | Op::Reduce(_)
            | Op::LocalResponseNorm(_)
            | Op::Dropout(_)
            | Op::Identity
            | Op::Rnn(_)
            | Op::Lstm(_)
            | Op::Elementwise(_)
            | Op::Im2Col(_)
            | Op::MatMul
            | Op::Pad(_)
            | Op::Constant(_)
            | Op::Gru(_)
            | Op::WinogradInput(_)
            | Op::Indexing(_)
            | Op::Interpolate(_) => None,
        }
    }

    /// The name used in `.nn` files and IR dumps.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input(_) => "input",
            Op::Weight(_) => "weight",
            Op::Conv2d(_) => "conv2d",
            Op::ConvTranspose2d(_) => "conv_transpose2d",
            Op::BatchNorm(_) => "batch_norm",
            Op::GroupNorm(_) => "group_norm",
            Op::LayerNorm(_) => "layer_norm",
            Op::InstanceNorm(_) => "instance_norm",
            Op::Activation(a) => a.name(),
            Op::Unary(f) => f.name(),
            Op::Prelu(_) => "prelu",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Linear(_) => "linear",
            Op::Flatten(_) => "flatten",
            Op::Reshape(_) => "reshape",
            Op::Permute(_) => "permute",
            Op::Select(_) => "select",
            Op::Binary(b) => b.name(),
            Op::Concat(_) => "concat",
            Op::Softmax(_) => "softmax",
            Op::LogSoftmax(_) => "log_softmax",
            Op::Reduce(a) => a.function.name(),
            Op::LocalResponseNorm(_) => "local_response_norm",
            Op::Dropout(_) => "dropout",
            Op::Identity => "identity",
            Op::Rnn(_) => "rnn",
            Op::Lstm(_) => "lstm",
            Op::Elementwise(_) => "elementwise",
            Op::Im2Col(_) => "im2col",
            Op::Gemm(_) => "gemm",
            Op::Col2Im(_) => "col2im",
            Op::DepthwiseConv2d(_) => "depthwise_conv2d",
            Op::SeparableConv2d(_) => "separable_conv2d",
            Op::MatMul => "matmul",
            Op::Pad(_) => "pad",
            Op::Constant(_) => "constant",
            Op::Gru(_) => "gru",
            Op::WinogradInput(_) => "winograd_input",
            Op::WinogradOutput(_) => "winograd_output",
            Op::Indexing(a) => a.name(),
            Op::Interpolate(_) => "interpolate",
        }
    }

    /// Attributes as `name=value` pairs, in a fixed order, for the printer.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        fn pair(p: [usize; 2]) -> String {
            format!("[{}, {}]", p[0], p[1])
        }
        fn list(v: &[usize]) -> String {
            let items: Vec<String> = v.iter().map(|d| d.to_string()).collect();
            format!("[{}]", items.join(", "))
        }
        fn float(f: f32) -> String {
            format!("{f:?}")
        }
        fn with_epilogue(
            mut attrs: Vec<(&'static str, String)>,
            e: &Epilogue,
        ) -> Vec<(&'static str, String)> {
            if !e.is_empty() {
                attrs.push(("epilogue", e.describe()));
            }
            attrs
        }
        fn conv(a: &Conv2dAttrs) -> Vec<(&'static str, String)> {
            with_epilogue(
                vec![
                    ("out", a.out_channels.to_string()),
                    ("kernel", pair(a.kernel)),
                    ("stride", pair(a.stride)),
                    ("pad", a.padding.to_string()),
                    ("dilation", pair(a.dilation)),
                    ("groups", a.groups.to_string()),
                    ("bias", a.bias.to_string()),
                ],
                &a.epilogue,
            )
        }
        match self {
            Op::Input(a) => vec![("name", format!("{:?}", a.name))],
            Op::Weight(a) => vec![("name", format!("{:?}", a.name))],
            Op::Conv2d(a) | Op::DepthwiseConv2d(a) => conv(a),
            Op::ConvTranspose2d(a) => with_epilogue(
                vec![
                    ("out", a.out_channels.to_string()),
                    ("kernel", pair(a.kernel)),
                    ("stride", pair(a.stride)),
                    ("pad", pair(a.padding)),
                    ("output_padding", pair(a.output_padding)),
                    ("dilation", pair(a.dilation)),
                    ("groups", a.groups.to_string()),
                    ("bias", a.bias.to_string()),
                ],
                &a.epilogue,
            ),
            Op::BatchNorm(a) => vec![("eps", float(a.eps))],
            Op::GroupNorm(a) => vec![
                ("groups", a.groups.to_string()),
                ("eps", float(a.eps)),
                ("affine", a.affine.to_string()),
            ],
            Op::LayerNorm(a) => vec![
                ("dims", a.normalized_dims.to_string()),
                ("eps", float(a.eps)),
                ("affine", a.affine.to_string()),
            ],
            Op::InstanceNorm(a) => vec![("eps", float(a.eps)), ("affine", a.affine.to_string())],
            Op::GlobalAvgPool | Op::Binary(_) | Op::Identity => vec![],
            Op::Activation(a) => a.attributes(),
            Op::Unary(f) => f.attributes(),
            Op::Prelu(a) => vec![("num_parameters", a.num_parameters.to_string())],
            Op::Indexing(a) => a.attributes(),
            Op::MaxPool2d(a) => vec![
                ("kernel", pair(a.kernel)),
                ("stride", pair(a.stride)),
                ("pad", a.padding.to_string()),
                ("dilation", pair(a.dilation)),
                ("ceil_mode", a.ceil_mode.to_string()),
            ],
            Op::AvgPool2d(a) => vec![
                ("kernel", pair(a.kernel)),
                ("stride", pair(a.stride)),
                ("pad", a.padding.to_string()),
                ("ceil_mode", a.ceil_mode.to_string()),
                ("count_include_pad", a.count_include_pad.to_string()),
            ],
            Op::Linear(a) => with_epilogue(
                vec![
                    ("out", a.out_features.to_string()),
                    ("bias", a.bias.to_string()),
                ],
                &a.epilogue,
            ),
            Op::Flatten(a) => vec![
                ("start_dim", a.start_dim.to_string()),
                ("end_dim", a.end_dim.to_string()),
            ],
            Op::Reshape(a) => vec![("shape", list(&a.shape))],
            Op::Permute(a) => vec![("dims", list(&a.dims))],
            Op::Select(a) => vec![("dim", a.dim.to_string()), ("index", a.index.to_string())],
            Op::Concat(a) => vec![("dim", a.dim.to_string())],
            Op::Softmax(a) | Op::LogSoftmax(a) => vec![("dim", a.dim.to_string())],
            Op::Reduce(a) => vec![("dims", list(&a.dims)), ("keepdim", a.keepdim.to_string())],
            Op::LocalResponseNorm(a) => vec![
                ("size", a.size.to_string()),
                ("alpha", float(a.alpha)),
                ("beta", float(a.beta)),
                ("k", float(a.k)),
                ("before", a.before.to_string()),
            ],
            Op::Dropout(a) => vec![
                ("p", float(a.p)),
                (
                    "mode",
                    match a.mode {
                        DropoutMode::Inverted => "\"inverted\"".to_string(),
                        DropoutMode::Classic => "\"classic\"".to_string(),
                    },
                ),
            ],
            Op::Rnn(a) | Op::Lstm(a) | Op::Gru(a) => {
                let mut attrs = vec![
                    ("hidden", a.hidden.to_string()),
                    ("layers", a.layers.to_string()),
                    ("bias", a.bias.to_string()),
                    ("batch_first", a.batch_first.to_string()),
                ];
                // Printed only when not the default, so that the IR of
                // models written before these attributes existed is
                // unchanged.
                if a.direction != RnnDirection::Forward {
                    attrs.push(("direction", format!("{:?}", a.direction.name())));
                }
                if a.initial_state {
                    attrs.push(("initial_state", "true".to_string()));
                }
                if !a.lengths.is_empty() {
                    attrs.push(("lengths", list(&a.lengths)));
                }
                if a.output != RecurrentOutput::Sequence {
                    attrs.push(("output", format!("{:?}", a.output.name())));
                }
                if !a.linear_before_reset {
                    attrs.push(("linear_before_reset", "false".to_string()));
                }
                attrs
            }
            Op::MatMul => vec![],
            Op::Pad(a) => vec![
                ("pads", {
                    let items: Vec<String> = a.pads.iter().map(i64::to_string).collect();
                    format!("[{}]", items.join(", "))
                }),
                ("mode", format!("{:?}", a.mode.name())),
                ("value", float(a.value)),
            ],
            Op::Elementwise(a) => {
                let steps: Vec<String> = a.steps.iter().map(|s| s.describe()).collect();
                vec![("steps", format!("[{}]", steps.join(", ")))]
            }
            Op::Im2Col(a) => vec![
                ("kernel", pair(a.kernel)),
                ("stride", pair(a.stride)),
                ("pad", a.padding.to_string()),
                ("dilation", pair(a.dilation)),
            ],
            Op::Gemm(a) => {
                let mut attrs = vec![
                    ("out", a.out_channels.to_string()),
                    ("groups", a.groups.to_string()),
                    ("bias", a.bias.to_string()),
                ];
                if let Some(m) = a.winograd {
                    attrs.push(("weight", format!("winograd F({m}x{m}, 3x3)")));
                }
                with_epilogue(attrs, &a.epilogue)
            }
            Op::Col2Im(a) => with_epilogue(
                vec![
                    ("out", a.out_channels.to_string()),
                    ("kernel", pair(a.kernel)),
                    ("stride", pair(a.stride)),
                    ("pad", pair(a.padding)),
                    ("dilation", pair(a.dilation)),
                    ("output_size", pair(a.output_size)),
                    ("bias", a.bias.to_string()),
                ],
                &a.epilogue,
            ),
            Op::SeparableConv2d(a) => {
                let dw = &a.depthwise;
                let mut attrs = Vec::new();
                if let Some(e) = &a.expand {
                    attrs.push(("expand_in", e.in_channels.to_string()));
                    attrs.push(("expand_bias", e.bias.to_string()));
                    if let Some(act) = e.activation {
                        let epilogue = Epilogue {
                            residual: false,
                            activation: Some(act),
                        };
                        attrs.push(("expand_epilogue", epilogue.describe()));
                    }
                }
                attrs.extend([
                    ("dw_out", dw.out_channels.to_string()),
                    ("kernel", pair(dw.kernel)),
                    ("stride", pair(dw.stride)),
                    ("pad", dw.padding.to_string()),
                    ("dilation", pair(dw.dilation)),
                    ("dw_bias", dw.bias.to_string()),
                ]);
                if !dw.epilogue.is_empty() {
                    attrs.push(("dw_epilogue", dw.epilogue.describe()));
                }
                attrs.push(("out", a.out_channels.to_string()));
                attrs.push(("bias", a.bias.to_string()));
                with_epilogue(attrs, &a.epilogue)
            }
            Op::Constant(a) => vec![("shape", list(&a.shape))],
            Op::WinogradInput(a) => vec![
                ("tile", a.tile.to_string()),
                ("tiles", pair(a.tiles)),
                ("pad", a.padding.to_string()),
            ],
            Op::WinogradOutput(a) => with_epilogue(
                vec![
                    ("out", a.out_channels.to_string()),
                    ("tile", a.tile.to_string()),
                    ("output_size", pair(a.output_size)),
                    ("bias", a.bias.to_string()),
                ],
                &a.epilogue,
            ),
            Op::Interpolate(a) => {
                let mut attrs = vec![
                    ("size", pair(a.size)),
                    (
                        "scale_factor",
                        format!("[{}, {}]", float(a.scale[0]), float(a.scale[1])),
                    ),
                    ("mode", format!("{:?}", a.mode.name())),
                    ("coordinate", format!("{:?}", a.coordinate.name())),
                ];
                if let InterpolateMode::Nearest(rounding) = a.mode {
                    attrs.push(("nearest", format!("{:?}", rounding.name())));
                }
                attrs
            }
        }
    }
}
