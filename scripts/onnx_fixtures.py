#!/usr/bin/env python3
"""Builds the ONNX conformance fixtures under tests/cases/onnx/.

Run by hand (not by CI) after `pip install onnx onnxruntime numpy`:

    python3 scripts/onnx_fixtures.py
    python3 scripts/onnx_fixtures.py --only shape/pad_opset10 norm/  # just these

Every fixture is a directory with `model.onnx` (built with the onnx package,
weights drawn from a seeded numpy generator), `input_<i>.npy` and the outputs
ONNX Runtime computes, `output_<i>.npy`. The Rust suite tests/tests/onnx.rs
imports each model and compares nnc's reference interpreter with those
outputs. Models under `errors/` are not run: they hold nodes nnc rejects.

Models at opset 6 cannot be run by ORT (it runs opsets from 7); the outputs
stored for them are ORT's for the same model in its opset 7 form, built by
hand from the same seed.

`--only PREFIX...` remakes only the fixtures whose directory starts with a
prefix and leaves the others untouched (a full run rewrites every fixture;
unchanged models come out byte for byte the same).

`--full DIR` instead writes full-size ResNet-18 and MobileNetV2 (torchvision
layouts, random weights) with ORT outputs to DIR, outside the repository.
"""

import argparse
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cases", "onnx")

# Directory prefixes given with `--only`; empty: every fixture.
ONLY = []


def selected(dirname):
    return not ONLY or any(dirname.startswith(p) for p in ONLY)


class Graph:
    """A small builder: nodes, seeded initializers, inputs and outputs."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.count = 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def input(self, name, shape):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name, shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        bound = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        return self.init(name, self.rng.uniform(-bound, bound, shape).astype(np.float32))

    def node(self, op, inputs, outputs=1, name=None, **attrs):
        # An empty name leaves the node unnamed, as some exporters do.
        name = self.name(op.lower()) if name is None else name
        if isinstance(outputs, int):
            outs = [f"{name}_out{i}" for i in range(outputs)]
        else:
            outs = outputs
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def output(self, value):
        self.outputs.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, None))

    def model(self, opset, name="model", ir_version=None):
        """The model; below IR version 4 (`ir_version=3`, as old exporters
        wrote) every initializer is also listed as a graph input."""
        inputs = list(self.inputs)
        if ir_version is not None and ir_version < 4:
            inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in self.inits]
        graph = helper.make_graph(self.nodes, name, inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir_version or (8 if opset <= 18 else 11)
        # Output types are left to shape inference; the checker then
        # validates the graph with them.
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        inferred = {v.name: v for v in model.graph.value_info}
        complete = True
        for out in model.graph.output:
            if out.name in inferred:
                out.CopyFrom(inferred[out.name])
            else:
                complete = False  # function ops (GroupNormalization 18) infer nothing
        if complete:
            onnx.checker.check_model(model)
        return model

    # Layers with PyTorch-style weight names.
    def conv(self, x, prefix, c_in, c_out, k, stride=1, pad=0, group=1, bias=True):
        inputs = [x, self.weight(f"{prefix}.weight", [c_out, c_in // group, k, k])]
        if bias:
            inputs.append(self.weight(f"{prefix}.bias", [c_out], 0.1))
        return self.node("Conv", inputs, name=f"/{prefix}/Conv", kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4, group=group)

    def bn(self, x, prefix, c):
        r = self.rng
        ins = [x,
               self.init(f"{prefix}.weight", r.uniform(0.5, 1.5, c).astype(np.float32)),
               self.init(f"{prefix}.bias", r.uniform(-0.5, 0.5, c).astype(np.float32)),
               self.init(f"{prefix}.running_mean", r.uniform(-0.5, 0.5, c).astype(np.float32)),
               self.init(f"{prefix}.running_var", r.uniform(0.5, 1.5, c).astype(np.float32))]
        return self.node("BatchNormalization", ins, name=f"/{prefix}/BatchNormalization")

    def relu(self, x):
        return self.node("Relu", [x])

    def relu6(self, x):
        return self.node("Clip", [x, self.init(self.name("zero"), np.array(0, np.float32)),
                                  self.init(self.name("six"), np.array(6, np.float32))])

    def linear(self, x, prefix, c_in, c_out):
        return self.node("Gemm", [x, self.weight(f"{prefix}.weight", [c_out, c_in]),
                                  self.weight(f"{prefix}.bias", [c_out], 0.1)],
                         name=f"/{prefix}/Gemm", transB=1)


def save(dirname, model, inputs, external=False, reference=None, optimize=True):
    """Writes the model, its inputs and ORT's outputs (of `reference`, an
    equivalent model, when ORT cannot run `model`; without ORT's graph
    optimizations when not `optimize`: its Pad fusion must not decide the
    outputs of the fixtures that test nnc's)."""
    if not selected(dirname):
        return
    path = os.path.join(ROOT, dirname)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    file = os.path.join(path, "model.onnx")
    if external:
        onnx.save_model(model, file, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
    else:
        onnx.save_model(model, file)
    if inputs is None:
        return
    runnable = file if reference is None else reference.SerializeToString()
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(runnable, options, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}
    outputs = session.run(None, feeds)
    for i, x in enumerate(inputs):
        np.save(os.path.join(path, f"input_{i}.npy"), x)
    for i, y in enumerate(outputs):
        np.save(os.path.join(path, f"output_{i}.npy"), np.asarray(y, np.float32))


def rand(rng, shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


def single(name, opset, shapes, build, seed=0, external=False, ir_version=None, reference=None,
           optimize=True):
    """A model of one op (plus what it needs): `build(g, inputs)` returns
    the output value names. `reference` is `(opset, build)` for a model ORT
    can run in its place, built from the same seed (so drawing the same
    weights in the same order)."""
    if not selected(name):
        return

    def graph(opset, build):
        g = Graph(seed)
        xs = [g.input(f"x{i}", s) for i, s in enumerate(shapes)]
        outs = build(g, xs)
        for o in outs if isinstance(outs, list) else [outs]:
            g.output(o)
        return g, g.model(opset, name.replace("/", "_"), ir_version)

    g, model = graph(opset, build)
    inputs = [rand(g.rng, s) for s in shapes]
    ref = graph(*reference)[1] if reference else None
    save(name, model, inputs, external, ref, optimize)


def operators():
    img = [1, 4, 9, 9]
    # Conv and ConvTranspose.
    single("conv/basic", 28, [img], lambda g, x: g.conv(x[0], "conv", 4, 6, 3, pad=1))
    single("conv/stride_dilation_group", 17, [img], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [6, 2, 3, 3])], strides=[2, 1], dilations=[2, 1], group=2,
        pads=[1, 2, 1, 2]))
    single("conv/same_upper_even_kernel", 17, [img], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [5, 4, 4, 4]), g.weight("b", [5])], auto_pad="SAME_UPPER",
        strides=[2, 2]))
    single("conv/same_lower", 11, [img], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [5, 4, 2, 3])], auto_pad="SAME_LOWER"))
    single("conv/asymmetric_pads", 17, [img], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [3, 4, 3, 3])], pads=[0, 1, 2, 1], kernel_shape=[3, 3]))
    single("conv/valid_depthwise", 13, [img], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [8, 1, 3, 3]), g.weight("b", [8])], group=4,
        auto_pad="VALID"))
    # Pads that differ per side on the convs lower-conv gives other kernels
    # than the direct one (the fixtures above have 4 input channels).
    single("conv/asymmetric_pads_winograd", 17, [[1, 16, 8, 8]], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [16, 16, 3, 3]), g.weight("b", [16])], pads=[1, 0, 1, 2]))
    single("conv/asymmetric_pads_im2col", 17, [[1, 6, 9, 8]], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [5, 6, 3, 2])], strides=[2, 1], pads=[2, 0, 0, 1]))
    single("conv/same_upper_depthwise", 17, [[1, 8, 9, 9]], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [8, 1, 4, 4])], group=8, strides=[2, 2],
        auto_pad="SAME_UPPER"))
    single("conv/same_lower_separable", 17, [[1, 8, 9, 10]], lambda g, x: g.node(
        "Conv", [g.node("Conv", [x[0], g.weight("dw", [8, 1, 3, 3])], group=8,
                        strides=[2, 2], auto_pad="SAME_LOWER"),
                 g.weight("pw", [6, 8, 1, 1])]))
    seq = [2, 4, 11]
    single("conv1d/conv_stride_dilation_group_pads", 17, [seq], lambda g, x: g.node(
        "Conv", [x[0], g.weight("conv.weight", [6, 2, 3]), g.weight("conv.bias", [6])],
        strides=[2], dilations=[2], group=2, pads=[1, 2]))
    single("conv1d/conv_same_upper", 17, [seq], lambda g, x: g.node(
        "Conv", [x[0], g.weight("w", [3, 4, 4])], auto_pad="SAME_UPPER"))
    single("conv1d/conv_transpose", 17, [seq], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 3, 3])], strides=[2], pads=[1, 0],
        output_padding=[1]))
    single("conv1d/max_pool", 17, [seq], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[3], strides=[2], pads=[1, 1]))
    single("conv1d/avg_pool_ceil", 17, [seq], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2], strides=[2], ceil_mode=1))
    single("conv1d/global_average", 17, [seq], lambda g, x: g.node("GlobalAveragePool", [x[0]]))
    single("conv_transpose/stride_pad_output_padding", 17, [img], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 3, 3, 3]), g.weight("b", [3])],
        strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0]))
    single("conv_transpose/group_dilation", 17, [img], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 2, 2, 3])], group=2, dilations=[2, 1]))
    single("conv_transpose/output_shape", 17, [img], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 2, 3, 3])], strides=[2, 2],
        output_shape=[18, 18]))
    single("conv_transpose/same_upper_crops_the_end", 17, [img], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 2, 3, 3]), g.weight("b", [2])], strides=[2, 2],
        auto_pad="SAME_UPPER"))
    single("conv_transpose/asymmetric_pads", 17, [img], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 2, 3, 3])], strides=[2, 1], pads=[0, 2, 1, 0],
        output_padding=[1, 0]))
    single("conv_transpose/same_lower", 17, [img], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [4, 2, 3, 3])], strides=[2, 2],
        auto_pad="SAME_LOWER"))
    # Normalisation.
    single("norm/batch_norm_eps", 15, [img], lambda g, x: g.node(
        "BatchNormalization", [x[0], g.weight("s", [4], 1.5), g.weight("b", [4]),
                               g.weight("m", [4]), g.init("v", g.rng.uniform(0.5, 2, 4).astype(np.float32))],
        epsilon=1e-3, momentum=0.8))
    single("norm/instance_norm", 22, [img], lambda g, x: g.node(
        "InstanceNormalization", [x[0], g.weight("s", [4], 1.5), g.weight("b", [4])], epsilon=1e-4))
    single("norm/group_norm_opset18", 18, [[2, 6, 3, 5]], lambda g, x: g.node(
        "GroupNormalization", [x[0], g.weight("s", [3], 1.5), g.weight("b", [3])], num_groups=3))
    single("norm/group_norm_opset21", 21, [[2, 6, 3, 5]], lambda g, x: g.node(
        "GroupNormalization", [x[0], g.weight("s", [6], 1.5), g.weight("b", [6])], num_groups=2,
        epsilon=1e-3))
    single("norm/layer_norm_last", 17, [[2, 5, 8]], lambda g, x: g.node(
        "LayerNormalization", [x[0], g.weight("s", [8], 1.5), g.weight("b", [8])]))
    single("norm/layer_norm_axis1_broadcast_scale", 17, [[2, 3, 4, 5]], lambda g, x: g.node(
        "LayerNormalization", [x[0], g.weight("s", [1, 4, 5], 1.5)], axis=1, epsilon=1e-3))
    # Activations.
    for op in ["Relu", "Sigmoid", "Tanh"]:
        single(f"activation/{op.lower()}", 17, [img], lambda g, x, op=op: g.node(op, [x[0]]))
    single("activation/leaky_relu", 17, [img], lambda g, x: g.node("LeakyRelu", [x[0]], alpha=0.2))
    single("activation/leaky_relu_default", 17, [img], lambda g, x: g.node("LeakyRelu", [x[0]]))
    single("activation/clip_bounds", 13, [img], lambda g, x: g.node("Clip", [
        x[0], g.init("lo", np.array(-0.3, np.float32)), g.init("hi", np.array(0.4, np.float32))]))
    single("activation/clip_min_only", 13, [img], lambda g, x: g.node("Clip", [
        x[0], g.init("lo", np.array(-0.3, np.float32))]))
    single("activation/clip_max_only", 13, [img], lambda g, x: g.node("Clip", [
        x[0], "", g.init("hi", np.array(0.25, np.float32))]))
    single("activation/clip_relu6", 11, [img], lambda g, x: g.relu6(g.node(
        "Mul", [x[0], g.init("k", np.array(8, np.float32))])))
    # Inputs scaled by 4, so the exponential and saturating parts are reached.
    wide = lambda g, x: g.node("Mul", [x[0], g.init("k", np.array(4, np.float32))])
    for op in ["Softplus", "Softsign", "HardSwish", "Selu"]:
        single(f"activation/{op.lower()}", 17, [img], lambda g, x, op=op: g.node(op, [wide(g, x)]))
    single("activation/elu", 17, [img], lambda g, x: g.node("Elu", [wide(g, x)], alpha=0.7))
    single("activation/celu", 17, [img], lambda g, x: g.node("Celu", [wide(g, x)], alpha=1.5))
    single("activation/hardsigmoid", 17, [img], lambda g, x: g.node(
        "HardSigmoid", [wide(g, x)], alpha=0.3, beta=0.4))
    single("activation/hardsigmoid_default", 17, [img], lambda g, x: g.node("HardSigmoid", [wide(g, x)]))
    single("activation/mish", 18, [img], lambda g, x: g.node("Mish", [wide(g, x)]))
    single("activation/gelu", 20, [img], lambda g, x: g.node("Gelu", [wide(g, x)]))
    single("activation/gelu_tanh", 20, [img], lambda g, x: g.node(
        "Gelu", [wide(g, x)], approximate="tanh"))
    single("activation/prelu_per_channel", 17, [img], lambda g, x: g.node(
        "PRelu", [x[0], g.init("prelu.weight", g.rng.uniform(0, 0.5, [4, 1, 1]).astype(np.float32))]))
    single("activation/prelu_shared", 16, [img], lambda g, x: g.node(
        "PRelu", [x[0], g.init("slope", np.array([0.25], np.float32))]))
    # Activations spelled out as exporters write them; `simplify` makes each
    # one op (tests/tests/onnx.rs checks which).
    def scalar(g, v):
        return g.init(g.name("c"), np.array(v, np.float32))

    single("patterns/silu", 17, [img], lambda g, x: g.node("Mul", [
        wide(g, x), g.node("Sigmoid", ["mul_1_out0"])]))
    single("patterns/hardswish_relu6", 13, [img], lambda g, x: g.node("Div", [g.node("Mul", [
        wide(g, x), g.node("Clip", [g.node("Add", ["mul_1_out0", scalar(g, 3.0)]),
                                    scalar(g, 0.0), scalar(g, 6.0)])]), scalar(g, 6.0)]))
    single("patterns/hardswish_hardsigmoid", 13, [img], lambda g, x: g.node("Mul", [
        wide(g, x), g.node("HardSigmoid", ["mul_1_out0"], alpha=1.0 / 6.0)]))
    single("patterns/gelu_erf", 13, [img], lambda g, x: g.node("Mul", [g.node("Mul", [
        wide(g, x), g.node("Add", [g.node("Erf", [g.node("Div", ["mul_1_out0", scalar(g, 1.4142135)])]),
                                   scalar(g, 1.0)])]), scalar(g, 0.5)]))
    single("patterns/gelu_tanh", 13, [img], lambda g, x: g.node("Mul", [
        g.node("Mul", [wide(g, x), scalar(g, 0.5)]),
        g.node("Add", [scalar(g, 1.0), g.node("Tanh", [g.node("Mul", [scalar(g, 0.7978845608), g.node(
            "Add", ["mul_1_out0", g.node("Mul", [scalar(g, 0.044715), g.node(
                "Pow", ["mul_1_out0", scalar(g, 3.0)])])])])])])]))
    # Layer and instance norms spelled out as exporters before opset 17
    # write nn.LayerNorm: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div,
    # then the scale and shift.
    def spelled_norm(g, x, axes, reciprocal=False, square="Pow"):
        m = g.node("ReduceMean", [x], axes=axes)
        d = g.node("Sub", [x, m])
        sq = (g.node("Pow", [d, scalar(g, 2.0)]) if square == "Pow"
              else g.node("Mul", [d, d]))
        v = g.node("ReduceMean", [sq], axes=axes)
        s = g.node("Sqrt", [g.node("Add", [v, scalar(g, 1e-5)])])
        if reciprocal:
            return g.node("Mul", [d, g.node("Reciprocal", [s])])
        return g.node("Div", [d, s])

    single("patterns/layer_norm", 13, [[2, 5, 8]], lambda g, x: g.node("Add", [
        g.node("Mul", [spelled_norm(g, x[0], [-1]), g.weight("ln.weight", [8], 1.0)]),
        g.weight("ln.bias", [8])]))
    single("patterns/instance_norm_reciprocal", 13, [img], lambda g, x: spelled_norm(
        g, x[0], [2, 3], reciprocal=True, square="Mul"))
    single("patterns/not_a_norm", 13, [img], lambda g, x: spelled_norm(g, x[0], [1, 3]))
    # nn.GroupNorm as PyTorch exports it before opset 18: a reshape to
    # [N, G, -1], an InstanceNormalization with unit scale and zero bias, a
    # reshape back, then the per-channel scale and shift.
    single("patterns/group_norm", 13, [[2, 6, 5, 4]], lambda g, x: g.node("Add", [g.node("Mul", [
        g.node("Reshape", [g.node("InstanceNormalization", [
            g.node("Reshape", [x[0], g.init("grouped", np.array([2, 3, -1], np.int64))]),
            g.init("ones", np.ones(3, np.float32)), g.init("zeros", np.zeros(3, np.float32))],
            epsilon=1e-5), g.init("back", np.array([2, 6, 5, 4], np.int64))]),
        g.weight("gn.weight", [6, 1, 1], 1.0)]), g.weight("gn.bias", [6, 1, 1])]))
    single("patterns/not_silu", 17, [img], lambda g, x: g.node("Mul", [
        x[0], g.node("Sigmoid", [g.node("Add", [x[0], x[0]])])]))
    # Unary math.
    for op in ["Exp", "Neg", "Abs", "Erf", "Reciprocal"]:
        single(f"elementwise/{op.lower()}", 17, [img], lambda g, x, op=op: g.node(op, [x[0]]))
    for op in ["Log", "Sqrt"]:
        single(f"elementwise/{op.lower()}", 17, [img], lambda g, x, op=op: g.node(
            op, [g.node("Abs", [x[0]])]))
    for name, exponent in [("square", 2.0), ("cube", 3.0), ("inverse", -1.0)]:
        single(f"elementwise/pow_{name}", 17, [img], lambda g, x, e=exponent: g.node(
            "Pow", [x[0], g.init("e", np.array(e, np.float32))]))
    single("elementwise/pow_tensor_exponent", 17, [img, [4, 1, 9]], lambda g, x: g.node(
        "Pow", [g.node("Abs", [x[0]]), x[1]]))
    single("elementwise/pow_fraction", 17, [img], lambda g, x: g.node(
        "Pow", [g.node("Abs", [x[0]]), g.init("e", np.array(0.7, np.float32))]))
    # Max, Min, Sum and Mean of one, two and three operands.
    for op in ["Max", "Min"]:
        single(f"elementwise/{op.lower()}_broadcast", 17, [img, [1, 4, 1, 9]],
               lambda g, x, op=op: g.node(op, [x[0], x[1]]))
    for op in ["Sum", "Max", "Min", "Mean"]:
        single(f"elementwise/{op.lower()}_three", 17, [img, [4, 1, 1], img],
               lambda g, x, op=op: g.node(op, [x[0], x[1], x[2]]))
    single("elementwise/sum_one", 17, [img], lambda g, x: g.node("Relu", [g.node("Sum", [x[0]])]))
    # Pooling.
    single("pool/max_pad_stride", 22, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    single("pool/max_ceil_mode", 17, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    single("pool/max_dilation", 17, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[2, 3], dilations=[2, 2]))
    single("pool/max_same_upper", 17, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"))
    single("pool/avg_exclude_pad", 17, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    single("pool/avg_include_pad", 17, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1))
    single("pool/avg_ceil_mode", 17, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    single("pool/avg_same_upper_include_pad", 17, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER",
        count_include_pad=1))
    single("pool/max_ceil_asymmetric_pads", 17, [[1, 2, 5, 5]], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1))
    single("pool/avg_ceil_asymmetric_include_pad", 17, [[1, 2, 5, 6]], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 1, 2], ceil_mode=1,
        count_include_pad=1))
    single("pool/max_ceil_large_pads", 17, [[1, 2, 7, 7]], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[3, 3], strides=[3, 3], pads=[2, 2, 2, 2], ceil_mode=1))
    single("pool/avg_exclude_pad_asymmetric", 17, [[1, 2, 6, 7]], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 2], strides=[2, 2], pads=[0, 1, 2, 1]))
    single("pool/avg_exclude_pad_same_upper_ceil", 17, [[1, 2, 7, 6]], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_UPPER",
        ceil_mode=1))
    single("pool/avg_exclude_pad_ceil_large_pads", 17, [[1, 2, 7, 7]], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 3], strides=[3, 3], pads=[2, 2, 2, 2], ceil_mode=1))
    single("pool/max_same_lower", 17, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER"))
    single("pool/avg_same_lower_exclude_pad", 17, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2, 4], strides=[2, 1], auto_pad="SAME_LOWER"))
    single("pool/max_asymmetric_pads", 17, [[1, 2, 6, 7]], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]))
    single("pool/avg_asymmetric_include_pad", 17, [[1, 2, 6, 7]], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 2], strides=[1, 2], pads=[1, 0, 0, 1],
        count_include_pad=1))
    single("pool/global_average", 17, [img], lambda g, x: g.node("GlobalAveragePool", [x[0]]))
    # A Pad before a window op, which `simplify` folds into the op's padding
    # when exact (zeros before Conv and AveragePool, zeros after Relu before
    # MaxPool) and keeps otherwise (the lowest float before MaxPool, as
    # CoreML's converter writes it, on an input that may be negative).
    def pad(g, x, pads, value=None):
        inputs = [x, g.init(g.name("pads"), np.array(pads, np.int64))]
        if value is not None:
            inputs.append(g.init(g.name("value"), np.array(value, np.float32)))
        return g.node("Pad", inputs)
    single("pad_fold/conv", 17, [img], lambda g, x: g.node(
        "Conv", [pad(g, x[0], [0, 0, 1, 0, 0, 0, 2, 1]), g.weight("w", [6, 4, 3, 3])],
        pads=[1, 1, 1, 1]), optimize=False)
    single("pad_fold/relu_max_pool", 17, [img], lambda g, x: g.node(
        "MaxPool", [pad(g, g.relu(x[0]), [0, 0, 0, 0, 0, 0, 1, 1])], kernel_shape=[3, 3],
        strides=[2, 2]), optimize=False)
    single("pad_fold/avg_pool_exclude_pad", 17, [img], lambda g, x: g.node(
        "AveragePool", [pad(g, x[0], [0, 0, 1, 1, 0, 0, 1, 1])], kernel_shape=[3, 3]),
        optimize=False)
    single("pad_fold/avg_pool_include_pad", 17, [img], lambda g, x: g.node(
        "AveragePool", [pad(g, x[0], [0, 0, 0, 1, 0, 0, 1, 0])], kernel_shape=[3, 3],
        strides=[2, 2], pads=[1, 0, 0, 1], count_include_pad=1), optimize=False)
    single("pad_fold/max_pool_lowest_kept", 17, [img], lambda g, x: g.node(
        "MaxPool", [pad(g, x[0], [0, 0, 1, 1, 0, 0, 1, 1], np.finfo(np.float32).min)],
        kernel_shape=[3, 3], strides=[2, 2]), optimize=False)
    # Gemm and MatMul.
    single("linear/gemm_transb_alpha_beta", 17, [[3, 6]], lambda g, x: g.node(
        "Gemm", [x[0], g.weight("fc.weight", [4, 6]), g.weight("fc.bias", [4])],
        transB=1, alpha=0.5, beta=2.0))
    single("linear/gemm_transa_matrix_c", 17, [[6, 3]], lambda g, x: g.node(
        "Gemm", [x[0], g.weight("b", [6, 4]), g.weight("c", [3, 4])], transA=1, beta=0.5))
    single("linear/gemm_scalar_c", 11, [[3, 6]], lambda g, x: g.node(
        "Gemm", [x[0], g.weight("b", [6, 4]), g.init("c", np.array([0.7], np.float32))]))
    single("linear/gemm_dynamic_b", 17, [[3, 5], [4, 5]], lambda g, x: g.node(
        "Gemm", [x[0], x[1], g.weight("c", [4])], transB=1, alpha=1.5))
    single("linear/gemm_dynamic_c_beta", 17, [[3, 5], [3, 1]], lambda g, x: g.node(
        "Gemm", [x[0], g.weight("b", [5, 4]), x[1]], beta=-0.5))
    single("linear/matmul_constant", 17, [[2, 3, 6]], lambda g, x: g.node(
        "MatMul", [x[0], g.weight("w", [6, 5])]))
    single("linear/matmul_add_bias", 17, [[2, 3, 6]], lambda g, x: g.node("Add", [
        g.node("MatMul", [x[0], g.weight("onnx::MatMul_7", [6, 5])]), g.weight("proj.bias", [5])]))
    single("linear/matmul_add_shared_output", 17, [[2, 3, 6]], lambda g, x: [
        g.node("MatMul", [x[0], g.weight("w", [6, 5])], name="mm"),
        g.node("Add", [g.weight("b", [5]), "mm_out0"])])
    single("linear/matmul_vectors", 17, [[6], [2, 6, 4], [4]], lambda g, x: [
        g.node("MatMul", [x[0], x[1]]), g.node("MatMul", [x[1], x[2]]),
        g.node("MatMul", [x[0], g.weight("w", [6, 3])]), g.node("MatMul", [x[1], g.weight("v", [4])])])
    single("linear/matmul_dynamic_broadcast", 17, [[2, 1, 3, 4], [3, 4, 5]], lambda g, x: g.node(
        "MatMul", [x[0], x[1]]))
    # Elementwise arithmetic.
    for op in ["Add", "Sub", "Mul", "Div"]:
        single(f"elementwise/{op.lower()}_constant", 17, [img], lambda g, x, op=op: g.node(
            op, [x[0], g.init("c", g.rng.uniform(0.5, 1.5, [4, 1, 1]).astype(np.float32))]))
        single(f"elementwise/{op.lower()}_broadcast_inputs", 17, [img, [1, 4, 1, 9]],
               lambda g, x, op=op: g.node(op, [x[0], x[1]]))
    single("elementwise/sub_constant_first", 17, [img], lambda g, x: g.node(
        "Sub", [g.init("c", np.array(1.0, np.float32)), x[0]]))
    # Shape ops.
    single("shape/concat_with_constant", 17, [img, [1, 2, 9, 9]], lambda g, x: g.node(
        "Concat", [x[0], x[1], g.weight("c", [1, 3, 9, 9])], axis=-3))
    single("shape/flatten_axis2", 17, [img], lambda g, x: g.node("Flatten", [x[0]], axis=2))
    single("shape/flatten_axis0", 11, [img], lambda g, x: g.node("Flatten", [x[0]], axis=0))
    single("shape/reshape_shape_chain", 28, [img], reshape_chain)
    single("shape/slice_shape_chain", 13, [img], lambda g, x: g.node("Reshape", [x[0], g.node("Concat", [
        g.node("Slice", [g.node("Shape", [x[0]]), g.init("s", np.array([0], np.int64)),
                         g.init("e", np.array([2], np.int64))]),
        g.init("m", np.array([-1], np.int64))], axis=0)]))
    single("shape/slice_reversed_shape", 13, [img], lambda g, x: g.node("Reshape", [x[0], g.node(
        "Slice", [g.node("Shape", [x[0]]), g.init("s", np.array([-1], np.int64)),
                  g.init("e", np.array([-1000], np.int64)), g.init("a", np.array([0], np.int64)),
                  g.init("st", np.array([-1], np.int64))])]))
    single("pool/reduce_mean_spatial_keepdims", 17, [img], lambda g, x: g.node(
        "ReduceMean", [x[0]], axes=[-1, 2]))
    single("pool/reduce_mean_spatial_opset18", 18, [img], lambda g, x: g.node(
        "ReduceMean", [x[0], g.init("a", np.array([2, 3], np.int64))], keepdims=0))
    single("shape/reshape_zero_and_minus_one", 17, [img], lambda g, x: g.node(
        "Reshape", [x[0], g.init("s", np.array([0, -1, 9], np.int64))]))
    single("shape/squeeze_unsqueeze_opset11", 11, [[1, 4, 1, 9]], lambda g, x: g.node(
        "Unsqueeze", [g.node("Squeeze", [x[0]], axes=[0, 2])], axes=[-1, 0]))
    single("shape/squeeze_unsqueeze_opset13", 13, [[1, 4, 1, 9]], lambda g, x: g.node(
        "Unsqueeze", [g.node("Squeeze", [x[0], g.init("a", np.array([2], np.int64))]),
                      g.init("b", np.array([1, 4], np.int64))]))
    single("shape/transpose", 17, [[2, 3, 4, 5]], lambda g, x: g.node(
        "Transpose", [x[0]], perm=[0, 3, 1, 2]))
    single("shape/transpose_default", 17, [[2, 3, 4]], lambda g, x: g.node("Transpose", [x[0]]))
    single("shape/identity", 17, [img], lambda g, x: g.node("Relu", [g.node("Identity", [x[0]])]))
    single("shape/gather_select", 17, [[3, 2, 5]], lambda g, x: g.node(
        "Gather", [x[0], g.init("i", np.array(-1, np.int64))], axis=0))
    for mode in ["constant", "reflect", "edge"]:
        single(f"shape/pad_{mode}", 25, [img], lambda g, x, mode=mode: g.node(
            "Pad", [x[0], g.init("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
                    g.init("v", np.array(0.5, np.float32)) if mode == "constant" else ""],
            mode=mode))
    single("shape/pad_negative_crops", 17, [img], lambda g, x: g.node(
        "Pad", [x[0], g.init("p", np.array([0, -1, 2, -3, 0, 0, -1, 1], np.int64))], mode="edge"))
    single("shape/pad_axes_opset18", 18, [img], lambda g, x: g.node(
        "Pad", [x[0], g.init("p", np.array([1, 0, 2, 3], np.int64)), "",
                g.init("a", np.array([1, 3], np.int64))]))
    # Slice, Split, Gather, Tile and Expand of computed tensors.
    indexing_fixtures()
    # Softmax and Dropout.
    single("softmax/opset11_axis1_flattens", 11, [[2, 3, 4]], lambda g, x: g.node(
        "Softmax", [x[0]], axis=1))
    single("softmax/opset13_axis1", 13, [[2, 3, 4]], lambda g, x: g.node("Softmax", [x[0]], axis=1))
    single("softmax/default_axis", 17, [[2, 3, 4]], lambda g, x: g.node("Softmax", [x[0]]))
    single("dropout/opset12_ratio_input", 12, [img], lambda g, x: g.node("Dropout", [
        x[0], g.init("r", np.array(0.3, np.float32))]))
    single("dropout/opset11_ratio_attribute", 11, [img], lambda g, x: g.node(
        "Dropout", [x[0]], ratio=0.2))
    # Recurrent.
    recurrent_fixtures()
    resize_fixtures()
    # A model whose weights live in an external data file.
    single("external_data/conv", 17, [img], lambda g, x: g.conv(x[0], "conv", 4, 3, 3, pad=1),
           external=True)


def older_opsets():
    """The forms of opsets 6 to 10 where they differ from opset 11's:
    attributes that later became inputs, Softmax's flattening, Gemm's
    required C, pooling attributes that did not exist yet, and opset 6's
    legacy broadcasting and `is_test`. Opset 6 models are checked against
    ORT's run of their opset 7 form (`reference`)."""
    img = [1, 4, 9, 9]
    # Pad: pads, value and mode are attributes before opset 11.
    single("shape/pad_opset10_attributes", 10, [img], lambda g, x: g.node(
        "Pad", [x[0]], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5))
    single("shape/pad_opset9_reflect", 9, [img], lambda g, x: g.node(
        "Pad", [x[0]], pads=[0, 0, 2, 1, 0, 0, 1, 3], mode="reflect"))
    single("shape/pad_opset7_edge", 7, [img], lambda g, x: g.node(
        "Pad", [x[0]], pads=[0, 1, 0, 2, 0, 0, 3, 0], mode="edge"))
    # Slice: starts, ends and axes are attributes before opset 10.
    single("shape/slice_opset9_attributes", 9, [img], lambda g, x: g.node("Reshape", [x[0], g.node(
        "Concat", [g.node("Slice", [g.node("Shape", [x[0]])], starts=[0], ends=[1]),
                   g.init("m", np.array([-1], np.int64)),
                   g.node("Slice", [g.node("Shape", [x[0]])], axes=[0], starts=[-1], ends=[1000])],
        axis=0)]))
    # Clip: min and max are attributes before opset 11.
    single("activation/clip_opset10_attributes", 10, [img], lambda g, x: g.node(
        "Clip", [x[0]], min=-0.3, max=0.4))
    single("activation/clip_opset9_min_only", 9, [img], lambda g, x: g.node(
        "Clip", [x[0]], min=-0.2))
    single("activation/clip_opset7_relu6", 7, [img], lambda g, x: g.node("Clip", [g.node(
        "Mul", [x[0], g.init("k", np.array(8, np.float32))])], min=0.0, max=6.0))
    # Dropout: the ratio attribute, and the mask output (unused).
    single("dropout/opset10_ratio_attribute_mask", 10, [img], lambda g, x: g.node(
        "Dropout", [x[0]], ["y", "mask"], ratio=0.3)[0])
    single("dropout/opset7_default_ratio", 7, [img], lambda g, x: g.node("Dropout", [x[0]]))
    single("dropout/opset6_is_test", 6, [img],
           lambda g, x: g.node("Dropout", [x[0]], is_test=1, ratio=0.4),
           reference=(7, lambda g, x: g.node("Dropout", [x[0]], ratio=0.4)))

    # BatchNormalization: `spatial` until opset 8, `is_test` until 6; the
    # opset 7 model is stored as IR version 3, its initializers listed as
    # graph inputs.
    def bn(g, x, **attrs):
        return g.node("BatchNormalization", [
            x[0], g.weight("s", [4], 1.5), g.weight("b", [4]), g.weight("m", [4]),
            g.init("v", g.rng.uniform(0.5, 2, 4).astype(np.float32))], **attrs)
    single("norm/batch_norm_opset7_spatial_ir3", 7, [img],
           lambda g, x: bn(g, x, epsilon=1e-3, momentum=0.8, spatial=1), ir_version=3)
    single("norm/batch_norm_opset9", 9, [img], lambda g, x: bn(g, x, epsilon=2e-5))
    single("norm/batch_norm_opset6_is_test", 6, [img],
           lambda g, x: bn(g, x, epsilon=1e-3, is_test=1, momentum=0.9),
           reference=(7, lambda g, x: bn(g, x, epsilon=1e-3, momentum=0.9)))
    # Squeeze, Unsqueeze, ReduceMean: axes attributes (non-negative before
    # opset 11); Reshape and Flatten as in opset 11.
    single("shape/squeeze_unsqueeze_opset9", 9, [[1, 4, 1, 9]], lambda g, x: g.node(
        "Unsqueeze", [g.node("Squeeze", [x[0]], axes=[0, 2])], axes=[0, 3]))
    single("shape/squeeze_all_opset7", 7, [[1, 4, 1, 9]], lambda g, x: g.node("Squeeze", [x[0]]))
    single("shape/reshape_opset9", 9, [img], lambda g, x: g.node(
        "Reshape", [x[0], g.init("s", np.array([0, -1, 9], np.int64))]))
    single("shape/flatten_opset9_axis3", 9, [img], lambda g, x: g.node("Flatten", [x[0]], axis=3))
    single("shape/concat_opset9", 9, [img, [1, 2, 9, 9]], lambda g, x: g.node(
        "Concat", [x[0], x[1]], axis=1))
    single("pool/reduce_mean_opset10_axes_attribute", 10, [img], lambda g, x: g.node(
        "ReduceMean", [x[0]], axes=[3, 2], keepdims=0))
    # Softmax before opset 13: the input is coerced to 2-D at `axis`
    # (default 1), so it normalises over every dim from `axis` on.
    single("softmax/opset9_axis2_of_rank4_flattens", 9, [[2, 3, 4, 5]], lambda g, x: g.node(
        "Softmax", [x[0]], axis=2))
    single("softmax/opset10_default_axis_of_rank4", 10, [[2, 3, 2, 2]], lambda g, x: g.node(
        "Softmax", [x[0]]))
    single("softmax/opset7_last_axis", 7, [[2, 3, 4]], lambda g, x: g.node(
        "Softmax", [x[0]], axis=2))
    # Gemm: C is required before opset 11; before opset 7 it broadcasts
    # only with `broadcast=1`.
    single("linear/gemm_opset9_vector_c", 9, [[3, 6]], lambda g, x: g.node(
        "Gemm", [x[0], g.weight("fc.weight", [4, 6]), g.weight("fc.bias", [4])],
        transB=1, alpha=0.5, beta=2.0))
    single("linear/gemm_opset7_matrix_c_transa", 7, [[6, 3], [3, 4]], lambda g, x: g.node(
        "Gemm", [x[0], g.weight("b", [6, 4]), x[1]], transA=1, beta=0.5))
    single("linear/gemm_opset6_broadcast", 6, [[3, 6]],
           lambda g, x: g.node("Gemm", [x[0], g.weight("w", [4, 6]), g.weight("c", [4])],
                               transB=1, broadcast=1),
           reference=(7, lambda g, x: g.node(
               "Gemm", [x[0], g.weight("w", [4, 6]), g.weight("c", [4])], transB=1)))
    # Pooling: no `ceil_mode` or `dilations` before opset 10, no
    # `count_include_pad` before 7.
    single("pool/max_opset9_pads_strides", 9, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]))
    single("pool/max_opset10_ceil_dilations", 10, [img], lambda g, x: g.node(
        "MaxPool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 1], ceil_mode=1))
    single("pool/avg_opset9_include_pad", 9, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
        count_include_pad=1))
    single("pool/avg_opset7_exclude_pad_asymmetric", 7, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[3, 3], pads=[0, 0, 1, 1]))
    single("pool/avg_opset10_ceil", 10, [img], lambda g, x: g.node(
        "AveragePool", [x[0]], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    # ConvTranspose: opset 10's text splits odd padding for `output_shape`
    # the other way round from opset 11's; ONNX Runtime (and nnc) use
    # opset 11's rule at every opset.
    single("conv_transpose/output_shape_opset10", 10, [[1, 2, 4, 4]], lambda g, x: g.node(
        "ConvTranspose", [x[0], g.weight("w", [2, 3, 3, 3])], strides=[2, 2],
        output_shape=[8, 8]))
    # Recurrent ops: opset 6 has `output_sequence` (whether Y is optional).
    def lstm(**attrs):
        return lambda g, x: g.node("LSTM", [x[0]] + recurrent_weights(g, 4, 1, 4, 3), ["y", "y_h"],
                                   hidden_size=4, **attrs)
    single("recurrent/lstm_opset6_output_sequence", 6, [[5, 2, 3]], lstm(output_sequence=1),
           reference=(7, lstm()))
    single("recurrent/gru_opset7", 7, [[5, 2, 3]], lambda g, x: g.node(
        "GRU", [x[0]] + recurrent_weights(g, 3, 2, 4, 3), ["y", "y_h"], hidden_size=4,
        direction="bidirectional", linear_before_reset=1))
    # Opset 6's broadcasting: B matches A's dims from `axis` (by default
    # its last dims), as a constant or a computed tensor.
    single("elementwise/add_opset6_broadcast_axis", 6, [img],
           lambda g, x: g.node("Add", [x[0], g.weight("b", [4, 9])], broadcast=1, axis=1),
           reference=(7, lambda g, x: g.node("Add", [x[0], g.node(
               "Reshape", [g.weight("b", [4, 9]), g.init("s", np.array([4, 9, 1], np.int64))])])))
    single("elementwise/sub_opset6_broadcast_axis0_inputs", 6, [[2, 3, 4], [2]],
           lambda g, x: g.node("Sub", [x[0], x[1]], broadcast=1, axis=0),
           reference=(7, lambda g, x: g.node("Sub", [x[0], g.node(
               "Reshape", [x[1], g.init("s", np.array([2, 1, 1], np.int64))])])))
    single("elementwise/mul_opset6_broadcast_suffix_inputs", 6, [img, [9, 9]],
           lambda g, x: g.node("Mul", [x[0], x[1]], broadcast=1),
           reference=(7, lambda g, x: g.node("Mul", [x[0], x[1]])))
    single("elementwise/div_opset6_same_shape", 6, [img, img],
           lambda g, x: g.node("Div", [x[0], g.node("Add", [
               x[1], g.init("k", np.full(img, 2.0, np.float32))])]),
           reference=(7, lambda g, x: g.node("Div", [x[0], g.node("Add", [
               x[1], g.init("k", np.full(img, 2.0, np.float32))])])))


def indexing_fixtures():
    """The indexing ops on computed tensors (the inputs, or a Relu of them)."""
    i64 = lambda *v: np.array(v, np.int64)
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min

    def slice_(g, x, starts, ends, axes=None, steps=None):
        ins = [x, g.init(g.name("starts"), i64(*starts)), g.init(g.name("ends"), i64(*ends))]
        if axes is not None:
            ins.append(g.init(g.name("axes"), i64(*axes)))
        if steps is not None:
            ins.append(g.init(g.name("steps"), i64(*steps)))
        return g.node("Slice", ins)

    single("indexing/slice_computed", 13, [[2, 6, 9, 9]], lambda g, x: slice_(
        g, g.relu(x[0]), [1, 2], [5, -1], axes=[1, 3]))
    single("indexing/slice_default_axes_opset11", 11, [[5, 6, 7]], lambda g, x: slice_(
        g, x[0], [1, -4], [big, 100]))
    single("indexing/slice_steps", 13, [[2, 6, 9, 10]], lambda g, x: slice_(
        g, x[0], [0, 1, 8], [big, 9, 0], axes=[1, 2, -1], steps=[2, 3, -2]))
    single("indexing/slice_negative_steps", 13, [[3, 4, 5]], lambda g, x: slice_(
        g, x[0], [-1, 3, -1], [-1000, 0, small], axes=[0, 2, 1], steps=[-1, -2, -1]))
    single("indexing/slice_whole_axes", 13, [[2, 3, 4]], lambda g, x: g.relu(slice_(
        g, x[0], [0, -100], [big, 3], axes=[2, 1])))
    single("indexing/split_attribute_opset11", 11, [[2, 6, 5]], lambda g, x: g.node(
        "Split", [x[0]], 3, axis=1, split=[1, 3, 2]))
    single("indexing/split_input_opset13", 13, [[2, 3, 6]], lambda g, x: g.node(
        "Split", [g.relu(x[0]), g.init("split", i64(2, 4))], 2, axis=-1))
    single("indexing/split_equal_opset13", 13, [[2, 6, 5]], lambda g, x: g.node(
        "Split", [x[0]], 3, axis=1))
    single("indexing/split_num_outputs_opset18", 18, [[7, 3]], lambda g, x: g.node(
        "Split", [x[0]], 3, num_outputs=3))
    single("indexing/split_unused_output", 13, [[4, 6]], lambda g, x: (lambda parts: [
        parts[0], g.relu(parts[2])])(g.node("Split", [x[0]], 3, axis=1)))
    single("indexing/gather_rank1_axis0", 13, [[5, 3, 4]], lambda g, x: g.node(
        "Gather", [x[0], g.init("i", i64(4, 0, -1, 0))], axis=0))
    single("indexing/gather_rank1_axis2", 13, [[2, 3, 6]], lambda g, x: g.node(
        "Gather", [g.relu(x[0]), g.init("i", i64(5, 1, 2))], axis=2))
    single("indexing/gather_rank1_axis_minus1_long", 13, [[3, 40]], lambda g, x: g.node(
        "Gather", [x[0], g.init("i", i64(*[(7 * k) % 40 for k in range(25)]))], axis=-1))
    single("indexing/tile", 13, [[2, 3, 4]], lambda g, x: g.node(
        "Tile", [x[0], g.init("r", i64(2, 1, 3))]))
    single("indexing/tile_ones", 13, [[2, 3]], lambda g, x: g.relu(g.node(
        "Tile", [x[0], g.init("r", i64(1, 1))])))
    single("indexing/expand_both_ways", 13, [[3, 1, 5]], lambda g, x: g.node(
        "Expand", [x[0], g.init("s", i64(2, 1, 4, 5))]))
    single("indexing/expand_leading_ones", 13, [[4, 5]], lambda g, x: g.node(
        "Expand", [x[0], g.init("s", i64(1, 1, 5))]))
    single("indexing/expand_last_axis", 13, [[2, 3, 1]], lambda g, x: g.node(
        "Expand", [x[0], g.init("s", i64(2, 3, 7))]))


def reductions():
    """ReduceMean, ReduceSum, ReduceMax and ReduceMin with axes as the
    attribute and as an input, keepdims both ways, negative and absent
    axes; GlobalMaxPool, LogSoftmax and LRN with odd and even sizes."""
    x4 = [2, 3, 4, 5]

    def axes(g, values):
        return g.init(g.name("axes"), np.array(values, np.int64))

    single("reduce/mean_opset17_attribute_keepdims", 17, [x4], lambda g, x: g.node(
        "ReduceMean", [x[0]], axes=[1]))
    single("reduce/mean_opset18_input_negative", 18, [x4], lambda g, x: g.node(
        "ReduceMean", [x[0], axes(g, [-1, 1])], keepdims=0))
    single("reduce/sum_opset11_attribute", 11, [x4], lambda g, x: g.node(
        "ReduceSum", [x[0]], axes=[0, 2], keepdims=0))
    single("reduce/sum_opset13_input_keepdims", 13, [x4], lambda g, x: g.node(
        "ReduceSum", [x[0], axes(g, [-2])]))
    single("reduce/sum_opset13_every_dim", 13, [x4], lambda g, x: g.node(
        "ReduceSum", [x[0]], keepdims=0))
    single("reduce/sum_opset13_noop_with_empty_axes", 13, [x4], lambda g, x: g.node(
        "Relu", [g.node("ReduceSum", [x[0]], noop_with_empty_axes=1)]))
    single("reduce/max_opset13_attribute_keepdims", 13, [x4], lambda g, x: g.node(
        "ReduceMax", [x[0]], axes=[2, 3]))
    single("reduce/max_opset18_input", 18, [x4], lambda g, x: g.node(
        "ReduceMax", [x[0], axes(g, [0])], keepdims=0))
    single("reduce/min_opset17_negative", 17, [x4], lambda g, x: g.node(
        "ReduceMin", [x[0]], axes=[-1], keepdims=0))
    single("reduce/min_opset20_input_keepdims", 20, [x4], lambda g, x: g.node(
        "ReduceMin", [x[0], axes(g, [1, -1])]))
    single("pool/global_max", 17, [[1, 4, 9, 9]], lambda g, x: g.node("GlobalMaxPool", [x[0]]))
    single("pool/global_max_rank3", 17, [[2, 4, 11]], lambda g, x: g.node(
        "GlobalMaxPool", [x[0]]))
    single("softmax/log_softmax_opset11_axis1_flattens", 11, [[2, 3, 4]], lambda g, x: g.node(
        "LogSoftmax", [x[0]], axis=1))
    single("softmax/log_softmax_opset13_axis1", 13, [[2, 3, 4]], lambda g, x: g.node(
        "LogSoftmax", [x[0]], axis=1))
    single("softmax/log_softmax_default_axis", 17, [[2, 3, 4]], lambda g, x: g.node(
        "LogSoftmax", [x[0]]))
    single("norm/lrn_odd", 13, [[2, 7, 4, 5]], lambda g, x: g.node(
        "LRN", [x[0]], size=5, alpha=0.5, beta=0.75, bias=2.0))
    # ORT's LRN requires an odd size, so the even sizes are checked against
    # the spec's formula in NumPy, itself checked here against ORT's odd one.
    odd = os.path.join(ROOT, "norm/lrn_odd")
    ort_odd = np.load(os.path.join(odd, "output_0.npy"))
    ours = lrn_reference(np.load(os.path.join(odd, "input_0.npy")), 5, 0.5, 0.75, 2.0)
    assert np.allclose(ours, ort_odd, rtol=1e-5, atol=1e-6), "lrn_reference disagrees with ORT"
    single_numpy("norm/lrn_even", 13, [2, 7, 4, 5], lambda g, x: g.node(
        "LRN", [x], size=4, alpha=1.0, beta=0.6, bias=1.0),
        lambda x: lrn_reference(x, 4, 1.0, 0.6, 1.0))
    single_numpy("norm/lrn_even_defaults_rank3", 11, [1, 5, 3], lambda g, x: g.node(
        "LRN", [x], size=2), lambda x: lrn_reference(x, 2, 1e-4, 0.75, 1.0), scale=20)


def lrn_reference(x, size, alpha, beta, bias):
    """ONNX's LRN as its spec writes it, in float64: the window of channel
    c is c - floor((size-1)/2) ..= c + ceil((size-1)/2). (ORT refuses even
    sizes; onnx.reference's LRN loops over the batch, not the channels.)"""
    c = x.shape[1]
    before, after = (size - 1) // 2, size // 2
    squares = np.zeros(x.shape, np.float64)
    for ch in range(c):
        lo, hi = max(0, ch - before), min(c - 1, ch + after)
        squares[:, ch] = np.sum(x[:, lo:hi + 1].astype(np.float64) ** 2, axis=1)
    return (x / (bias + alpha / size * squares) ** beta).astype(np.float32)


def single_numpy(name, opset, shape, build, reference, scale=1, offset=0.0):
    """A model of one op on one input that ORT cannot run (or not
    accurately), with `reference(input)` stored as its output; the input is
    drawn from U(-scale, scale), plus `offset` (which `reference` adds
    itself)."""
    g = Graph(0)
    g.output(build(g, g.input("x0", shape)))
    model = g.model(opset, name.replace("/", "_"))
    save(name, model, None)
    x = rand(g.rng, shape) * np.float32(scale)
    np.save(os.path.join(ROOT, name, "input_0.npy"), x + np.float32(offset))
    np.save(os.path.join(ROOT, name, "output_0.npy"), reference(x))


def reshape_chain(g, x):
    """x.view(x.size(0), -1), as exporters write it."""
    shape = g.node("Shape", [x[0]])
    batch = g.node("Gather", [shape, g.init("zero", np.array(0, np.int64))], axis=0)
    lead = g.node("Unsqueeze", [batch, g.init("axes", np.array([0], np.int64))])
    target = g.node("Concat", [lead, g.init("minus_one", np.array([-1], np.int64))], axis=0)
    return g.node("Reshape", [x[0], target])


def recurrent_weights(g, gates, dirs, hidden, features, bias=True):
    ins = [g.weight(g.name("W"), [dirs, gates * hidden, features]),
           g.weight(g.name("R"), [dirs, gates * hidden, hidden])]
    ins.append(g.weight(g.name("B"), [dirs, 2 * gates * hidden]) if bias else "")
    return ins


def lstm_layout1(seq, batch, feat, hid):
    """A bidirectional LSTM with initial states in layout=1 (batch first).
    ORT runs only layout=0, so the same weights are run by ORT in layout=0
    and inputs and outputs are transposed to layout=1."""
    g = Graph(7)
    weights = recurrent_weights(g, 4, 2, hid, feat)
    h0 = g.rng.uniform(-1, 1, [2, batch, hid]).astype(np.float32)
    c0 = g.rng.uniform(-1, 1, [2, batch, hid]).astype(np.float32)
    x = rand(g.rng, [seq, batch, feat])

    def build(layout):
        b = Graph(0)
        b.inits = list(g.inits)
        perm = (1, 0, 2) if layout else (0, 1, 2)
        xs = b.input("x", [batch, seq, feat] if layout else [seq, batch, feat])
        ins = [xs] + weights + ["", b.init("h0", h0.transpose(perm)), b.init("c0", c0.transpose(perm))]
        b.node("LSTM", ins, ["y", "y_h"], name="lstm", hidden_size=hid, direction="bidirectional",
               layout=layout)
        b.output("y")
        b.output("y_h")
        return b.model(14, "lstm_layout1")

    reference = build(0)
    session = ort.InferenceSession(reference.SerializeToString(), providers=["CPUExecutionProvider"])
    y, y_h = session.run(None, {"x": x})
    path = os.path.join(ROOT, "recurrent/lstm_bidirectional_layout1")
    if not selected("recurrent/lstm_bidirectional_layout1"):
        return
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    onnx.save_model(build(1), os.path.join(path, "model.onnx"))
    np.save(os.path.join(path, "input_0.npy"), x.transpose(1, 0, 2).copy())
    # Y: [seq, dirs, batch, hidden] -> [batch, seq, dirs, hidden];
    # Y_h: [dirs, batch, hidden] -> [batch, dirs, hidden].
    np.save(os.path.join(path, "output_0.npy"), y.transpose(2, 0, 1, 3).copy())
    np.save(os.path.join(path, "output_1.npy"), y_h.transpose(1, 0, 2).copy())


def recurrent_fixtures():
    seq, batch, feat, hid = 5, 2, 3, 4

    def lstm(direction, dirs, outputs=(0,), states=False, layout=0, bias=True, lens=None):
        def build(g, x):
            ins = [x[0]] + recurrent_weights(g, 4, dirs, hid, feat, bias)
            lengths = lens or [seq] * batch
            if states:
                shape = [batch, dirs, hid] if layout else [dirs, batch, hid]
                ins += [g.init("lens", np.array(lengths, np.int32)),
                        g.weight("h0", shape, 1.0), g.weight("c0", shape, 1.0)]
            elif lens:
                ins += [g.init("lens", np.array(lengths, np.int32))]
            outs = [f"y{i}" for i in range(max(outputs) + 1)]
            g.node("LSTM", ins, outs, hidden_size=hid, direction=direction, layout=layout)
            return [outs[i] for i in outputs]
        return build

    x_seq = [[seq, batch, feat]]
    single("recurrent/lstm_forward", 22, x_seq, lstm("forward", 1, (0, 1)))
    single("recurrent/lstm_reverse_states", 14, x_seq, lstm("reverse", 1, (0, 1), states=True))
    single("recurrent/lstm_bidirectional", 14, x_seq, lstm("bidirectional", 2, (0, 1), bias=False))
    # Shorter sequences: outputs past a sequence's end are zero, final
    # states are those after its last step.
    single("recurrent/lstm_lengths_all_outputs", 14, x_seq, lstm("forward", 1, (0, 1, 2), lens=[3, 5]))
    single("recurrent/lstm_reverse_lengths_states", 14, x_seq,
           lstm("reverse", 1, (0, 1, 2), states=True, lens=[5, 2]))
    single("recurrent/lstm_bidirectional_lengths_final_states", 22, x_seq,
           lstm("bidirectional", 2, (1, 2), lens=[4, 1]))
    single("recurrent/lstm_cell_state_only", 14, x_seq, lstm("forward", 1, (2,)))
    # ONNX Runtime does not run layout=1 (batch-first) recurrent ops; that
    # fixture's reference is ORT's layout=0 run, transposed.
    if selected("recurrent/lstm_bidirectional_layout1"):
        lstm_layout1(seq, batch, feat, hid)
    single("recurrent/lstm_bidirectional_states", 14, x_seq,
           lstm("bidirectional", 2, (0, 1), states=True))

    def rnn(direction, dirs):
        def build(g, x):
            ins = [x[0]] + recurrent_weights(g, 1, dirs, hid, feat)
            ins += ["", g.weight("h0", [dirs, batch, hid], 1.0)]
            return g.node("RNN", ins, ["y", "y_h"], hidden_size=hid, direction=direction)
        return build

    single("recurrent/rnn_forward_state", 14, x_seq, rnn("forward", 1))
    single("recurrent/rnn_bidirectional", 14, x_seq, rnn("bidirectional", 2))

    def gru(direction, dirs):
        def build(g, x):
            ins = [x[0]] + recurrent_weights(g, 3, dirs, hid, feat)
            return g.node("GRU", ins, ["y", "y_h"], hidden_size=hid, direction=direction,
                          linear_before_reset=1)
        return build

    single("recurrent/gru_forward", 14, x_seq, gru("forward", 1))
    single("recurrent/gru_lengths_final_state", 14, x_seq, lambda g, x: g.node(
        "GRU", [x[0]] + recurrent_weights(g, 3, 2, hid, feat) + [g.init("lens", np.array([2, 4], np.int32))],
        ["y", "y_h"], hidden_size=hid, direction="bidirectional", linear_before_reset=1)[1])
    single("recurrent/rnn_reverse_lengths", 14, x_seq, lambda g, x: g.node(
        "RNN", [x[0]] + recurrent_weights(g, 1, 1, hid, feat) + [g.init("lens", np.array([3, 5], np.int32))],
        ["y", "y_h"], hidden_size=hid, direction="reverse"))
    single("recurrent/gru_bidirectional", 14, x_seq, gru("bidirectional", 2))
    # linear_before_reset=0 (ONNX's default, Keras's reset_after=False):
    # batch 2, batch 1 (which nnc runs by GEMMs too), and reverse with an
    # initial state and lengths.
    single("recurrent/gru_reset_first", 14, x_seq, lambda g, x: g.node(
        "GRU", [x[0]] + recurrent_weights(g, 3, 1, hid, feat), ["y"], hidden_size=hid))
    single("recurrent/gru_reset_first_batch1", 14, [[seq, 1, feat]], lambda g, x: g.node(
        "GRU", [x[0]] + recurrent_weights(g, 3, 2, hid, feat), ["y"], hidden_size=hid,
        direction="bidirectional"))
    single("recurrent/gru_reset_first_reverse_state_lengths", 14, x_seq, lambda g, x: g.node(
        "GRU", [x[0]] + recurrent_weights(g, 3, 1, hid, feat)
        + [g.init("lens", np.array([3, 5], np.int32)), g.weight("h0", [1, batch, hid], 1.0)],
        ["y", "y_h"], hidden_size=hid, direction="reverse"))


def resize_fixtures():
    """Resize in every coordinate transform nnc imports, nearest and linear,
    by scales and by sizes, growing and shrinking; nearest roundings where
    coordinates land on halves; opset 18's axes and keep_aspect_ratio_policy;
    and Upsample (opsets 7 and 9) and Resize-10."""
    shape = [2, 3, 5, 7]

    def resize(opset, scales=None, sizes=None, **attrs):
        def build(g, x):
            # roi and scales are required inputs before opset 13 (empty
            # when unused), optional after.
            empty = g.init(g.name("empty"), np.array([], np.float32)) if opset < 13 else ""
            ins = [x[0], empty]
            if scales is not None:
                ins.append(g.init("scales", np.array(scales, np.float32)))
            else:
                ins += [empty, g.init("sizes", np.array(sizes, np.int64))]
            return g.node("Resize", ins, **attrs)
        return build

    targets = {
        "up_scales": dict(scales=[1, 1, 1.7, 2.5]),
        "up_sizes": dict(sizes=[2, 3, 9, 16]),
        "down_scales": dict(scales=[1, 1, 0.6, 0.45]),
        "down_sizes": dict(sizes=[2, 3, 3, 4]),
    }
    # tf_half_pixel_for_nn was dropped from the spec at opset 13;
    # half_pixel_symmetric came at 19.
    coordinates = [("asymmetric", 13), ("half_pixel", 13), ("pytorch_half_pixel", 13),
                   ("align_corners", 13), ("tf_half_pixel_for_nn", 11),
                   ("half_pixel_symmetric", 19)]
    for coordinate, opset in coordinates:
        for mode in ["nearest", "linear"]:
            for target, given in targets.items():
                single(f"resize/{coordinate}_{mode}_{target}", opset, [shape],
                       resize(opset, mode=mode, coordinate_transformation_mode=coordinate, **given))
    # Asymmetric at scale 2 puts every other coordinate on a half.
    for rounding in ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]:
        single(f"resize/nearest_{rounding}_halves", 13, [shape], resize(
            13, scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric",
            nearest_mode=rounding))
        single(f"resize/nearest_{rounding}_half_pixel_down", 13, [shape], resize(
            13, scales=[1, 1, 0.6, 0.45], coordinate_transformation_mode="half_pixel",
            nearest_mode=rounding))
    single("resize/linear_mixed_up_down", 13, [shape], resize(
        13, scales=[1, 1, 1.5, 0.6], mode="linear"))
    for coordinate in ["pytorch_half_pixel", "align_corners", "half_pixel"]:
        single(f"resize/linear_{coordinate}_to_one_pixel", 13, [shape], resize(
            13, sizes=[2, 3, 1, 1], mode="linear", coordinate_transformation_mode=coordinate))
    single("resize/nearest_defaults_opset11", 11, [shape], resize(11, sizes=[2, 3, 8, 10]))
    single("resize/opset18_axes_scales", 18, [shape], resize(
        18, scales=[2.0, 1.5], axes=[3, 2], mode="linear"))
    single("resize/opset18_not_larger", 18, [shape], resize(
        18, sizes=[8, 9], axes=[2, 3], keep_aspect_ratio_policy="not_larger", mode="linear"))
    single("resize/opset18_not_smaller", 18, [shape], resize(
        18, sizes=[8, 9], axes=[2, 3], keep_aspect_ratio_policy="not_smaller"))
    # Opsets below 11: asymmetric, the old nearest rounding.
    single("resize/upsample_opset9_nearest", 9, [shape], lambda g, x: g.node(
        "Upsample", [x[0], g.init("scales", np.array([1, 1, 2, 3], np.float32))]))
    single("resize/upsample_opset9_linear", 9, [shape], lambda g, x: g.node(
        "Upsample", [x[0], g.init("scales", np.array([1, 1, 1.5, 2.5], np.float32))],
        mode="linear"))
    single("resize/upsample_opset7_attribute", 7, [shape], lambda g, x: g.node(
        "Upsample", [x[0]], scales=[1.0, 1.0, 2.0, 1.5]))
    single("resize/resize_opset10_nearest_down", 10, [shape], lambda g, x: g.node(
        "Resize", [x[0], g.init("scales", np.array([1, 1, 0.6, 0.45], np.float32))]))
    single("resize/resize_opset10_linear_up", 10, [shape], lambda g, x: g.node(
        "Resize", [x[0], g.init("scales", np.array([1, 1, 1.7, 2.5], np.float32))],
        mode="linear"))

    # Forms nnc rejects, each with its reason.
    g = Graph(8)
    x = g.input("x", [1, 2, 4, 4])
    twice = g.init("twice", np.array([1, 1, 2, 2], np.float32))
    outs = [
        g.node("Resize", [x, "", twice], name="resize_cubic", mode="cubic"),
        g.node("Resize", [x, g.init("roi", np.array([0, 0, 0.1, 0.1, 1, 1, 0.9, 0.9], np.float32)),
                          twice], name="resize_crop",
               coordinate_transformation_mode="tf_crop_and_resize"),
        g.node("Resize", [x, "", g.init("half", np.array([1, 1, 0.5, 0.5], np.float32))],
               name="resize_antialias", mode="linear", antialias=1),
        g.node("Resize", [x, "", twice], name="resize_exclude_outside", mode="linear",
               exclude_outside=1),
        g.node("Resize", [x, "", g.init("channels", np.array([1, 2, 1, 1], np.float32))],
               name="resize_channels"),
    ]
    for out in outs:
        g.output(out)
    save("errors/unsupported_resize", g.model(19, "unsupported_resize"), None)




# ---------------------------------------------------------------- models

def diff_fixtures():
    """Regression cases for the bugs `scripts/ort_diff.py` (differential
    testing against ONNX Runtime) found, one directory each under `diff/`,
    shrunk to the op and the shapes that showed the bug."""

    def with_inputs(name, opset, inputs, build):
        """A model on the given input arrays (unlike `single`'s uniform
        ones): `build(g, names)` returns the output value name."""
        if not selected(name):
            return
        g = Graph(0)
        xs = [g.input(f"x{i}", list(x.shape)) for i, x in enumerate(inputs)]
        g.output(build(g, xs))
        save(name, g.model(opset, name.replace("/", "_")), inputs)

    def scalar(g, v):
        return g.init(g.name("c"), np.array(v, np.float32))

    rng = np.random.default_rng(16)
    # A scalar's PRelu with one slope: the compiled kernel gave the slope
    # the shape [1], of higher rank than x, and indexed out of bounds.
    with_inputs("diff/prelu_of_a_scalar", 17, [np.array(-0.75, np.float32)], lambda g, x: g.node(
        "PRelu", [x[0], scalar(g, 0.25)]))
    # Mean of scalars is a scalar: its 1/n scale must not add a dim.
    with_inputs("diff/mean_of_scalars", 13, [rand(rng, []), rand(rng, []), rand(rng, [])],
                lambda g, x: g.node("Mean", x))
    # An exponent of one value but higher rank broadcasts the base to its
    # rank: pow(a, b), not the unary pow.
    with_inputs("diff/pow_exponent_of_higher_rank", 13, [rand(rng, [3]) + 2], lambda g, x: g.node(
        "Pow", [x[0], g.init("e", np.array([[2.0]], np.float32))]))
    # ONNX Runtime computes min(max(x, min), max): the max wins.
    with_inputs("diff/clip_min_above_max", 13, [rand(rng, [2, 5])], lambda g, x: g.node(
        "Clip", [x[0], scalar(g, 0.5), scalar(g, -0.5)]))

    # A layer norm spelled out with an `eps` of higher rank than x: the
    # result has an extra dim, so it is not x's layer norm.
    def spelled_norm(g, x, eps):
        m = g.node("ReduceMean", [x], axes=[-1])
        d = g.node("Sub", [x, m])
        v = g.node("ReduceMean", [g.node("Pow", [d, scalar(g, 2.0)])], axes=[-1])
        return g.node("Div", [d, g.node("Sqrt", [g.node("Add", [v, eps])])])

    with_inputs("diff/spelled_norm_eps_of_higher_rank", 13, [rand(rng, [2, 3, 8])],
                lambda g, x: spelled_norm(g, x[0], g.init("eps", np.full([1, 1, 1, 1], 1e-5, np.float32))))
    # Rows of a large constant offset plus small variations: with the mean
    # in f32, `x - mean` rounds the variations away. ONNX Runtime loses
    # digits here too (its LayerNormalization and GroupNormalization
    # compute E[x^2] - E[x]^2 in f32, giving NaN), so the outputs are the
    # definition in float64.
    def normalised(x, rows):
        r = x.astype(np.float64).reshape(rows, -1)
        mean = r.mean(axis=1, keepdims=True)
        var = ((r - mean) ** 2).mean(axis=1, keepdims=True)
        return ((r - mean) / np.sqrt(var + 1e-5)).reshape(x.shape).astype(np.float32)

    def ones(g, n):
        return g.init(g.name("ones"), np.ones(n, np.float32))

    def zeros(g, n):
        return g.init(g.name("zeros"), np.zeros(n, np.float32))

    big = np.float32(1000.0)
    single_numpy("diff/layer_norm_large_offset", 17, [6, 64], lambda g, x: g.node(
        "LayerNormalization", [x, ones(g, 64)], axis=-1, epsilon=1e-5),
        lambda x: normalised(x + big, 6), scale=0.1, offset=big)
    single_numpy("diff/instance_norm_large_offset", 17, [2, 3, 8, 8], lambda g, x: g.node(
        "InstanceNormalization", [x, ones(g, 3), zeros(g, 3)], epsilon=1e-5),
        lambda x: normalised(x + big, 6), scale=0.1, offset=big)
    single_numpy("diff/group_norm_large_offset", 21, [2, 4, 6, 6], lambda g, x: g.node(
        "GroupNormalization", [x, ones(g, 4), zeros(g, 4)], num_groups=2, epsilon=1e-5),
        lambda x: normalised(x + big, 4), scale=0.1, offset=big)

def resnet_small():
    """ResNet-style: stem, a basic block, a downsampling block with a 1x1
    conv + BN shortcut, global pooling and a classifier."""
    g = Graph(1)
    x = g.input("input", [1, 3, 32, 32])
    y = g.relu(g.bn(g.conv(x, "conv1", 3, 8, 7, stride=2, pad=3, bias=False), "bn1", 8))
    y = g.node("MaxPool", [y], name="/maxpool/MaxPool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])

    def block(x, prefix, c_in, c_out, stride):
        h = g.relu(g.bn(g.conv(x, f"{prefix}.conv1", c_in, c_out, 3, stride, 1, bias=False),
                        f"{prefix}.bn1", c_out))
        h = g.bn(g.conv(h, f"{prefix}.conv2", c_out, c_out, 3, 1, 1, bias=False), f"{prefix}.bn2", c_out)
        if stride != 1 or c_in != c_out:
            x = g.bn(g.conv(x, f"{prefix}.downsample.0", c_in, c_out, 1, stride, bias=False),
                     f"{prefix}.downsample.1", c_out)
        return g.relu(g.node("Add", [h, x]))

    y = block(y, "layer1.0", 8, 8, 1)
    y = block(y, "layer2.0", 8, 16, 2)
    y = g.node("GlobalAveragePool", [y])
    y = g.node("Flatten", [y], axis=1)
    g.output(g.linear(y, "fc", 16, 10))
    save("models/resnet_small", g.model(17, "resnet_small"), [rand(g.rng, [1, 3, 32, 32])])


def mobilenet_small():
    """MobileNetV2-style: inverted residuals with depthwise convs, ReLU6 as
    Clip, a residual add when shapes allow."""
    g = Graph(2)
    x = g.input("input", [1, 3, 32, 32])

    def cbr(x, prefix, c_in, c_out, k, stride, group=1, act=True):
        y = g.bn(g.conv(x, f"{prefix}.0", c_in, c_out, k, stride, k // 2, group, bias=False),
                 f"{prefix}.1", c_out)
        return g.relu6(y) if act else y

    y = cbr(x, "features.0", 3, 8, 3, 2)

    def inverted(x, prefix, c_in, c_out, stride, expand):
        hidden = c_in * expand
        h = cbr(x, f"{prefix}.conv.0", c_in, hidden, 1, 1)
        h = cbr(h, f"{prefix}.conv.1", hidden, hidden, 3, stride, group=hidden)
        h = g.bn(g.conv(h, f"{prefix}.conv.2", hidden, c_out, 1, bias=False), f"{prefix}.conv.3", c_out)
        return g.node("Add", [x, h]) if stride == 1 and c_in == c_out else h

    y = inverted(y, "features.1", 8, 8, 1, 4)
    y = inverted(y, "features.2", 8, 12, 2, 6)
    y = inverted(y, "features.3", 12, 12, 1, 6)
    y = cbr(y, "features.4", 12, 32, 1, 1)
    y = g.node("GlobalAveragePool", [y])
    y = g.node("Flatten", [y])
    y = g.node("Dropout", [y, g.init("ratio", np.array(0.2, np.float32))])
    g.output(g.linear(y, "classifier.1", 32, 10))
    save("models/mobilenet_small", g.model(13, "mobilenet_small"), [rand(g.rng, [1, 3, 32, 32])])


def vgg_small():
    """VGG-style: stacked 3x3 convs, max pooling, a classifier with dropout."""
    g = Graph(3)
    x = g.input("input", [2, 3, 16, 16])
    y = x
    c = 3
    i = 0
    for width, convs in [(8, 2), (16, 2)]:
        for _ in range(convs):
            y = g.relu(g.conv(y, f"features.{i}", c, width, 3, pad=1))
            c = width
            i += 2
        y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        i += 1
    y = reshape_chain(g, [y])
    y = g.node("Dropout", [g.relu(g.linear(y, "classifier.0", 16 * 4 * 4, 32)),
                           g.init("p", np.array(0.5, np.float32))])
    g.output(g.linear(y, "classifier.3", 32, 10))
    save("models/vgg_small", g.model(28, "vgg_small"), [rand(g.rng, [2, 3, 16, 16])])


def caffe2_opset9():
    """Caffe2-style at opset 9 and IR version 3, as the Model Zoo's classic
    exports: initializers listed as graph inputs, unnamed nodes, BN followed
    by a scale and bias unsqueezed from vectors, asymmetric pool pads, a
    SqueezeNet fire module, a two-output Dropout, a Reshape to a constant
    shape, and a Softmax that flattens its input from axis 1."""
    g = Graph(8)
    x = g.input("data_0", [1, 3, 24, 24])
    r = g.rng

    def op(op_type, inputs, outputs=1, **attrs):
        outs = [g.name("r") for _ in range(outputs)]
        return g.node(op_type, inputs, outs, name="", **attrs)

    def conv(x, name, c_in, c_out, k, stride=1, pad=0):
        return op("Conv", [x, g.weight(f"{name}_w_0", [c_out, c_in, k, k]),
                           g.weight(f"{name}_b_0", [c_out], 0.1)],
                  kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4)

    y = conv(x, "conv1", 3, 8, 3, 2, 1)
    y = op("BatchNormalization", [
        y, g.init("conv1/bn_scale_0", r.uniform(0.5, 1.5, 8).astype(np.float32)),
        g.init("conv1/bn_bias_0", r.uniform(-0.5, 0.5, 8).astype(np.float32)),
        g.init("conv1/bn_mean_0", r.uniform(-0.5, 0.5, 8).astype(np.float32)),
        g.init("conv1/bn_var_0", r.uniform(0.5, 1.5, 8).astype(np.float32))], epsilon=1e-5)
    scale = op("Unsqueeze", [g.weight("conv1/bn_w_0", [8], 1.0)], axes=[1, 2])
    shift = op("Unsqueeze", [g.weight("conv1/bn_b_0", [8], 0.5)], axes=[1, 2])
    y = op("Relu", [op("Add", [op("Mul", [y, scale]), shift])])
    y = op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
    s = op("Relu", [conv(y, "fire2/squeeze1x1", 8, 4, 1)])
    e1 = op("Relu", [conv(s, "fire2/expand1x1", 4, 8, 1)])
    e3 = op("Relu", [conv(s, "fire2/expand3x3", 4, 8, 3, pad=1)])
    y = op("Concat", [e1, e3], axis=1)
    y = op("AveragePool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = op("Dropout", [y], outputs=2, ratio=0.5)[0]
    y = op("Reshape", [y, g.init("OC2_DUMMY_1", np.array([1, -1], np.int64))])
    y = op("Gemm", [y, g.weight("fc_w_0", [10, 16 * 3 * 3]), g.weight("fc_b_0", [10], 0.1)],
           transB=1)
    g.output(g.node("Softmax", [y], ["prob_1"], name=""))
    save("models/caffe2_opset9", g.model(9, "caffe2_opset9", ir_version=3),
         [rand(g.rng, [1, 3, 24, 24])])


def caffe2_classics():
    """Small models in the shape of the Model Zoo's Caffe2 classics at opset
    9 and IR version 3: an AlexNet-like stem with LRN, a GoogLeNet inception
    module, a ResNet-50 bottleneck joined by Sum, and a ShuffleNet unit with
    its channel shuffle (Reshape, Transpose, Reshape) and Sum."""
    def builder(seed, shape):
        g = Graph(seed)
        x = g.input("data_0", shape)

        def op(op_type, inputs, outputs=1, **attrs):
            outs = [g.name("r") for _ in range(outputs)]
            return g.node(op_type, inputs, outs, name="", **attrs)

        def conv(x, name, c_in, c_out, k, stride=1, pad=0, group=1):
            return op("Conv", [x, g.weight(f"{name}_w_0", [c_out, c_in // group, k, k]),
                               g.weight(f"{name}_b_0", [c_out], 0.1)],
                      kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, group=group)

        def bn(x, name, c):
            r = g.rng
            return op("BatchNormalization", [
                x, g.init(f"{name}_s_0", r.uniform(0.5, 1.5, c).astype(np.float32)),
                g.init(f"{name}_b_0", r.uniform(-0.5, 0.5, c).astype(np.float32)),
                g.init(f"{name}_rm_0", r.uniform(-0.5, 0.5, c).astype(np.float32)),
                g.init(f"{name}_riv_0", r.uniform(0.5, 1.5, c).astype(np.float32))],
                epsilon=1e-5)

        return g, x, op, conv, bn

    g, x, op, conv, bn = builder(20, [1, 3, 35, 35])
    y = op("Relu", [conv(x, "conv1", 3, 8, 11, 4, 2)])
    y = op("LRN", [y], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    y = op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2])
    y = op("Relu", [conv(y, "conv2", 8, 12, 3, pad=1, group=2)])
    y = op("LRN", [y], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    y = op("Dropout", [op("Reshape", [y, g.init("OC2_DUMMY_0", np.array([1, -1], np.int64))])],
           outputs=2, ratio=0.5)[0]
    y = op("Gemm", [y, g.weight("fc6_w_0", [10, 12 * 3 * 3]), g.weight("fc6_b_0", [10], 0.1)],
           transB=1)
    g.output(g.node("Softmax", [y], ["prob_1"], name=""))
    save("models/caffe2_alexnet_lrn", g.model(9, "caffe2_alexnet_lrn", ir_version=3),
         [rand(g.rng, [1, 3, 35, 35])])

    g, x, op, conv, bn = builder(21, [1, 8, 12, 12])
    b1 = op("Relu", [conv(x, "inception_3a/1x1", 8, 4, 1)])
    b2 = op("Relu", [conv(op("Relu", [conv(x, "inception_3a/3x3_reduce", 8, 4, 1)]),
                          "inception_3a/3x3", 4, 6, 3, pad=1)])
    b3 = op("Relu", [conv(op("Relu", [conv(x, "inception_3a/5x5_reduce", 8, 2, 1)]),
                          "inception_3a/5x5", 2, 3, 5, pad=2)])
    b4 = op("Relu", [conv(op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4),
                          "inception_3a/pool_proj", 8, 3, 1)])
    y = op("Concat", [b1, b2, b3, b4], axis=1)
    g.output(op("AveragePool", [y], kernel_shape=[3, 3], strides=[2, 2]))
    save("models/caffe2_inception_module", g.model(9, "caffe2_inception_module", ir_version=3),
         [rand(g.rng, [1, 8, 12, 12])])

    g, x, op, conv, bn = builder(22, [1, 8, 10, 10])
    h = op("Relu", [bn(conv(x, "res2a_branch2a", 8, 4, 1), "res2a_branch2a_bn", 4)])
    h = op("Relu", [bn(conv(h, "res2a_branch2b", 4, 4, 3, pad=1), "res2a_branch2b_bn", 4)])
    h = bn(conv(h, "res2a_branch2c", 4, 16, 1), "res2a_branch2c_bn", 16)
    s = bn(conv(x, "res2a_branch1", 8, 16, 1), "res2a_branch1_bn", 16)
    g.output(op("Relu", [op("Sum", [h, s])]))
    save("models/caffe2_resnet_bottleneck", g.model(9, "caffe2_resnet_bottleneck", ir_version=3),
         [rand(g.rng, [1, 8, 10, 10])])

    g, x, op, conv, bn = builder(23, [1, 12, 8, 8])
    h = op("Relu", [bn(conv(x, "gconv1", 12, 6, 1, group=3), "gconv1_bn", 6)])
    h = op("Reshape", [h, g.init("shuffle_in", np.array([1, 3, 2, 8, 8], np.int64))])
    h = op("Transpose", [h], perm=[0, 2, 1, 3, 4])
    h = op("Reshape", [h, g.init("shuffle_out", np.array([1, 6, 8, 8], np.int64))])
    h = bn(conv(h, "dwconv", 6, 6, 3, pad=1, group=6), "dwconv_bn", 6)
    h = bn(conv(h, "gconv2", 6, 12, 1, group=3), "gconv2_bn", 12)
    g.output(op("Relu", [op("Sum", [h, x])]))
    save("models/caffe2_shufflenet_unit", g.model(9, "caffe2_shufflenet_unit", ir_version=3),
         [rand(g.rng, [1, 12, 8, 8])])


def lstm_stack():
    """Two stacked LSTM layers (the second bidirectional), the last step to
    a linear classifier, as torch.onnx exports nn.LSTM."""
    g = Graph(4)
    seq, batch, feat, hid = 7, 2, 5, 6
    x = g.input("input", [seq, batch, feat])
    y = g.node("LSTM", [x] + recurrent_weights(g, 4, 1, hid, feat), ["l0_y", "l0_h", "l0_c"],
               name="/lstm/LSTM", hidden_size=hid)[0]
    y = g.node("Squeeze", [y, g.init("axis1", np.array([1], np.int64))])
    y = g.node("LSTM", [y] + recurrent_weights(g, 4, 2, hid, hid), ["l1_y", "l1_h"],
               name="/lstm/LSTM_1", hidden_size=hid, direction="bidirectional")[0]
    y = g.node("Transpose", [y], perm=[0, 2, 1, 3])
    y = g.node("Reshape", [y, g.init("shape", np.array([seq, batch, -1], np.int64))])
    last = g.node("Gather", [y, g.init("last", np.array(-1, np.int64))], axis=0)
    g.output(g.linear(last, "fc", 2 * hid, 3))
    save("models/lstm_stack", g.model(14, "lstm_stack"), [rand(g.rng, [seq, batch, feat])])


def errors():
    """A model with several nodes nnc rejects, for the every-node report."""
    g = Graph(5)
    x = g.input("x", [1, 4, 8, 8])
    y = g.node("Hardmax", [x], name="hardmax_node")
    z = g.node("Conv", [x, g.weight("w", [4, 4, 3, 3])], name="conv_wrap_pad", auto_pad="SAME_UPPER",
               kernel_shape=[3, 3])
    z = g.node("Pad", [z, g.init("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))],
               name="pad_wrap", mode="wrap")
    s = g.node("LSTM", [g.node("Reshape", [x, g.init("s", np.array([8, 4, 8], np.int64))])]
               + recurrent_weights(g, 4, 1, 3, 8), ["ly"], name="lstm_clip", hidden_size=3, clip=1.0)
    # Downstream of the unsupported Hardmax: a MaxPool with an unsupported
    # attribute value, found through the shapes the model annotates.
    y = g.node("MaxPool", [y], name="pool_after_hardmax", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
               storage_order=0, ceil_mode=1, strides=[2, 2], auto_pad="NOTSET", dilations=[1, 1])
    y = g.node("AveragePool", [y], name="avg_pool_dilated", kernel_shape=[2, 2],
               dilations=[2, 2])
    g.output(g.node("Relu", [y]))
    g.output(z)
    g.output(s)
    model = g.model(19, "errors")
    save("errors/unsupported_nodes", model, None)

    # A symbolic batch dim, which needs `--dim batch=N`.
    g = Graph(6)
    x = g.input("x", ["batch", 3, 4, 4])
    g.output(g.conv(x, "conv", 3, 2, 3, pad=1))
    save("errors/symbolic_batch", g.model(17, "symbolic_batch"), None)


def older_opset_errors():
    """An opset 6 model whose nodes use the legacy forms in ways nnc
    rejects (and one Clip it accepts). Some nodes are invalid ONNX (the
    checker rejects an attribute an op does not have yet, or a missing
    required one), so the model is built without shape inference or the
    checker."""
    g = Graph(12)
    x = g.input("x", [1, 4, 8, 8])
    g.node("Dropout", [x], name="dropout_training")
    g.node("BatchNormalization", [x] + [g.weight(f"bn.{p}", [4]) for p in "sbmv"],
           name="bn_batch_statistics", is_test=0)
    g.node("Add", [x, g.weight("c8", [8])], name="add_without_broadcast")
    g.node("Add", [x, g.weight("c48", [4, 8])], name="add_axis_mismatch", broadcast=1, axis=2)
    flat = g.node("Flatten", [x], name="flatten")
    g.node("Gemm", [flat, g.weight("w", [256, 3]), g.weight("c3", [3])], name="gemm_without_broadcast")
    g.node("MaxPool", [x], name="max_pool_ceil_mode", kernel_shape=[2, 2], ceil_mode=1)
    g.node("AveragePool", [x], name="avg_pool_count_include_pad", kernel_shape=[2, 2],
           count_include_pad=1)
    g.node("Pad", [x], name="pad_without_pads")
    g.node("Concat", [x, x], name="concat_without_axis")
    g.node("Clip", [x], name="clip_attributes", min=-1.0, max=1.0)
    for n in g.nodes:
        g.output(n.output[0])
    graph = helper.make_graph(g.nodes, "older_opsets", g.inputs, g.outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)])
    model.ir_version = 3
    save("errors/older_opsets", model, None)


def full_size(out_dir):
    """Full-size ResNet-18 and MobileNetV2 with torchvision's layouts and
    names, random weights, and ORT outputs; kept outside the repository."""
    global ROOT
    ROOT = out_dir

    g = Graph(10)
    x = g.input("input", [1, 3, 224, 224])
    y = g.relu(g.bn(g.conv(x, "conv1", 3, 64, 7, 2, 3, bias=False), "bn1", 64))
    y = g.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 64
    for layer, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for b in range(2):
            p = f"layer{layer}.{b}"
            s = stride if b == 0 else 1
            h = g.relu(g.bn(g.conv(y, f"{p}.conv1", c, width, 3, s, 1, bias=False), f"{p}.bn1", width))
            h = g.bn(g.conv(h, f"{p}.conv2", width, width, 3, 1, 1, bias=False), f"{p}.bn2", width)
            if s != 1 or c != width:
                y = g.bn(g.conv(y, f"{p}.downsample.0", c, width, 1, s, bias=False), f"{p}.downsample.1", width)
            y = g.relu(g.node("Add", [h, y]))
            c = width
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    g.output(g.linear(y, "fc", 512, 1000))
    save("resnet18", g.model(17, "resnet18"), [rand(g.rng, [1, 3, 224, 224])])

    g = Graph(11)
    x = g.input("input", [1, 3, 224, 224])

    def cbr(x, prefix, c_in, c_out, k, stride, group=1):
        return g.relu6(g.bn(g.conv(x, f"{prefix}.0", c_in, c_out, k, stride, k // 2, group, bias=False),
                            f"{prefix}.1", c_out))

    y = cbr(x, "features.0", 3, 32, 3, 2)
    c, i = 32, 1
    for t, width, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for k in range(n):
            stride = s if k == 0 else 1
            hidden = c * t
            p = f"features.{i}.conv"
            h, j = y, 0
            if t != 1:
                h, j = cbr(h, f"{p}.{j}", c, hidden, 1, 1), 1
            h = cbr(h, f"{p}.{j}", hidden, hidden, 3, stride, group=hidden)
            h = g.bn(g.conv(h, f"{p}.{j + 1}", hidden, width, 1, bias=False), f"{p}.{j + 2}", width)
            y = g.node("Add", [y, h]) if stride == 1 and c == width else h
            c, i = width, i + 1
    y = cbr(y, f"features.{i}", c, 1280, 1, 1)
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    y = g.node("Dropout", [y, g.init("ratio", np.array(0.2, np.float32))])
    g.output(g.linear(y, "classifier.1", 1280, 1000))
    save("mobilenet_v2", g.model(17, "mobilenet_v2"), [rand(g.rng, [1, 3, 224, 224])])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", metavar="DIR", help="write full-size ResNet-18 and MobileNetV2 to DIR")
    parser.add_argument("--only", metavar="PREFIX", nargs="+", default=[],
                        help="remake only the fixtures whose directory starts with a prefix")
    args = parser.parse_args()
    if args.full:
        full_size(args.full)
        return
    ONLY.extend(args.only)
    # Every fixture is remade (or every selected one); the README stays, and
    # so does `diff_sample/`, which scripts/ort_diff.py writes.
    for entry in os.listdir(ROOT) if os.path.isdir(ROOT) and not ONLY else []:
        if os.path.isdir(os.path.join(ROOT, entry)) and entry != "diff_sample":
            shutil.rmtree(os.path.join(ROOT, entry))
    operators()
    older_opsets()
    reductions()
    resnet_small()
    mobilenet_small()
    vgg_small()
    caffe2_opset9()
    caffe2_classics()
    lstm_stack()
    errors()
    older_opset_errors()
    diff_fixtures()
    print(f"wrote fixtures to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    main()
