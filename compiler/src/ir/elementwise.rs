//! The elementwise functions of the IR, each a closed class with one
//! table: activations (which can also end a producer's [`Epilogue`]), unary
//! math, binary arithmetic with broadcasting, and reductions.
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
}

impl Activation {
    /// Every activation, with its attributes at their DSL defaults (for
    /// `clip`, `relu6`'s bounds).
    pub const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::Relu6,
        Activation::LeakyRelu {
            negative_slope: 0.01,
        },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Clip { min: 0.0, max: 6.0 },
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
        }
    }

    /// The activation called `name`, with its default attributes.
    pub fn from_name(name: &str) -> Option<Activation> {
        Activation::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Its attributes as `name=value` pairs, in the DSL's order.
    pub fn attributes(self) -> Vec<(&'static str, f32)> {
        match self {
            Activation::Relu | Activation::Relu6 | Activation::Sigmoid | Activation::Tanh => {
                vec![]
            }
            Activation::LeakyRelu { negative_slope } => vec![("negative_slope", negative_slope)],
            Activation::Clip { min, max } => vec![("min", min), ("max", max)],
        }
    }

    /// The printed form: the name, with its attribute values in
    /// parentheses (`leaky_relu(0.1)`).
    pub fn describe(self) -> String {
        let values: Vec<String> = self
            .attributes()
            .iter()
            .map(|(_, v)| format!("{v:?}"))
            .collect();
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
}

impl BinaryOp {
    /// Every binary operation.
    pub const ALL: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

    /// The name used in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
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
            BinaryOp::Add | BinaryOp::Mul => true,
            BinaryOp::Sub | BinaryOp::Div => false,
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
}

impl ElementwiseStep {
    /// The operand the step reads besides the accumulator, if any.
    pub fn operand(self) -> Option<usize> {
        match self {
            ElementwiseStep::Binary(_, i) => Some(i),
            ElementwiseStep::Activation(_) => None,
        }
    }

    /// The printed form: `add($1)`, `relu`.
    pub fn describe(self) -> String {
        match self {
            ElementwiseStep::Binary(op, i) => format!("{}(${i})", op.name()),
            ElementwiseStep::Activation(act) => act.describe(),
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
