#!/usr/bin/env python3
"""Differential testing of nnc against ONNX Runtime (run by hand, not by CI).

    pip install onnx onnxruntime numpy
    nice -n 19 cargo build --release
    nice -n 19 python3 scripts/ort_diff.py --count 10000 --seed 1 --jobs 2

Generates random valid ONNX graphs of 1 to 6 chained nodes over every op nnc
imports, with random shapes, attributes, opsets (7 up to the newest ONNX
Runtime runs), broadcasting, windows, recurrent directions, reductions and
so on. Each graph runs in ONNX Runtime and in nnc three times: the reference
interpreter (`nnc run --interp`) and the compiled code at 1 and 2 threads.
Outputs must agree within `|nnc - ort| <= tol * (1 + |ort| + 0.01 * max|ort|)`
(tol 1e-4; graphs with ops that amplify rounding get a wider tolerance).

A graph nnc refuses with a clean error (exit code 1) is counted as rejected,
by reason; a crash or a panic is a bug, as is a mismatch. A failing graph
is shrunk (nodes dropped, input dims cut, optional attributes removed) and
saved under `--out` with its inputs, ORT's outputs and the reason.

`--emit-fixtures N` instead writes N seeded graphs that nnc runs and matches
to `tests/cases/onnx/diff_sample/` (model, inputs, ORT's outputs), which
tests/tests/onnx.rs checks with every other ONNX fixture.
"""

import argparse
import collections
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ort.set_default_logger_severity(4)

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SAMPLE_DIR = os.path.join(REPO, "tests", "cases", "onnx", "diff_sample")
MIN_OPSET, MAX_OPSET = 7, 23  # ORT 1.23 runs opsets up to 23
TOL = 1e-4


class Skip(Exception):
    """The op cannot follow the chosen value (wrong rank, too large...)."""


# ---------------------------------------------------------------------------
# Graph building


class Builder:
    def __init__(self, rng, opset):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits, self.inputs, self.feeds = [], [], [], {}
        self.shapes = {}  # value name -> shape
        self.count = 0
        self.amplify = 1.0  # tolerance factor for ops that amplify rounding
        self.ops = []  # the ops the graph is meant to test
        self.values = []  # the values each op produced, in order
        # Shapes ONNX's inference does not give (function ops such as
        # GroupNormalization, a Reshape to a computed shape), declared as
        # value_info so that it carries on past them.
        self.declared = {}

    def fresh(self, base):
        self.count += 1
        return f"{base}{self.count}"

    def input(self, shape, low=-1.0, high=1.0):
        name = self.fresh("x")
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.feeds[name] = self.rng.uniform(low, high, shape).astype(np.float32)
        self.shapes[name] = list(shape)
        return name

    def const(self, array, base="w"):
        name = self.fresh(base)
        array = np.asarray(array)
        self.inits.append(numpy_helper.from_array(array, name))
        self.shapes[name] = list(array.shape)
        return name

    def weight(self, shape, low=-1.0, high=1.0):
        return self.const(self.rng.uniform(low, high, shape).astype(np.float32))

    def ints(self, values):
        return self.const(np.array(values, np.int64), "i")

    def node(self, op, inputs, outputs=1, **attrs):
        name = self.fresh(op.lower())
        outs = [f"{name}_y{i}" if i >= 0 else "" for i in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        self.infer()
        return outs[0] if len(outs) == 1 else outs

    def model(self, outputs):
        produced = {o for n in self.nodes for o in n.output}
        declared = [helper.make_tensor_value_info(v, TensorProto.FLOAT, shape)
                    for v, shape in self.declared.items() if v in produced]
        graph = helper.make_graph(self.nodes, "diff", self.inputs,
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                                  self.inits, value_info=declared)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8 if self.opset <= 18 else 9
        return with_output_types(model) if outputs else model

    def infer(self):
        """Shapes of every value so far, by ONNX shape inference."""
        model = self.model([])
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        for v in inferred.graph.value_info:
            dims = v.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims) and v.type.tensor_type.HasField("shape"):
                self.shapes[v.name] = [d.dim_value for d in dims]

    def declare(self, value, shape):
        """`value` has `shape` (which inference cannot tell)."""
        self.declared[value] = list(shape)
        self.infer()
        self.shapes[value] = list(shape)
        return value

    def shape(self, value):
        if value not in self.shapes:
            raise Skip("unknown shape")
        return self.shapes[value]

    def reshape(self, x, shape):
        return self.node("Reshape", [x, self.ints(shape)])

    def as_rank(self, x, rank):
        """`x` reshaped to `rank` dims (small ones first), if it is not."""
        shape = self.shape(x)
        if len(shape) == rank:
            return x
        total = int(np.prod(shape))
        dims = factor(self.rng, total, rank)
        return self.reshape(x, dims)


def with_output_types(model):
    """The model with its outputs' types from shape inference (the checker
    wants them)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)
             if v.type.tensor_type.HasField("shape")}
    for out in model.graph.output:
        if out.name in types:
            out.CopyFrom(types[out.name])
    return model


def factor(rng, total, rank):
    """`rank` dims whose product is `total`, the larger ones last."""
    dims = []
    for _ in range(rank - 1):
        divisors = [d for d in range(1, min(total, 6) + 1) if total % d == 0]
        d = int(rng.choice(divisors))
        dims.append(d)
        total //= d
    return dims + [total]


def choice(rng, items):
    return items[int(rng.integers(len(items)))]


def broadcastable(rng, shape):
    """A shape that broadcasts with `shape` (dims dropped from the front or
    set to 1), or one that `shape` broadcasts to (a leading dim added)."""
    r = rng.random()
    if r < 0.15:
        return []
    if r < 0.3 and len(shape) < 4:
        return [int(rng.integers(1, 4))] + list(shape)
    keep = int(rng.integers(0, len(shape) + 1))
    out = list(shape[len(shape) - keep:])
    return [1 if rng.random() < 0.3 else d for d in out]


# ---------------------------------------------------------------------------
# Op generators: each takes the builder and a value and returns a new value
# (raising Skip when the op does not fit).


def guard_positive(b, x):
    """`|x| + 0.5`, for ops defined on positive numbers."""
    return b.node("Add", [b.node("Abs", [x]), b.const(np.array(0.5, np.float32))])


def guard_bounded(b, x, bound):
    """`bound * tanh(x)`, for ops that overflow on large inputs."""
    return b.node("Mul", [b.node("Tanh", [x]), b.const(np.array(bound, np.float32))])


def unary(op, since=1, **attrs):
    def gen(b, x):
        if b.opset < since:
            raise Skip("opset")
        if op in ("Exp", "Softplus", "Mish"):
            x = guard_bounded(b, x, 4.0)
        if op in ("Log", "Sqrt", "Reciprocal"):
            x = guard_positive(b, x)
        chosen = {k: v(b.rng) for k, v in attrs.items() if b.rng.random() < 0.7}
        return b.node(op, [x], **chosen)
    return gen


def gen_gelu(b, x):
    if b.opset < 20:
        raise Skip("opset")
    attrs = {"approximate": choice(b.rng, ["none", "tanh"])} if b.rng.random() < 0.7 else {}
    return b.node("Gelu", [x], **attrs)


def broadcasts(a, c):
    for p, q in zip(reversed(a), reversed(c)):
        if p != q and p != 1 and q != 1:
            return False
    return True


def binary(op):
    def gen(b, x):
        shape = b.shape(x)
        other = broadcastable(b.rng, shape)
        earlier = [v for v in b.values if v != x and v in b.shapes and broadcasts(b.shapes[v], shape)]
        if earlier and b.rng.random() < 0.25:
            y = choice(b.rng, earlier)
        elif b.rng.random() < 0.3:
            y = b.input(other)
        else:
            y = b.weight(other)
        if op == "Div":
            y = guard_positive(b, y) if b.rng.random() < 0.5 else b.node("Neg", [guard_positive(b, y)])
        if b.opset < 7:
            raise Skip("opset")
        a, c = (x, y) if b.rng.random() < 0.7 else (y, x)
        if op == "Div" and a == y:
            a, c = x, y
        return b.node(op, [a, c])
    return gen


def gen_pow(b, x):
    base = guard_positive(b, x)
    shape = b.shape(x)
    r = b.rng.random()
    if r < 0.4:
        e = b.const(np.array(choice(b.rng, [2.0, 3.0, 0.5, -1.0, -0.5, 1.5, 1.0, 0.0]), np.float32))
    else:
        e = b.weight(broadcastable(b.rng, shape), -2.0, 2.0)
    b.amplify = max(b.amplify, 3.0)
    return b.node("Pow", [base, e])


def gen_prelu(b, x):
    shape = b.shape(x)
    if not shape:
        # ORT gives the result the slope's shape ([1] for [1]), the spec x's.
        return b.node("PRelu", [x, b.weight([])])
    r = b.rng.random()
    if r < 0.3:
        slope = []
    elif r < 0.5:
        slope = [1]
    elif len(shape) >= 2 and r < 0.85:
        slope = [shape[1]] + [1] * (len(shape) - 2)
    else:
        # Unidirectional: the slope has at most x's rank (ORT would give
        # the result the slope's extra dims).
        slope = broadcastable(b.rng, shape)[-len(shape):]
    return b.node("PRelu", [x, b.weight(slope)])


def gen_variadic(op):
    def gen(b, x):
        if b.opset < 8:
            raise Skip("opset")  # before 8 no broadcasting
        shape = b.shape(x)
        ins = [x]
        for _ in range(int(b.rng.integers(0, 3))):
            other = broadcastable(b.rng, shape)
            ins.append(b.weight(other) if b.rng.random() < 0.6 else b.input(other))
        b.rng.shuffle(ins)
        return b.node(op, ins)
    return gen


def gen_clip(b, x):
    lo = float(np.float32(b.rng.uniform(-1.0, 0.5)))
    hi = float(np.float32(b.rng.uniform(-0.5, 1.0)))
    if b.rng.random() < 0.1:
        lo, hi = 0.0, 6.0
    if b.opset < 11:
        lo, hi = min(lo, hi), max(lo, hi)  # ORT rejects min > max here
        attrs = {}
        if b.rng.random() < 0.8:
            attrs["min"] = lo
        if b.rng.random() < 0.8:
            attrs["max"] = hi
        return b.node("Clip", [x], **attrs)
    ins = [x]
    r = b.rng.random()
    if r < 0.8:
        ins.append(b.const(np.array(lo, np.float32)) if b.rng.random() < 0.85 else "")
    if r < 0.4 or (r < 0.8 and b.rng.random() < 0.5):
        ins += [b.const(np.array(hi, np.float32))] if len(ins) == 2 else ["", b.const(np.array(hi, np.float32))]
    return b.node("Clip", ins)


def window_attrs(b, spatial, kernel, allow_dilation=True, stride_max=3):
    attrs = {"kernel_shape": kernel}
    if b.rng.random() < 0.6:
        attrs["strides"] = [int(b.rng.integers(1, stride_max + 1)) for _ in kernel]
    if allow_dilation and b.rng.random() < 0.4:
        attrs["dilations"] = [int(b.rng.integers(1, 3)) for _ in kernel]
    r = b.rng.random()
    if r < 0.2:
        attrs["auto_pad"] = choice(b.rng, ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
    elif r < 0.7:
        attrs["pads"] = [int(b.rng.integers(0, k)) for k in kernel] + [int(b.rng.integers(0, k)) for k in kernel]
    if attrs.get("auto_pad", "").startswith("SAME"):
        attrs.pop("dilations", None)  # ORT: no dilations with SAME_*
        # A stride larger than the kernel makes SAME's total padding
        # negative, which ORT and ONNX's reference treat differently.
        if any(st > k for st, k in zip(attrs.get("strides", [1] * len(kernel)), kernel)):
            raise Skip("SAME with a stride above the kernel")
    # The window (with dilation) must fit the padded input.
    dil = attrs.get("dilations", [1] * len(kernel))
    pads = attrs.get("pads", [0] * 2 * len(kernel))
    for i, k in enumerate(kernel):
        if (k - 1) * dil[i] + 1 > spatial[i] + pads[i] + pads[i + len(kernel)]:
            raise Skip("window larger than input")
    return attrs


def spatial_input(b, x, ranks=(3, 4)):
    shape = b.shape(x)
    if len(shape) not in ranks:
        x = b.as_rank(x, choice(b.rng, list(ranks)))
        shape = b.shape(x)
    if int(np.prod(shape)) > 8192:
        raise Skip("too large")
    return x, shape


def gen_conv(b, x):
    x, shape = spatial_input(b, x)
    c = shape[1]
    groups = [g for g in range(1, c + 1) if c % g == 0]
    group = choice(b.rng, groups) if b.rng.random() < 0.5 else 1
    out = group * int(b.rng.integers(1, 4 if b.rng.random() < 0.8 else max(2, 33 // group)))
    if group == c and b.rng.random() < 0.5:
        out = c  # depthwise
    kernel = [int(b.rng.integers(1, 4)) for _ in shape[2:]]
    attrs = window_attrs(b, shape[2:], kernel)
    if b.rng.random() < 0.7:
        attrs["group"] = group
    elif group != 1:
        group = 1
        out = int(b.rng.integers(1, 5))
    ins = [x, b.weight([out, c // group] + kernel, -0.5, 0.5)]
    if b.rng.random() < 0.6:
        ins.append(b.weight([out], -0.2, 0.2))
    return b.node("Conv", ins, **attrs)


def gen_conv_transpose(b, x):
    x, shape = spatial_input(b, x)
    c = shape[1]
    groups = [g for g in range(1, c + 1) if c % g == 0]
    group = choice(b.rng, groups) if b.rng.random() < 0.4 else 1
    out = group * int(b.rng.integers(1, 3))
    kernel = [int(b.rng.integers(1, 4)) for _ in shape[2:]]
    attrs = {"kernel_shape": kernel}
    strides = [int(b.rng.integers(1, 3)) for _ in kernel]
    dil = [int(b.rng.integers(1, 3)) for _ in kernel] if b.rng.random() < 0.3 else [1] * len(kernel)
    if b.rng.random() < 0.7 or any(s > 1 for s in strides):
        attrs["strides"] = strides
    else:
        strides = [1] * len(kernel)
    if any(d > 1 for d in dil):
        attrs["dilations"] = dil
    r = b.rng.random()
    if r < 0.15:
        attrs["auto_pad"] = choice(b.rng, ["SAME_UPPER", "SAME_LOWER", "VALID"])
    elif r < 0.6:
        attrs["pads"] = [int(b.rng.integers(0, k)) for k in kernel] * 2
        if b.rng.random() < 0.5:
            attrs["pads"] = [int(b.rng.integers(0, k)) for k in kernel] + [int(b.rng.integers(0, k)) for k in kernel]
    # ONNX's shape inference and ORT disagree on output_padding with auto_pad.
    if b.rng.random() < 0.3 and "auto_pad" not in attrs:
        # ONNX allows output_padding below the stride or the dilation; ORT
        # computes wrong values when it is not below the stride.
        attrs["output_padding"] = [int(b.rng.integers(0, s)) for s in strides]
    if group != 1:
        attrs["group"] = group
    ins = [x, b.weight([c, out // group] + kernel, -0.5, 0.5)]
    if b.rng.random() < 0.5:
        ins.append(b.weight([out], -0.2, 0.2))
    y = b.node("ConvTranspose", ins, **attrs)
    if any(d <= 0 for d in b.shape(y)[2:]):
        raise Skip("empty output")
    return y


def gen_pool(op):
    def gen(b, x):
        x, shape = spatial_input(b, x)
        kernel = [int(b.rng.integers(1, 4)) for _ in shape[2:]]
        attrs = window_attrs(b, shape[2:], kernel, allow_dilation=(op == "MaxPool" and b.opset >= 10))
        if op == "AveragePool" and b.opset >= 7 and b.rng.random() < 0.5:
            attrs["count_include_pad"] = int(b.rng.integers(0, 2))
        if b.opset >= 10 and b.rng.random() < 0.4:
            attrs["ceil_mode"] = 1
            # A last window that starts past the input (and its left
            # padding) is ignored by the spec from opset 19, but ORT keeps
            # it and averages values from outside the window: ambiguous.
            if attrs.get("auto_pad", "NOTSET") == "NOTSET":
                n = len(kernel)
                pads = attrs.get("pads", [0] * 2 * n)
                strides = attrs.get("strides", [1] * n)
                dil = attrs.get("dilations", [1] * n)
                for i in range(n):
                    span = (kernel[i] - 1) * dil[i] + 1
                    out = -(-(shape[2 + i] + pads[i] + pads[i + n] - span) // strides[i]) + 1
                    if (out - 1) * strides[i] >= shape[2 + i] + pads[i]:
                        raise Skip("ceil_mode window past the input")
                    # A last window that reaches past the padding: with
                    # count_include_pad, ORT (MLAS) divides by the whole
                    # kernel, its reference code and PyTorch by the window
                    # clipped to the padded input, onnx.reference by neither.
                    if (op == "AveragePool" and attrs.get("count_include_pad")
                            and (out - 1) * strides[i] + span > shape[2 + i] + pads[i] + pads[i + n]):
                        raise Skip("ceil_mode window past the padding")
        if op == "AveragePool" and b.opset >= 19 and b.rng.random() < 0.1:
            attrs["dilations"] = [2] * len(kernel)
        y = b.node(op, [x], **attrs)
        if any(d <= 0 for d in b.shape(y)):
            raise Skip("empty output")
        return y
    return gen


def gen_global(op):
    def gen(b, x):
        x, _ = spatial_input(b, x, (3, 4, 5) if op == "GlobalMaxPool" else (3, 4))
        return b.node(op, [x])
    return gen


def gen_batch_norm(b, x):
    shape = b.shape(x)
    if len(shape) < 2:
        x = b.as_rank(x, 4)
        shape = b.shape(x)
    c = shape[1]
    ins = [x, b.weight([c], 0.5, 1.5), b.weight([c], -0.5, 0.5), b.weight([c], -0.5, 0.5), b.weight([c], 0.5, 2.0)]
    attrs = {"epsilon": float(choice(b.rng, [1e-5, 1e-3, 0.1]))} if b.rng.random() < 0.5 else {}
    return b.node("BatchNormalization", ins, **attrs)


def noisy(b, x):
    """`x` plus fixed noise, so that no normalised row is constant (which
    would make a norm divide rounding noise by sqrt(eps))."""
    b.amplify = max(b.amplify, 3.0)
    return b.node("Add", [x, b.weight(b.shape(x), -1.0, 1.0)])


def gen_instance_norm(b, x):
    x, shape = spatial_input(b, x, (3, 4))
    x = noisy(b, x)
    c = shape[1]
    attrs = {"epsilon": float(choice(b.rng, [1e-5, 1e-3]))} if b.rng.random() < 0.5 else {}
    return b.node("InstanceNormalization", [x, b.weight([c], 0.5, 1.5), b.weight([c], -0.5, 0.5)], **attrs)


def gen_group_norm(b, x):
    if b.opset < 18:
        raise Skip("opset")
    x, shape = spatial_input(b, x, (3, 4))
    x = noisy(b, x)
    c = shape[1]
    groups = choice(b.rng, [g for g in range(1, c + 1) if c % g == 0])
    n = groups if b.opset < 21 else c
    attrs = {"num_groups": groups}
    if b.rng.random() < 0.5:
        attrs["epsilon"] = float(choice(b.rng, [1e-5, 1e-3]))
    y = b.node("GroupNormalization", [x, b.weight([n], 0.5, 1.5), b.weight([n], -0.5, 0.5)], **attrs)
    return b.declare(y, shape)


def gen_layer_norm(b, x):
    if b.opset < 17:
        raise Skip("opset")
    x = noisy(b, x)
    shape = b.shape(x)
    axis = int(b.rng.integers(-len(shape), len(shape))) if shape else 0
    norm = shape[axis:] if axis >= 0 else shape[len(shape) + axis:]
    if int(np.prod(norm)) < 2:
        raise Skip("ORT normalises at least 2 values")
    attrs = {"axis": axis} if b.rng.random() < 0.8 or axis != -1 else {}
    if b.rng.random() < 0.5:
        attrs["epsilon"] = float(choice(b.rng, [1e-5, 1e-3]))
    scale_shape = norm  # ORT rejects most broadcast scales
    ins = [x, b.weight(scale_shape, 0.5, 1.5)]
    if b.rng.random() < 0.6:
        ins.append(b.weight(norm, -0.5, 0.5))
    return b.node("LayerNormalization", ins, **attrs)


def gen_lrn(b, x):
    x, shape = spatial_input(b, x, (4,))
    attrs = {"size": int(choice(b.rng, [1, 3, 5]))}  # ORT takes odd sizes only
    if b.rng.random() < 0.5:
        attrs["alpha"] = float(b.rng.uniform(1e-4, 1e-2))
    if b.rng.random() < 0.5:
        attrs["beta"] = float(b.rng.uniform(0.5, 1.0))
    if b.rng.random() < 0.5:
        attrs["bias"] = float(b.rng.uniform(1.0, 2.0))
    return b.node("LRN", [x], **attrs)


def gen_softmax(op):
    def gen(b, x):
        shape = b.shape(x)
        if not shape:
            raise Skip("scalar")
        attrs = {}
        if b.rng.random() < 0.8 or (b.opset < 13 and len(shape) < 2):
            attrs["axis"] = int(b.rng.integers(-len(shape), len(shape)))
        return b.node(op, [x], **attrs)
    return gen


def gen_gemm(b, x):
    x = b.as_rank(x, 2)
    m, k = b.shape(x)
    attrs = {}
    if b.rng.random() < 0.3:
        x = b.node("Transpose", [x], perm=[1, 0])
        attrs["transA"] = 1
    n = int(b.rng.integers(1, 7))
    trans_b = b.rng.random() < 0.5
    if trans_b:
        attrs["transB"] = 1
    bshape = [n, k] if trans_b else [k, n]
    bval = b.weight(bshape, -0.5, 0.5) if b.rng.random() < 0.7 else b.input(bshape)
    ins = [x, bval]
    if b.rng.random() < 0.7 or b.opset < 11:
        cshape = choice(b.rng, [[n], [1, n], [m, n], [], [m, 1]])
        ins.append(b.weight(cshape))
    if b.rng.random() < 0.3:
        attrs["alpha"] = float(b.rng.uniform(0.5, 2.0))
    if b.rng.random() < 0.3:
        attrs["beta"] = float(b.rng.uniform(0.5, 2.0))
    return b.node("Gemm", ins, **attrs)


def gen_matmul(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    k = shape[-1]
    n = int(b.rng.integers(1, 7))
    r = b.rng.random()
    if r < 0.15:
        other = [k]
    elif r < 0.7 or len(shape) < 2:
        other = [k, n]
    else:
        other = [d if b.rng.random() < 0.7 else 1 for d in shape[:-2]] + [k, n]
    y = b.weight(other, -0.5, 0.5) if b.rng.random() < 0.6 else b.input(other)
    if b.rng.random() < 0.3 and len(shape) >= 1:
        # The input as right-hand side.
        left = [int(b.rng.integers(1, 5)), shape[0]] if len(shape) == 1 else [int(b.rng.integers(1, 5)), shape[-2]]
        if len(shape) == 1:
            return b.node("MatMul", [b.weight(left, -0.5, 0.5), x])
    return b.node("MatMul", [x, y])


def gen_concat(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    axis = int(b.rng.integers(-len(shape), len(shape)))
    other = list(shape)
    other[axis] = int(b.rng.integers(1, 4))
    ins = [x, b.weight(other) if b.rng.random() < 0.5 else b.input(other)]
    if b.rng.random() < 0.3:
        ins.append(x)
    b.rng.shuffle(ins)
    return b.node("Concat", ins, axis=axis)


def gen_flatten(b, x):
    shape = b.shape(x)
    attrs = {}
    if b.rng.random() < 0.8:
        lo = -len(shape) if b.opset >= 11 else 0
        attrs["axis"] = int(b.rng.integers(lo, len(shape) + 1))
    return b.node("Flatten", [x], **attrs)


def gen_reshape(b, x):
    shape = b.shape(x)
    total = int(np.prod(shape))
    dims = factor(b.rng, total, int(b.rng.integers(1, 5)))
    b.rng.shuffle(dims)
    if b.rng.random() < 0.4:
        dims[int(b.rng.integers(len(dims)))] = -1
    if b.rng.random() < 0.3 and shape and dims and len(dims) <= len(shape):
        i = int(b.rng.integers(len(dims)))
        if dims[i] == shape[i] and -1 in dims and dims.index(-1) != i or dims[i] == shape[i]:
            dims[i] = 0
    return b.reshape(x, dims)


def gen_squeeze(b, x):
    shape = b.shape(x)
    ones = [i for i, d in enumerate(shape) if d == 1]
    if b.rng.random() < 0.5 or not ones:
        # Unsqueeze.
        if len(shape) >= 5:
            raise Skip("rank")
        n = len(shape) + 1
        axes = sorted(set(int(v) for v in b.rng.integers(0, n, int(b.rng.integers(1, 3)))))
        n = len(shape) + len(axes)
        axes = [a - n if b.rng.random() < 0.3 else a for a in axes]
        if b.opset >= 13:
            return b.node("Unsqueeze", [x, b.ints(axes)])
        if b.opset < 11:
            axes = [a % n for a in axes]
        return b.node("Unsqueeze", [x], axes=axes)
    axes = [a for a in ones if b.rng.random() < 0.7] or ones[:1]
    axes = [a - len(shape) if b.rng.random() < 0.3 and b.opset >= 11 else a for a in axes]
    if b.rng.random() < 0.2:
        return b.node("Squeeze", [x])
    if b.opset >= 13:
        return b.node("Squeeze", [x, b.ints(axes)])
    return b.node("Squeeze", [x], axes=axes)


def gen_transpose(b, x):
    shape = b.shape(x)
    perm = list(b.rng.permutation(len(shape)))
    if b.rng.random() < 0.2:
        return b.node("Transpose", [x])
    return b.node("Transpose", [x], perm=[int(p) for p in perm])


def gen_slice(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    axes = [a for a in range(len(shape)) if b.rng.random() < 0.6] or [0]
    starts, ends, steps = [], [], []
    for a in axes:
        d = shape[a]
        step = choice(b.rng, [1, 1, 1, 2, -1, -2]) if b.opset >= 10 else 1
        if step > 0:
            s = int(b.rng.integers(-d, d))
            e = int(b.rng.integers(-d, d + 3))
            if (s % d if s < 0 else s) >= (e + d if e < 0 else min(e, d)):
                s, e = 0, d
            if b.rng.random() < 0.1:
                e = 2**62
        else:
            s = int(b.rng.integers(0, d))
            e = int(b.rng.integers(-d - 2, s)) if b.rng.random() < 0.7 else -(2**62)
            if e >= 0 and e >= s:
                e = -d - 1
            if -d <= e < 0 and e + d >= s:
                e = -d - 1
        starts.append(s)
        ends.append(e)
        steps.append(step)
    neg_axes = [a - len(shape) if b.rng.random() < 0.3 else a for a in axes]
    if b.opset < 10:
        return b.node("Slice", [x], starts=starts, ends=ends, axes=axes)
    ins = [x, b.ints(starts), b.ints(ends)]
    if b.rng.random() < 0.8 or any(s != 1 for s in steps):
        ins.append(b.ints(neg_axes if b.opset >= 11 else axes))
        if b.rng.random() < 0.5 or any(s != 1 for s in steps):
            ins.append(b.ints(steps))
    y = b.node("Slice", ins)
    if 0 in b.shape(y):
        raise Skip("empty")
    return y


def gen_split(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    axis = int(b.rng.integers(-len(shape), len(shape))) if b.opset >= 11 else int(b.rng.integers(0, len(shape)))
    d = shape[axis]
    r = b.rng.random()
    if r < 0.4 and d >= 2:
        cut = int(b.rng.integers(1, d))
        parts = [cut, d - cut]
        if b.opset >= 13:
            outs = b.node("Split", [x, b.ints(parts)], outputs=2, axis=axis)
        else:
            outs = b.node("Split", [x], outputs=2, axis=axis, split=parts)
    elif r < 0.6 and b.opset >= 18 and d >= 2:
        n = int(b.rng.integers(2, d + 1))
        if math.ceil(d / n) * (n - 1) >= d:
            raise Skip("split")
        outs = b.node("Split", [x], outputs=n, axis=axis, num_outputs=n)
    else:
        n = choice(b.rng, [k for k in range(1, d + 1) if d % k == 0])
        if b.opset >= 18:
            raise Skip("num_outputs required")
        outs = b.node("Split", [x], outputs=n, axis=axis)
    outs = outs if isinstance(outs, list) else [outs]
    return choice(b.rng, outs)


def gen_gather(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    axis = int(b.rng.integers(-len(shape), len(shape)))
    d = shape[axis]
    if b.rng.random() < 0.4:
        idx = np.array(int(b.rng.integers(-d, d)), np.int64)
    else:
        idx = b.rng.integers(-d, d, int(b.rng.integers(1, 5))).astype(np.int64)
    return b.node("Gather", [x, b.const(idx, "i")], axis=axis)


def gen_tile(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("ORT tiles tensors of rank 1 or more")
    reps = [int(b.rng.integers(1, 3)) for _ in shape]
    if int(np.prod(shape)) * int(np.prod(reps)) > 4096:
        raise Skip("too large")
    return b.node("Tile", [x, b.ints(reps)])


def gen_expand(b, x):
    if b.opset < 8:
        raise Skip("opset")
    shape = b.shape(x)
    target = [d if d != 1 or b.rng.random() < 0.5 else int(b.rng.integers(2, 4)) for d in shape]
    target = [1 if d != 1 and b.rng.random() < 0.2 else d for d in target]
    if b.rng.random() < 0.3 and len(shape) < 4:
        target = [int(b.rng.integers(1, 3))] + target
    return b.node("Expand", [x, b.ints(target)])


def gen_pad(b, x):
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    mode = choice(b.rng, ["constant", "reflect", "edge"])
    r = len(shape)
    pads = []
    for side in range(2):
        for d in shape:
            hi = d - 1 if mode == "reflect" else 3
            lo = -(d - 1) if b.rng.random() < 0.2 else 0
            pads.append(int(b.rng.integers(lo, hi + 1)) if hi >= lo else 0)
    if mode != "constant":
        pads = [max(p, 0) for p in pads]
    if mode == "edge" and b.opset < 13:
        pass
    value = float(b.rng.uniform(-1, 1)) if mode == "constant" and b.rng.random() < 0.5 else None
    attrs = {"mode": mode} if mode != "constant" or b.rng.random() < 0.5 else {}
    if b.opset < 11:
        attrs["pads"] = pads
        if value is not None:
            attrs["value"] = value
        y = b.node("Pad", [x], **attrs)
    else:
        ins = [x, b.ints(pads)]
        if value is not None:
            ins.append(b.const(np.array(value, np.float32)))
        if b.opset >= 18 and b.rng.random() < 0.3:
            axes = [a for a in range(r) if b.rng.random() < 0.6] or [0]
            p = [pads[a] for a in axes] + [pads[a + r] for a in axes]
            ins = [x, b.ints(p), ins[2] if len(ins) > 2 else "", b.ints(axes)]
        y = b.node("Pad", ins, **attrs)
    if 0 in b.shape(y):
        raise Skip("empty")
    return y


def gen_resize(b, x):
    x, shape = spatial_input(b, x, (4,))
    mode = choice(b.rng, ["nearest", "linear"])
    if b.opset < 10:
        if b.opset < 7:
            raise Skip("opset")
        scales = [1.0, 1.0] + [float(choice(b.rng, [1.0, 2.0, 3.0])) for _ in range(2)]
        if b.opset < 9:
            return b.node("Upsample", [x], mode=mode, scales=scales)
        return b.node("Upsample", [x, b.const(np.array(scales, np.float32))], mode=mode)
    if b.opset == 10:
        scales = [1.0, 1.0] + [float(choice(b.rng, [0.5, 1.0, 2.0, 3.0, 1.5])) for _ in range(2)]
        if scales[2] < 1 and scales[3] > 1 or scales[2] > 1 and scales[3] < 1:
            raise Skip("grows and shrinks")
        y = b.node("Resize", [x, b.const(np.array(scales, np.float32))], mode=mode)
        if 0 in b.shape(y):
            raise Skip("empty")
        return y
    attrs = {"mode": mode}
    ctm = choice(b.rng, ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"]
                 if b.opset >= 19 else ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])
    if b.rng.random() < 0.8:
        attrs["coordinate_transformation_mode"] = ctm
    if mode == "nearest" and b.rng.random() < 0.6:
        attrs["nearest_mode"] = choice(b.rng, ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
    roi = "" if b.opset >= 13 else b.const(np.array([], np.float32))
    if b.rng.random() < 0.5:
        scales = [1.0, 1.0] + [float(choice(b.rng, [0.5, 1.0, 2.0, 1.5, 3.0, 0.75])) for _ in range(2)]
        ins = [x, roi, b.const(np.array(scales, np.float32))]
    else:
        sizes = shape[:2] + [int(b.rng.integers(1, 2 * d + 2)) for d in shape[2:]]
        ins = [x, roi, b.const(np.array([], np.float32)) if b.opset < 13 or b.rng.random() < 0.5 else "",
               b.ints(sizes)]
    y = b.node("Resize", ins, **attrs)
    if 0 in b.shape(y) or int(np.prod(b.shape(y))) > 8192:
        raise Skip("size")
    return y


def gen_reduce(op):
    def gen(b, x):
        shape = b.shape(x)
        if not shape:
            raise Skip("scalar")
        axes = [a for a in range(len(shape)) if b.rng.random() < 0.5]
        axes = [a - len(shape) if b.rng.random() < 0.3 else a for a in axes]
        attrs = {}
        if b.rng.random() < 0.6:
            attrs["keepdims"] = int(b.rng.integers(0, 2))
        input_axes = b.opset >= (13 if op == "ReduceSum" else 18)
        ins = [x]
        if axes or b.rng.random() < 0.3:
            if input_axes:
                ins.append(b.ints(axes))
            elif axes:
                attrs["axes"] = axes
        if input_axes and b.rng.random() < 0.15:
            attrs["noop_with_empty_axes"] = int(b.rng.integers(0, 2))
        if input_axes and len(ins) == 2 and not axes and attrs.get("noop_with_empty_axes"):
            pass
        return b.node(op, ins, **attrs)
    return gen


def gen_dropout(b, x):
    if b.opset < 12:
        attrs = {"ratio": 0.3} if b.rng.random() < 0.5 else {}
        return b.node("Dropout", [x], **attrs)
    ins = [x]
    if b.rng.random() < 0.5:
        ins.append(b.const(np.array(0.2, np.float32)))
    return b.node("Dropout", ins)


def gen_cast(b, x):
    return b.node("Cast", [x], to=TensorProto.FLOAT)


def gen_shape_reshape(b, x):
    """A reshape whose target is computed from Shape (folded by nnc)."""
    shape = b.shape(x)
    if len(shape) < 2:
        raise Skip("rank")
    s = b.node("Shape", [x])
    first = b.node("Gather", [s, b.const(np.array([0], np.int64), "i")], axis=0)
    target = b.node("Concat", [first, b.ints([-1])], axis=0)
    y = b.node("Reshape", [x, target])
    return b.declare(y, [shape[0], int(np.prod(shape[1:]))])


def gen_constant_of_shape(b, x):
    shape = b.shape(x)
    if b.opset < 9:
        raise Skip("opset")
    s = b.node("Shape", [x])
    value = numpy_helper.from_array(np.array([float(b.rng.uniform(-1, 1))], np.float32), "value")
    c = b.node("ConstantOfShape", [s], value=value)
    return b.node("Add", [x, c])


def gen_recurrent(op):
    def gen(b, x):
        x = b.as_rank(x, 3)
        shape = b.shape(x)
        layout = 0  # ORT's CPU kernels reject layout=1
        seq, batch = (shape[0], shape[1]) if layout == 0 else (shape[1], shape[0])
        feat = shape[2]
        if seq * batch * feat > 1024:
            raise Skip("too large")
        hidden = int(b.rng.integers(1, 6))
        direction = choice(b.rng, ["forward", "reverse", "bidirectional"])
        dirs = 2 if direction == "bidirectional" else 1
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        attrs = {"hidden_size": hidden}
        if direction != "forward" or b.rng.random() < 0.3:
            attrs["direction"] = direction
        if layout:
            attrs["layout"] = 1
        if op == "GRU" and b.rng.random() < 0.6:
            attrs["linear_before_reset"] = int(b.rng.integers(0, 2))
        ins = [x, b.weight([dirs, gates * hidden, feat], -0.6, 0.6), b.weight([dirs, gates * hidden, hidden], -0.6, 0.6)]
        optional = []
        if b.rng.random() < 0.7:
            optional.append((1, b.weight([dirs, 2 * gates * hidden], -0.3, 0.3)))
        if b.rng.random() < 0.3:
            lens = np.full([batch], seq, np.int32)
            if b.rng.random() < 0.5:
                lens = b.rng.integers(1, seq + 1, batch).astype(np.int32)
            optional.append((2, b.const(lens, "lens")))
        hshape = [dirs, batch, hidden] if layout == 0 else [batch, dirs, hidden]
        if b.rng.random() < 0.4:
            optional.append((3, b.weight(hshape)))
        if op == "LSTM" and b.rng.random() < 0.3:
            optional.append((4, b.weight(hshape)))
        extra = [""] * (max([i for i, _ in optional], default=0))
        for i, v in optional:
            extra[i - 1] = v
        ins += extra
        n_out = {"LSTM": 3, "GRU": 2, "RNN": 2}[op]
        used = int(b.rng.integers(0, n_out))
        outs = [b.fresh(op.lower() + "_y") if i == used or b.rng.random() < 0.3 else "" for i in range(n_out)]
        while outs and outs[-1] == "":
            outs.pop()
        b.node(op, ins, outputs=outs, **attrs)
        return outs[used]
    return gen


# Patterns that nnc's `simplify` and `fuse` passes rewrite, with variations
# that must not be rewritten (or must be rewritten with care).


def scalar_const(b, v, rank=0):
    return b.const(np.full([1] * rank, v, np.float32))


def gen_spelled_norm(b, x):
    """mean / sub / pow / mean / add eps / sqrt / div, as PyTorch exports a
    layer norm before opset 17, with look-alikes."""
    x = noisy(b, x)
    shape = b.shape(x)
    r = len(shape)
    if r == 0:
        raise Skip("scalar")
    k = int(b.rng.integers(1, r + 1))
    axes = list(range(r - k, r)) if b.rng.random() < 0.7 else sorted(
        set(int(a) for a in b.rng.integers(0, r, k)))
    axes2 = axes if b.rng.random() < 0.85 else sorted(set(int(a) for a in b.rng.integers(0, r, k)))
    keep2 = 1 if b.rng.random() < 0.9 else 0

    def mean(v, ax, keep=1):
        if b.opset >= 18:
            return b.node("ReduceMean", [v, b.ints(ax)], keepdims=keep)
        return b.node("ReduceMean", [v], axes=ax, keepdims=keep)

    m = mean(x, axes)
    d = b.node("Sub", [x, m] if b.rng.random() < 0.9 else [m, x])
    e = choice(b.rng, [2.0, 2.0, 2.0, 4.0])
    sq = b.node("Pow", [d, scalar_const(b, e)]) if b.rng.random() < 0.6 else b.node("Mul", [d, d])
    v = mean(sq, axes2, keep2)
    eps_rank = choice(b.rng, [0, 0, 1, r, r + 1])
    eps = b.const(np.full([1] * eps_rank, float(choice(b.rng, [1e-5, 1e-3, 0.1])), np.float32))
    a = b.node("Add", [v, eps] if b.rng.random() < 0.8 else [eps, v])
    st = b.node("Sqrt", [a])
    b.amplify = max(b.amplify, 3.0)
    if b.rng.random() < 0.3:
        return b.node("Mul", [d, b.node("Reciprocal", [st])])
    return b.node("Div", [d, st])


def gen_spelled_activation(b, x):
    """SiLU, hardswish and GELU as exporters write them, sometimes with a
    constant off (no longer the activation)."""
    off = 1.0 if b.rng.random() < 0.8 else float(b.rng.uniform(0.9, 1.1))
    kind = choice(b.rng, ["silu", "hardswish", "gelu_erf", "gelu_tanh"])
    c = lambda v: scalar_const(b, v * off, choice(b.rng, [0, 0, 1]))  # noqa: E731
    if kind == "silu":
        return b.node("Mul", [x, b.node("Sigmoid", [x])] if b.rng.random() < 0.5 else [b.node("Sigmoid", [x]), x])
    if kind == "hardswish":
        if b.opset < 11:
            raise Skip("opset")
        r6 = b.node("Clip", [b.node("Add", [x, c(3.0)]), scalar_const(b, 0.0), scalar_const(b, 6.0)])
        return b.node("Div", [b.node("Mul", [x, r6]), c(6.0)])
    if kind == "gelu_erf":
        if b.opset < 9:
            raise Skip("opset")
        inner = b.node("Erf", [b.node("Div", [x, c(1.4142135)])])
        return b.node("Mul", [b.node("Mul", [x, b.node("Add", [inner, c(1.0)])]), c(0.5)])
    cube = b.node("Pow", [x, scalar_const(b, 3.0)])
    inner = b.node("Mul", [b.node("Add", [x, b.node("Mul", [cube, c(0.044715)])]), c(0.7978846)])
    return b.node("Mul", [b.node("Mul", [x, c(0.5)]), b.node("Add", [b.node("Tanh", [inner]), c(1.0)])])


def gen_pad_window(b, x):
    """A Pad of the spatial dims before a Conv or pool (folded into the op
    when the values stay the same)."""
    x, shape = spatial_input(b, x, (4,))
    value = choice(b.rng, [0.0, 0.0, -3.4028235e38, -1.0, 0.5])
    mode = "constant" if b.rng.random() < 0.85 else "edge"
    if b.rng.random() < 0.3:
        x = b.node("Relu", [x])
    pads = [0, 0] + [int(b.rng.integers(0, 3)) for _ in range(2)] + [0, 0] + [int(b.rng.integers(0, 3)) for _ in range(2)]
    if b.opset < 11:
        x = b.node("Pad", [x], pads=pads, mode=mode, value=value)
    else:
        x = b.node("Pad", [x, b.ints(pads), b.const(np.array(value, np.float32))], mode=mode)
    op = choice(b.rng, ["Conv", "MaxPool", "AveragePool"])
    gen = {"Conv": gen_conv, "MaxPool": gen_pool("MaxPool"), "AveragePool": gen_pool("AveragePool")}[op]
    if op == "Conv" and value < -1e30:
        raise Skip("huge")
    return gen(b, x)


def gen_spelled_group_norm(b, x):
    """reshape [N, G, -1] / InstanceNormalization / reshape back, as PyTorch
    exports a group norm before opset 18, then a per-channel scale."""
    x, shape = spatial_input(b, x, (3, 4))
    x = noisy(b, x)
    n, c = shape[0], shape[1]
    g = choice(b.rng, [k for k in range(1, c + 1) if c % k == 0])
    grouped = b.reshape(x, [n, g, -1])
    unit = b.rng.random() < 0.8
    scale = np.ones(g, np.float32) if unit else b.rng.uniform(0.5, 1.5, g).astype(np.float32)
    y = b.node("InstanceNormalization", [grouped, b.const(scale), b.const(np.zeros(g, np.float32))])
    y = b.reshape(y, shape)
    if b.rng.random() < 0.7:
        y = b.node("Add", [b.node("Mul", [y, b.weight([c] + [1] * (len(shape) - 2), 0.5, 1.5)]),
                           b.weight([c] + [1] * (len(shape) - 2))])
    return y


def gen_conv_bn_act(b, x):
    """Conv then BatchNormalization then an activation (folded and fused)."""
    y = gen_conv(b, x)
    y = gen_batch_norm(b, y)
    act = choice(b.rng, ["Relu", "Clip", "Sigmoid", "LeakyRelu", "HardSwish", "Tanh"])
    if act == "Clip":
        return gen_clip(b, y)
    if act == "HardSwish" and b.opset < 14:
        return b.node("Relu", [y])
    return b.node(act, [y])


def gen_matmul_add(b, x):
    """MatMul of a constant then Add of a vector (a `linear` with bias)."""
    shape = b.shape(x)
    if not shape:
        raise Skip("scalar")
    n = int(b.rng.integers(1, 7))
    y = b.node("MatMul", [x, b.weight([shape[-1], n], -0.5, 0.5)])
    bias = b.weight(choice(b.rng, [[n], [n], [1, n], [1]]))
    return b.node("Add", [y, bias] if b.rng.random() < 0.7 else [bias, y])


OPS = {
    "Abs": unary("Abs"), "Neg": unary("Neg"), "Relu": unary("Relu"), "Sigmoid": unary("Sigmoid"),
    "Tanh": unary("Tanh"), "Erf": unary("Erf", 9), "Softsign": unary("Softsign"), "Softplus": unary("Softplus"),
    "Exp": unary("Exp"), "Log": unary("Log"), "Sqrt": unary("Sqrt"), "Reciprocal": unary("Reciprocal"),
    "LeakyRelu": unary("LeakyRelu", alpha=lambda r: float(r.uniform(0, 0.5))),
    "Elu": unary("Elu", alpha=lambda r: float(r.uniform(0.1, 2))),
    "Celu": unary("Celu", 12, alpha=lambda r: float(r.uniform(0.1, 2))),
    "Selu": unary("Selu"),
    "HardSigmoid": unary("HardSigmoid", alpha=lambda r: float(r.uniform(0.1, 0.5)),
                         beta=lambda r: float(r.uniform(0.2, 0.8))),
    "HardSwish": unary("HardSwish", 14), "Mish": unary("Mish", 18), "Gelu": gen_gelu,
    "Identity": unary("Identity"), "Dropout": gen_dropout, "Cast": gen_cast,
    "Add": binary("Add"), "Sub": binary("Sub"), "Mul": binary("Mul"), "Div": binary("Div"),
    "Pow": gen_pow, "PRelu": gen_prelu,
    "Sum": gen_variadic("Sum"), "Max": gen_variadic("Max"), "Min": gen_variadic("Min"), "Mean": gen_variadic("Mean"),
    "Clip": gen_clip,
    "Conv": gen_conv, "ConvTranspose": gen_conv_transpose,
    "MaxPool": gen_pool("MaxPool"), "AveragePool": gen_pool("AveragePool"),
    "GlobalAveragePool": gen_global("GlobalAveragePool"), "GlobalMaxPool": gen_global("GlobalMaxPool"),
    "BatchNormalization": gen_batch_norm, "InstanceNormalization": gen_instance_norm,
    "GroupNormalization": gen_group_norm, "LayerNormalization": gen_layer_norm, "LRN": gen_lrn,
    "Softmax": gen_softmax("Softmax"), "LogSoftmax": gen_softmax("LogSoftmax"),
    "Gemm": gen_gemm, "MatMul": gen_matmul,
    "Concat": gen_concat, "Flatten": gen_flatten, "Reshape": gen_reshape, "Squeeze": gen_squeeze,
    "Transpose": gen_transpose, "Slice": gen_slice, "Split": gen_split, "Gather": gen_gather,
    "Tile": gen_tile, "Expand": gen_expand, "Pad": gen_pad, "Resize": gen_resize,
    "ReduceMean": gen_reduce("ReduceMean"), "ReduceSum": gen_reduce("ReduceSum"),
    "ReduceMax": gen_reduce("ReduceMax"), "ReduceMin": gen_reduce("ReduceMin"),
    "Shape": gen_shape_reshape, "ConstantOfShape": gen_constant_of_shape,
    "LSTM": gen_recurrent("LSTM"), "GRU": gen_recurrent("GRU"), "RNN": gen_recurrent("RNN"),
}

# Multi-node patterns, drawn as often as one op each.
PATTERNS = {
    "spelled-norm": gen_spelled_norm, "spelled-activation": gen_spelled_activation,
    "pad-window": gen_pad_window, "spelled-group-norm": gen_spelled_group_norm,
    "conv-bn-act": gen_conv_bn_act, "matmul-add": gen_matmul_add,
}
GENERATORS = {**OPS, **PATTERNS}


def generate(seed):
    """A random graph: (model, feeds, ops tested, tolerance factor)."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        opset = int(rng.integers(MIN_OPSET, MAX_OPSET + 1))
        b = Builder(rng, opset)
        rank = int(rng.choice([0, 1, 2, 3, 4, 4, 4, 4]))
        shape = [int(rng.integers(1, 4))] + [int(rng.integers(1, 7)) for _ in range(rank - 1)]
        if rank == 4:
            shape[1] = int(rng.integers(1, 7))
        if rng.random() < 0.15:
            # Larger tensors: vector tails, several tasks per thread, the
            # convolution algorithms chosen for more channels.
            shape = [int(rng.integers(1, 3))] + [int(rng.integers(4, 17)) for _ in range(rank - 1)]
        shape = shape[:rank]  # rank 0: a scalar
        x = b.input(shape)
        values = [x]
        b.values = values
        n = int(rng.integers(1, 7))
        names = sorted(GENERATORS)
        tries = 0
        while len(b.ops) < n and tries < 40:
            tries += 1
            op = choice(rng, names)
            src = values[-1] if rng.random() < 0.8 else choice(rng, values)
            saved = (list(b.nodes), list(b.inits), list(b.inputs), dict(b.feeds), b.amplify)
            try:
                y = GENERATORS[op](b, src)
                if int(np.prod(b.shape(y))) > 40000 or len(b.shape(y)) > 6:
                    raise Skip("too large")
            except (Skip, onnx.shape_inference.InferenceError, ValueError, IndexError, ZeroDivisionError):
                b.nodes, b.inits, b.inputs, b.feeds, b.amplify = saved
                continue
            b.ops.append(op)
            values.append(y)
        if not b.ops:
            continue
        outputs = [values[-1]]
        if len(values) > 2 and rng.random() < 0.2:
            outputs.insert(0, choice(rng, values[1:-1]))
        model = b.model(outputs)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception:
            continue
        return model, b.feeds, b.ops, b.amplify
    raise RuntimeError(f"seed {seed}: no valid graph")


# ---------------------------------------------------------------------------
# Running


def run_ort(model, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    # ORT's fusions are not what is being tested (and its SkipLayerNorm
    # fusion rejects scales of more than one dim).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [np.asarray(y, np.float32) for y in session.run(None, feeds)]


def reason_of(stderr):
    """A short, node-independent reason from nnc's error text."""
    text = stderr.strip()
    m = re.search(r"node `[^`]*` \((\w+), opset \d+\): ([^\n]*)", text)
    if m:
        why = m.group(2)
    else:
        lines = [l for l in text.splitlines() if l.strip() and not l.startswith("warning")]
        m2 = next((l for l in lines if l.startswith("error")), lines[0] if lines else "no message")
        why = m2
    why = re.sub(r"`[^`]*`", "`_`", why)
    why = re.sub(r"\[[-\d, ]*\]", "[..]", why)
    why = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "N", why)
    return (m.group(1) + ": " if m else "") + why[:120]


def run_nnc(nnc, model_path, input_paths, n_out, mode, workdir):
    outs = [os.path.join(workdir, f"{mode}_out{i}.npy") for i in range(n_out)]
    cmd = [nnc, "run", model_path]
    cmd += ["--interp"] if mode == "interp" else ["--threads", mode[-1]]
    for p in input_paths:
        cmd += ["--input", p]
    for o in outs:
        cmd += ["-o", o]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "crash", "timeout after 120 s", None
    if proc.returncode == 0:
        try:
            return "ok", "", [np.load(o) for o in outs]
        except Exception as e:  # noqa: BLE001
            return "crash", f"cannot read outputs: {e}", None
    # A verifier failure after a pass is a compiler bug, not a refusal.
    if proc.returncode == 1 and not any(w in proc.stderr for w in ("panicked", "invalid IR")):
        return "rejected", proc.stderr, None
    return "crash", f"exit {proc.returncode}: {proc.stderr[-2000:]}", None


def compare(actual, expected, amplify):
    """None if within tolerance, else a description."""
    if actual.shape != expected.shape:
        return f"shape {list(actual.shape)} vs ORT {list(expected.shape)}"
    if actual.size == 0:
        return None
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    finite = np.isfinite(e)
    scale = np.max(np.abs(e[finite])) if finite.any() else 0.0
    tol = TOL * amplify * (1.0 + np.abs(e) + 0.01 * scale)
    diff = np.abs(a - e)
    same_inf = (a == e)
    bad = ~(both_nan | same_inf | (diff <= tol))
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, diff / np.where(np.isfinite(tol), tol, 1), 0)), e.shape)
        return (f"{int(bad.sum())} of {e.size} values differ; worst at {list(map(int, i))}: "
                f"nnc {a[i]:.7g}, ORT {e[i]:.7g}")
    return None


def every_value(model):
    """The model with every float value computed as an output too."""
    inferred = onnx.shape_inference.infer_shapes(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outputs = {o.name for o in m.graph.output}
    for v in inferred.graph.value_info:
        if v.name not in outputs and v.type.tensor_type.elem_type == TensorProto.FLOAT:
            m.graph.output.append(v)
    return m


def check(model, feeds, amplify, nnc, modes=("interp", "t1", "t2")):
    """('match'|'rejected'|'mismatch'|'crash'|'ort'|'ort-disagrees', detail):
    'ort' when ORT cannot run the graph (or its values overflow),
    'ort-disagrees' when nnc differs from ORT but matches the reference
    evaluator of the onnx package."""
    try:
        expected = run_ort(model, feeds)
        values = run_ort(every_value(model), feeds)
    except Exception as e:  # noqa: BLE001
        return "ort", str(e).splitlines()[0][:200]
    # A NaN or an overflow anywhere (a guard bypassed while shrinking, say)
    # makes the comparison meaningless: ops differ in how they pass NaN on.
    if any(not np.all(np.isfinite(y)) or np.max(np.abs(y), initial=0) > 1e6 for y in values):
        return "ort", "non-finite or huge values"
    with tempfile.TemporaryDirectory(prefix="ort_diff_") as work:
        path = os.path.join(work, "model.onnx")
        onnx.save_model(model, path)
        inputs = []
        for i, name in enumerate(i.name for i in model.graph.input):
            p = os.path.join(work, f"input_{i}.npy")
            np.save(p, feeds[name])
            inputs.append(p)
        for mode in modes:
            status, detail, outs = run_nnc(nnc, path, inputs, len(expected), mode, work)
            if status == "rejected":
                return "rejected", (mode, reason_of(detail))
            if status == "crash":
                return "crash", f"{mode}: {detail}"
            for k, (a, e) in enumerate(zip(outs, expected)):
                why = compare(a, e, amplify)
                if why:
                    if agrees_with_reference(model, feeds, outs, amplify):
                        return "ort-disagrees", f"{mode} output {k}: {why}"
                    return "mismatch", f"{mode} output {k}: {why}"
    return "match", None


def agrees_with_reference(model, feeds, outs, amplify):
    """Whether nnc's outputs match the onnx package's reference evaluator
    (the spec in NumPy) where they differ from ORT: ORT is then the one
    that is off (it is, for one, on an AveragePool of a one-row input
    padded above and below)."""
    try:
        from onnx.reference import ReferenceEvaluator
        ref = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001
        return False
    return all(compare(a, np.asarray(r, np.float32), amplify) is None for a, r in zip(outs, ref))


# ---------------------------------------------------------------------------
# Shrinking


def prune(model, outputs):
    """The model computing only `outputs` (dead nodes, inits, inputs gone)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    needed = set(outputs)
    keep = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    ins = [i for i in g.input if i.name in needed]
    del g.input[:]
    g.input.extend(ins)
    del g.output[:]
    g.output.extend(helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs)
    try:
        return with_output_types(m)
    except Exception:  # noqa: BLE001
        return m


def valid(model):
    try:
        onnx.checker.check_model(with_output_types(model), full_check=True)
        return True
    except Exception:  # noqa: BLE001
        return False


def candidates(model, feeds):
    """Smaller variants of a failing model: (model, feeds)."""
    g = model.graph
    # Fewer outputs, or an earlier value as the only output.
    values = [o for n in g.node for o in n.output if o]
    for v in values:
        if [o.name for o in g.output] != [v]:
            yield prune(model, [v]), feeds
    # A node bypassed: its output replaced by its first input.
    for k, node in enumerate(g.node):
        if not node.input or not node.input[0]:
            continue
        m = onnx.ModelProto()
        m.CopyFrom(model)
        src, dst = node.input[0], node.output[0]
        del m.graph.node[k]
        for n in m.graph.node:
            for i, name in enumerate(n.input):
                if name == dst:
                    n.input[i] = src
        outs = [src if o.name == dst else o.name for o in m.graph.output]
        if src in [i.name for i in m.graph.input] and src in outs:
            continue
        yield prune(m, outs), feeds
    # Optional attributes removed.
    for k, node in enumerate(g.node):
        for a in range(len(node.attribute)):
            m = onnx.ModelProto()
            m.CopyFrom(model)
            del m.graph.node[k].attribute[a]
            yield m, feeds
    # A dim of a graph input cut (a prefix of the data).
    for k, inp in enumerate(g.input):
        dims = inp.type.tensor_type.shape.dim
        for d in range(len(dims)):
            size = dims[d].dim_value
            for new in sorted({1, size // 2, size - 1}):
                if 1 <= new < size:
                    m = onnx.ModelProto()
                    m.CopyFrom(model)
                    m.graph.input[k].type.tensor_type.shape.dim[d].dim_value = new
                    f = dict(feeds)
                    f[inp.name] = np.take(feeds[inp.name], range(new), axis=d).copy()
                    yield m, f
    # Simpler input values.
    for name, x in feeds.items():
        for simpler in (np.round(x, 1), np.ones_like(x), np.zeros_like(x)):
            if not np.array_equal(simpler, x):
                f = dict(feeds)
                f[name] = simpler.astype(np.float32)
                yield model, f


def shrink(model, feeds, amplify, nnc, kind, budget=150):
    """The smallest variant that still fails the same way."""
    tried = 0
    improved = True
    while improved and tried < budget:
        improved = False
        for m, f in candidates(model, feeds):
            if tried >= budget:
                break
            if not valid(m):
                continue
            tried += 1
            status, _ = check(m, f, amplify, nnc)
            # A smaller graph on which only ORT is off is kept too: the
            # failure then most likely was ORT's.
            if status in (kind, "ort-disagrees"):
                model, feeds, improved = m, f, True
                break
    return model, feeds


def save_case(directory, model, feeds, detail):
    os.makedirs(directory, exist_ok=True)
    onnx.save_model(model, os.path.join(directory, "model.onnx"))
    for i, inp in enumerate(model.graph.input):
        np.save(os.path.join(directory, f"input_{i}.npy"), feeds[inp.name])
    try:
        for i, y in enumerate(run_ort(model, feeds)):
            np.save(os.path.join(directory, f"output_{i}.npy"), y)
    except Exception:  # noqa: BLE001
        pass
    with open(os.path.join(directory, "reason.txt"), "w") as f:
        f.write(detail + "\n\n" + onnx.printer.to_text(model.graph) + "\n")


# ---------------------------------------------------------------------------
# Driver

ARGS = None


def one(seed):
    model, feeds, ops, amplify = generate(seed)
    status, detail = check(model, feeds, amplify, ARGS.nnc)
    saved = None
    if status in ("mismatch", "crash") and ARGS.out:
        small, small_feeds = shrink(model, feeds, amplify, ARGS.nnc, status) if not ARGS.no_shrink else (model, feeds)
        small_status, small_detail = check(small, small_feeds, amplify, ARGS.nnc)
        if small_status == "ort-disagrees":
            status = small_status
        saved = os.path.join(ARGS.out, f"seed{seed}_{status}")
        shutil.rmtree(saved, ignore_errors=True)
        save_case(saved, small, small_feeds, f"{status}: {small_detail}\noriginal: {detail}")
        detail = f"{small_detail} [shrunk to {len(small.graph.node)} nodes: {saved}]"
    return seed, status, detail, ops, model.opset_import[0].version


def emit_fixtures(count, seed, nnc):
    shutil.rmtree(SAMPLE_DIR, ignore_errors=True)
    written, s = 0, seed
    while written < count:
        model, feeds, ops, amplify = generate(s)
        s += 1
        # Only graphs nnc imports and matches within the Rust test's plain
        # tolerance, with every op the fuzzer draws eventually represented.
        small = sum(x.size for x in feeds.values()) + sum(numpy_helper.to_array(t).size
                                                           for t in model.graph.initializer) <= 3000
        if amplify > 1.0 or len(model.graph.node) > 8 or not small:
            continue
        status, _ = check(model, feeds, amplify, nnc)
        if status != "match":
            continue
        name = f"g{written:02d}_{'_'.join(o.lower() for o in ops)}"[:60]
        d = os.path.join(SAMPLE_DIR, name)
        os.makedirs(d)
        onnx.save_model(model, os.path.join(d, "model.onnx"))
        for i, inp in enumerate(model.graph.input):
            np.save(os.path.join(d, f"input_{i}.npy"), feeds[inp.name])
        for i, y in enumerate(run_ort(model, feeds)):
            np.save(os.path.join(d, f"output_{i}.npy"), y)
        written += 1
    print(f"wrote {written} graphs (seeds {seed} to {s - 1}) to {os.path.relpath(SAMPLE_DIR, REPO)}")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200, help="graphs to generate")
    p.add_argument("--seed", type=int, default=1, help="seed of the first graph (graph i uses seed + i)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="graphs checked at once")
    p.add_argument("--out", default="ort_diff_failures", help="where shrunk failing graphs go")
    p.add_argument("--nnc", default=os.path.join(REPO, "target", "release", "nnc"), help="the nnc binary")
    p.add_argument("--no-shrink", action="store_true", help="save failing graphs as generated")
    p.add_argument("--emit-fixtures", type=int, metavar="N", help=f"write N matching graphs to {SAMPLE_DIR}")
    p.add_argument("--only", metavar="SEED", type=int, nargs="+", help="check just these seeds, verbosely")
    ARGS = p.parse_args()
    if not os.path.exists(ARGS.nnc):
        sys.exit(f"no nnc binary at {ARGS.nnc}; run `cargo build --release` or pass --nnc")
    if ARGS.emit_fixtures:
        emit_fixtures(ARGS.emit_fixtures, ARGS.seed, ARGS.nnc)
        return
    seeds = ARGS.only or range(ARGS.seed, ARGS.seed + ARGS.count)
    start = time.time()
    counts = collections.Counter()
    rejected = collections.Counter()
    skipped = collections.Counter()  # graphs ORT cannot run, by reason
    failures = []
    per_op = collections.Counter()
    with multiprocessing.Pool(ARGS.jobs) as pool:
        for k, (seed, status, detail, ops, opset) in enumerate(pool.imap_unordered(one, seeds, chunksize=4), 1):
            counts[status] += 1
            for op in set(ops):
                per_op[op, status] += 1
            if status == "rejected":
                rejected[f"{detail[0]}: {detail[1]}"] += 1
            elif status == "ort":
                skipped[re.sub(r"'[^']*'|\d+", "_", detail)[:100]] += 1
            elif status == "ort-disagrees":
                print(f"seed {seed} (ORT differs from the spec's reference, nnc does not; opset {opset}, "
                      f"{' -> '.join(ops)}): {detail}", flush=True)
            elif status in ("mismatch", "crash"):
                failures.append((seed, status, detail, ops, opset))
                print(f"seed {seed} ({status}, opset {opset}, {' -> '.join(ops)}): {detail}", flush=True)
            elif ARGS.only:
                print(f"seed {seed} ({status}, opset {opset}, {' -> '.join(ops)}): {detail}")
            if k % 500 == 0:
                print(f"[{k} graphs, {time.time() - start:.0f} s] {dict(counts)}", flush=True)
    wall = time.time() - start
    print(f"\n{sum(counts.values())} graphs (seeds {seeds[0]}..{seeds[-1]}) in {wall:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if rejected:
        print("\nrejected by nnc, by reason:")
        for why, n in rejected.most_common():
            print(f"  {n:6d}  {why}")
    if skipped:
        print("\nnot compared (ORT cannot run the graph, or a value overflows), by reason:")
        for why, n in skipped.most_common(12):
            print(f"  {n:6d}  {why}")
    print("\nper op (graphs containing it): match / rejected / ORT cannot run / ORT off the spec / failing")
    for op in sorted(GENERATORS):
        row = [per_op[op, s] for s in ("match", "rejected", "ort", "ort-disagrees")]
        row.append(per_op[op, "mismatch"] + per_op[op, "crash"])
        print(f"  {op:22s}" + "".join(f" {n:6d}" for n in row))
    if failures:
        print(f"\n{len(failures)} failing graphs; shrunk reproducers in {ARGS.out}")
        sys.exit(1)


if __name__ == "__main__":
    main()
