//! The elementwise functions of the IR, each a closed class with one
//! table: activations (which can also end a producer's [`Epilogue`]), unary
//! math, and binary arithmetic with broadcasting.
//!
//! Each class is one `Op` variant (`Op::Activation(Activation)`, ...), as
//! naga's `Expression::Math { fun }`: adding a function to a class adds a
//! variant here, and every `match` that must handle it (the printer, the
//! interpreter, the JIT, the native kernels, the DSL's attributes) stops
//! compiling until it does. The DSL's op names come from the `ALL` tables.

/// An elementwise activation: the op of the same name, a step of an
/// [`ElementwiseAttrs`] chain, or the last step of an [`Epilogue`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    Relu6,
    LeakyRelu {
        negative_slope: f32,
    },
    Sigmoid,
    Tanh,
    /// `min(max(x, min), max)`.
    Clip {
        min: f32,
        max: f32,
    },
    /// `x` if `x > 0`, else `alpha * (exp(x) - 1)`.
    Elu {
        alpha: f32,
    },
    /// `scale * elu(x)` with PyTorch's fixed `alpha` and `scale`
    /// ([`SELU_ALPHA`], [`SELU_SCALE`]).
    Selu,
    /// `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`.
    Celu {
        alpha: f32,
    },
    /// `ln(1 + exp(x))`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `max(0, min(1, alpha * x + beta))`; PyTorch's `hardsigmoid` has
    /// `alpha = 1/6`, ONNX's `HardSigmoid` defaults to `0.2`.
    Hardsigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * relu6(x + 3) / 6`.
    Hardswish,
    /// `x * sigmoid(x)` (also called swish).
    Silu,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))`; with `tanh`, PyTorch's
    /// `approximate="tanh"`: `x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`.
    Gelu {
        tanh: bool,
    },
}

/// SELU's `alpha` (Klambauer et al., 2017), as PyTorch and ONNX define it.
pub const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's `scale` (ONNX's `gamma`).
pub const SELU_SCALE: f32 = 1.050_701;

impl Activation {
    /// Every activation, with its attributes at their DSL defaults (for
    /// `clip`, `relu6`'s bounds).
    pub const ALL: [Activation; 16] = [
        Activation::Relu,
        Activation::Relu6,
        Activation::LeakyRelu {
            negative_slope: 0.01,
        },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::Elu { alpha: 1.0 },
        Activation::Selu,
        Activation::Celu { alpha: 1.0 },
        Activation::Softplus,
        Activation::Softsign,
        Activation::Hardsigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        Activation::Hardswish,
        Activation::Silu,
        Activation::Mish,
        Activation::Gelu { tanh: false },
    ];

    /// The name used in `.nn` files and IR dumps (PyTorch's).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Clip { .. } => "clip",
            Activation::Elu { .. } => "elu",
            Activation::Selu => "selu",
            Activation::Celu { .. } => "celu",
            Activation::Softplus => "softplus",
            Activation::Softsign => "softsign",
            Activation::Hardsigmoid { .. } => "hardsigmoid",
            Activation::Hardswish => "hardswish",
            Activation::Silu => "silu",
            Activation::Mish => "mish",
            Activation::Gelu { .. } => "gelu",
        }
    }

    /// The activation called `name`, with its default attributes.
    pub fn from_name(name: &str) -> Option<Activation> {
        Activation::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Its attributes as `name=value` pairs in the DSL's spelling, in its
    /// order; attributes at a default that changes nothing are left out
    /// (`gelu` without `approximate`).
    pub fn attributes(self) -> Vec<(&'static str, String)> {
        let float = |v: f32| format!("{v:?}");
        match self {
            Activation::Relu
            | Activation::Relu6
            | Activation::Sigmoid
            | Activation::Tanh
            | Activation::Selu
            | Activation::Softplus
            | Activation::Softsign
            | Activation::Hardswish
            | Activation::Silu
            | Activation::Mish
            | Activation::Gelu { tanh: false } => vec![],
            Activation::LeakyRelu { negative_slope } => {
                vec![("negative_slope", float(negative_slope))]
            }
            Activation::Clip { min, max } => vec![("min", float(min)), ("max", float(max))],
            Activation::Elu { alpha } | Activation::Celu { alpha } => vec![("alpha", float(alpha))],
            Activation::Hardsigmoid { alpha, beta } => {
                vec![("alpha", float(alpha)), ("beta", float(beta))]
            }
            Activation::Gelu { tanh: true } => vec![("approximate", "\"tanh\"".to_string())],
        }
    }

    /// The printed form: the name, with its attribute values in
    /// parentheses (`leaky_relu(0.1)`).
    pub fn describe(self) -> String {
        let values: Vec<String> = self.attributes().into_iter().map(|(_, v)| v).collect();
        if values.is_empty() {
            self.name().to_string()
        } else {
            format!("{}({})", self.name(), values.join(", "))
        }
    }
}

/// An elementwise function of one value (unary math): the op of the same
/// name, or a step of an [`ElementwiseAttrs`] chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryFunction {
    Exp,
    /// The natural logarithm; `log(0) = -inf`, NaN below 0.
    Log,
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    Neg,
    Abs,
    Erf,
    /// `x ^ exponent` for a constant exponent (`powf`: NaN for a negative
    /// `x` and a non-integer exponent).
    Pow {
        exponent: f32,
    },
}

impl UnaryFunction {
    /// Every function, with its attributes at their DSL defaults.
    pub const ALL: [UnaryFunction; 8] = [
        UnaryFunction::Exp,
        UnaryFunction::Log,
        UnaryFunction::Sqrt,
        UnaryFunction::Reciprocal,
        UnaryFunction::Neg,
        UnaryFunction::Abs,
        UnaryFunction::Erf,
        UnaryFunction::Pow { exponent: 2.0 },
    ];

    /// The name used in `.nn` files and IR dumps (PyTorch's).
    pub fn name(self) -> &'static str {
        match self {
            UnaryFunction::Exp => "exp",
            UnaryFunction::Log => "log",
            UnaryFunction::Sqrt => "sqrt",
            UnaryFunction::Reciprocal => "reciprocal",
            UnaryFunction::Neg => "neg",
            UnaryFunction::Abs => "abs",
            UnaryFunction::Erf => "erf",
            UnaryFunction::Pow { .. } => "pow",
        }
    }

    /// The function called `name`, with its default attributes.
    pub fn from_name(name: &str) -> Option<UnaryFunction> {
        UnaryFunction::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Its attributes as `name=value` pairs in the DSL's spelling.
    pub fn attributes(self) -> Vec<(&'static str, String)> {
        match self {
            UnaryFunction::Exp
            | UnaryFunction::Log
            | UnaryFunction::Sqrt
            | UnaryFunction::Reciprocal
            | UnaryFunction::Neg
            | UnaryFunction::Abs
            | UnaryFunction::Erf => vec![],
            UnaryFunction::Pow { exponent } => vec![("exponent", format!("{exponent:?}"))],
        }
    }

    /// The printed form: `exp`, `pow(3.0)`.
    pub fn describe(self) -> String {
        let values: Vec<String> = self.attributes().into_iter().map(|(_, v)| v).collect();
        if values.is_empty() {
            self.name().to_string()
        } else {
            format!("{}({})", self.name(), values.join(", "))
        }
    }
}

/// An elementwise binary operation with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// IEEE division: dividing by zero gives an infinity or NaN.
    Div,
    /// The larger of the two; NaN if either is NaN (`torch.maximum`).
    Maximum,
    /// The smaller of the two; NaN if either is NaN (`torch.minimum`).
    Minimum,
    /// `a ^ b` as C's `pow`: a negative `a` with an integer `b` keeps the
    /// sign of the odd powers, with any other `b` it is NaN. The `.nn`
    /// name is shared with [`UnaryFunction::Pow`]; the call's tensor count
    /// picks which.
    Pow,
}

impl BinaryOp {
    /// Every binary operation.
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Pow,
    ];

    /// The name used in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Pow => "pow",
        }
    }

    /// The operation called `name`.
    pub fn from_name(name: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether `a op b == b op a`, so that a chain may continue through
    /// either operand.
    pub fn is_commutative(self) -> bool {
        match self {
            BinaryOp::Add | BinaryOp::Mul | BinaryOp::Maximum | BinaryOp::Minimum => true,
            BinaryOp::Sub | BinaryOp::Div | BinaryOp::Pow => false,
        }
    }
}

/// Work fused onto the end of a producer (conv, linear, gemm, ...) by
/// `fuse`, applied to each output element before it is stored:
/// `y = activation(acc + residual)`, where `acc` already includes the bias.
/// A residual is the producer's last operand and has the output's type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    pub residual: bool,
    pub activation: Option<Activation>,
}

impl Epilogue {
    /// True when nothing is fused.
    pub fn is_empty(&self) -> bool {
        !self.residual && self.activation.is_none()
    }

    /// Operands the epilogue adds after the op's own (0 or 1).
    pub fn operands(&self) -> usize {
        usize::from(self.residual)
    }

    /// `add+relu`, `relu6`, `add`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.residual {
            parts.push("add".to_string());
        }
        if let Some(act) = &self.activation {
            parts.push(act.describe());
        }
        parts.join("+")
    }
}

/// One step of an elementwise chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ElementwiseStep {
    /// `acc = acc op operand[i]` (broadcast).
    Binary(BinaryOp, usize),
    Activation(Activation),
    Unary(UnaryFunction),
    /// `acc` where `acc >= 0`, else `acc * operand[i]` (the slope of a
    /// `prelu`, broadcast).
    Prelu(usize),
}

impl ElementwiseStep {
    /// The operand the step reads besides the accumulator, if any.
    pub fn operand(self) -> Option<usize> {
        match self {
            ElementwiseStep::Binary(_, i) | ElementwiseStep::Prelu(i) => Some(i),
            ElementwiseStep::Activation(_) | ElementwiseStep::Unary(_) => None,
        }
    }

    /// The printed form: `add($1)`, `relu`.
    pub fn describe(self) -> String {
        match self {
            ElementwiseStep::Binary(op, i) => format!("{}(${i})", op.name()),
            ElementwiseStep::Activation(act) => act.describe(),
            ElementwiseStep::Unary(f) => f.describe(),
            ElementwiseStep::Prelu(i) => format!("prelu(${i})"),
        }
    }
}

/// `elementwise`: a chain of binary ops and activations made one op by
/// `fuse`. The accumulator starts as operand 0 broadcast to the output
/// shape (the broadcast of all operands), and the steps run in order.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementwiseAttrs {
    pub steps: Vec<ElementwiseStep>,
}
