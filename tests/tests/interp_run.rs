//! `interp::run` and `interp::run_all` on hand-built graphs: values flow in
//! topological order, shared values survive until their last user, outputs
//! come back in declaration order, and every mismatch between the graph,
//! the inputs and the weights is an error that names what is wrong.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    Activation, BinaryOp, ConcatAttrs, Conv2dAttrs, Epilogue, Graph, InputAttrs, Node, NodeId, Op,
    Padding, TensorType, WeightAttrs, WeightRole,
};
use nnc_runtime::{Tensor, WeightSet};
use nnc_tests::tensor;

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    let op = Op::Input(InputAttrs { name: name.into() });
    g.add(Node::new(op, vec![], TensorType::f32(shape.to_vec()), name))
        .unwrap()
}

fn weight(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    let op = Op::Weight(WeightAttrs {
        name: name.into(),
        role: WeightRole::Kernel { fan_in: 1 },
    });
    g.add(Node::new(op, vec![], TensorType::f32(shape.to_vec()), name))
        .unwrap()
}

fn node(g: &mut Graph, op: Op, inputs: Vec<NodeId>, shape: &[usize], name: &str) -> NodeId {
    g.add(Node::new(op, inputs, TensorType::f32(shape.to_vec()), name))
        .unwrap()
}

fn conv_attrs(bias: bool) -> Conv2dAttrs {
    Conv2dAttrs {
        out_channels: 1,
        kernel: [2, 2],
        stride: [1, 1],
        padding: Padding::ZERO,
        dilation: [1, 1],
        groups: 1,
        bias,
        epilogue: Epilogue::default(),
    }
}

struct Net {
    graph: Graph,
    x: NodeId,
    w: NodeId,
    conv: NodeId,
    relu: NodeId,
    sum: NodeId,
}

/// `conv = conv2d(x, w, b)`, `relu = relu(conv)`, `sum = conv + relu`;
/// outputs `[sum, conv]`, so `conv` has three users.
fn net() -> Net {
    let mut graph = Graph::new("net");
    let x = input(&mut graph, "x", &[1, 1, 3, 3]);
    let w = weight(&mut graph, "conv.weight", &[1, 1, 2, 2]);
    let b = weight(&mut graph, "conv.bias", &[1]);
    let conv = node(
        &mut graph,
        Op::Conv2d(conv_attrs(true)),
        vec![x, w, b],
        &[1, 1, 2, 2],
        "conv",
    );
    let relu = node(
        &mut graph,
        Op::Activation(Activation::Relu),
        vec![conv],
        &[1, 1, 2, 2],
        "relu",
    );
    let sum = node(
        &mut graph,
        Op::Binary(BinaryOp::Add),
        vec![conv, relu],
        &[1, 1, 2, 2],
        "sum",
    );
    graph.set_outputs(vec![sum, conv]);
    Net {
        graph,
        x,
        w,
        conv,
        relu,
        sum,
    }
}

fn weights() -> WeightSet {
    let mut ws = WeightSet::new();
    // conv[r][c] = x[r][c] - 2 x[r+1][c+1] + 11.
    ws.insert("conv.weight", tensor(&[1, 1, 2, 2], &[1., 0., 0., -2.]));
    ws.insert("conv.bias", tensor(&[1], &[11.]));
    ws
}

fn x() -> Tensor {
    tensor(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.])
}

#[test]
fn run_computes_outputs_in_declaration_order() {
    let net = net();
    let out = interp::run(&net.graph, &weights(), &[x()]).unwrap();
    assert_eq!(out.len(), 2);
    // conv = [1-10, 2-12, 4-16, 5-18] + 11 = [2, 1, -1, -2]; relu = [2, 1, 0, 0].
    assert_eq!(out[0], tensor(&[1, 1, 2, 2], &[4., 2., -1., -2.]));
    assert_eq!(out[1], tensor(&[1, 1, 2, 2], &[2., 1., -1., -2.]));
}

#[test]
fn run_all_returns_every_value() {
    let net = net();
    let values = interp::run_all(&net.graph, &weights(), &[x()]).unwrap();
    assert_eq!(values.len(), net.graph.len());
    assert_eq!(values[&net.x], x());
    assert_eq!(values[&net.w], *weights().get("conv.weight").unwrap());
    assert_eq!(values[&net.conv].data(), &[2., 1., -1., -2.]);
    assert_eq!(values[&net.relu].data(), &[2., 1., 0., 0.]);
    assert_eq!(values[&net.sum].data(), &[4., 2., -1., -2.]);
}

#[test]
fn inputs_bind_in_declaration_order_and_can_be_outputs() {
    let mut g = Graph::new("two");
    let a = input(&mut g, "a", &[2]);
    let b = input(&mut g, "b", &[1]);
    let prod = node(&mut g, Op::Binary(BinaryOp::Mul), vec![a, b], &[2], "prod");
    let cat = node(
        &mut g,
        Op::Concat(ConcatAttrs { dim: 0 }),
        vec![prod, a, prod],
        &[6],
        "cat",
    );
    g.set_outputs(vec![cat, b, prod]);
    let out = interp::run(
        &g,
        &WeightSet::new(),
        &[tensor(&[2], &[1., 2.]), tensor(&[1], &[10.])],
    )
    .unwrap();
    assert_eq!(out[0], tensor(&[6], &[10., 20., 1., 2., 10., 20.]));
    assert_eq!(out[1], tensor(&[1], &[10.]));
    assert_eq!(out[2], tensor(&[2], &[10., 20.]));
}

fn assert_lowercase(e: &InterpError) {
    let msg = e.to_string();
    assert!(
        msg.chars().next().is_some_and(|c| !c.is_uppercase()),
        "{msg}"
    );
    assert!(!msg.ends_with('.'), "{msg}");
}

#[test]
fn wrong_number_of_inputs() {
    let net = net();
    let err = interp::run(&net.graph, &weights(), &[]).unwrap_err();
    assert_eq!(
        err,
        InterpError::InputCount {
            expected: 1,
            found: 0
        }
    );
    assert_lowercase(&err);
    let err = interp::run(&net.graph, &weights(), &[x(), x()]).unwrap_err();
    assert_eq!(
        err,
        InterpError::InputCount {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn input_of_the_wrong_shape() {
    let net = net();
    let bad = Tensor::zeros(vec![1, 1, 3, 4]).unwrap();
    let err = interp::run(&net.graph, &weights(), &[bad]).unwrap_err();
    assert!(
        matches!(&err, InterpError::InputShape { name, .. } if name == "x"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`x`") && msg.contains("[1, 1, 3, 4]") && msg.contains("[1, 1, 3, 3]"),
        "{msg}"
    );
    assert_lowercase(&err);
}

#[test]
fn missing_weight() {
    let net = net();
    let mut ws = weights();
    ws.remove("conv.bias");
    let err = interp::run(&net.graph, &ws, &[x()]).unwrap_err();
    assert!(
        matches!(&err, InterpError::MissingWeight { name, .. } if name == "conv.bias"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`conv.bias`"));
    assert_lowercase(&err);
}

#[test]
fn weight_of_the_wrong_shape() {
    let net = net();
    let mut ws = weights();
    ws.insert("conv.weight", Tensor::zeros(vec![1, 1, 3, 3]).unwrap());
    let err = interp::run(&net.graph, &ws, &[x()]).unwrap_err();
    assert!(
        matches!(&err, InterpError::WeightShape { name, .. } if name == "conv.weight"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`conv.weight`")
            && msg.contains("[1, 1, 3, 3]")
            && msg.contains("[1, 1, 2, 2]"),
        "{msg}"
    );
    assert_lowercase(&err);
}

#[test]
fn node_type_that_disagrees_with_the_computed_shape() {
    let mut g = Graph::new("bad");
    let x = input(&mut g, "x", &[2, 3]);
    let r = node(
        &mut g,
        Op::Activation(Activation::Relu),
        vec![x],
        &[3, 2],
        "act",
    );
    g.set_outputs(vec![r]);
    let err =
        interp::run(&g, &WeightSet::new(), &[Tensor::zeros(vec![2, 3]).unwrap()]).unwrap_err();
    assert!(
        matches!(&err, InterpError::OutputShape { node, .. } if node == "act"),
        "{err:?}"
    );
    assert_lowercase(&err);
}

#[test]
fn node_with_the_wrong_number_of_operands() {
    let mut g = Graph::new("bad");
    let x = input(&mut g, "x", &[1, 1, 3, 3]);
    let w = weight(&mut g, "conv.weight", &[1, 1, 2, 2]);
    // The attributes promise a bias operand that is not there.
    let c = node(
        &mut g,
        Op::Conv2d(conv_attrs(true)),
        vec![x, w],
        &[1, 1, 2, 2],
        "conv",
    );
    g.set_outputs(vec![c]);
    let err = interp::run(&g, &weights(), &[self::x()]).unwrap_err();
    assert!(
        matches!(&err, InterpError::OperandCount { node, expected: 3, found: 2, .. } if node == "conv"),
        "{err:?}"
    );
    assert_lowercase(&err);
}

#[test]
fn kernel_errors_name_the_node() {
    let mut g = Graph::new("bad");
    let a = input(&mut g, "a", &[2]);
    let b = input(&mut g, "b", &[3]);
    let s = node(&mut g, Op::Binary(BinaryOp::Add), vec![a, b], &[3], "total");
    g.set_outputs(vec![s]);
    let inputs = [
        Tensor::zeros(vec![2]).unwrap(),
        Tensor::zeros(vec![3]).unwrap(),
    ];
    let err = interp::run(&g, &WeightSet::new(), &inputs).unwrap_err();
    match &err {
        InterpError::Node { node, op, source } => {
            assert_eq!(node, "total");
            assert_eq!(*op, "add");
            assert!(matches!(**source, InterpError::Operands { op: "add", .. }));
        }
        other => panic!("expected a node error, got {other:?}"),
    }
    assert!(err.to_string().contains("`total`"), "{err}");
    assert_lowercase(&err);
}
