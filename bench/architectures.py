"""Published architectures built as ONNX graphs with `onnx.helper`, for
bench/suite.py.

Every builder returns `(model, inputs)`: an opset 17 model with seeded
random weights, batch 1, in the layout the published (torchvision) model
exports to with `torch.onnx.export` in training-preserving mode: each conv
followed by a BatchNormalization node (nnc and ONNX Runtime fold them
themselves), SiLU as `x * Sigmoid(x)`, `torch.cat` as Concat, `x.chunk` as
Split, PyTorch-style weight names. Layer widths and depths are the
published ones; the weights are not trained.

Conv weights are drawn with He's scale (uniform in +-sqrt(6 / fan_in)) so
that activations neither vanish nor explode through fifty layers: with
PyTorch's default init (+-1 / sqrt(fan_in)) the signal shrinks by sqrt(6)
per layer, the outputs end near zero, and any two engines agree on them.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from onnx_fixtures import Graph, rand  # noqa: E402

OPSET = 17


class Net(Graph):
    """onnx_fixtures.Graph with the layers these architectures share."""

    def conv(self, x, prefix, c_in, c_out, k, stride=1, pad=None, group=1, bias=False, dims=2):
        """A `dims`-D convolution, padded to keep the size (`k // 2`) unless
        `pad` is given, weights with He's scale."""
        pad = k // 2 if pad is None else pad
        fan_in = c_in // group * k ** dims
        inputs = [x, self.weight(f"{prefix}.weight", [c_out, c_in // group] + [k] * dims,
                                 np.sqrt(6.0 / fan_in))]
        if bias:
            inputs.append(self.weight(f"{prefix}.bias", [c_out], 0.1))
        return self.node("Conv", inputs, name=f"/{prefix}/Conv", kernel_shape=[k] * dims,
                         strides=[stride] * dims, pads=[pad] * (2 * dims), group=group)

    def bn(self, x, prefix, c, eps=1e-5):
        r = self.rng
        ins = [x] + [self.init(f"{prefix}.{n}", r.uniform(lo, hi, c).astype(np.float32))
                     for n, lo, hi in [("weight", 0.5, 1.5), ("bias", -0.5, 0.5),
                                       ("running_mean", -0.5, 0.5), ("running_var", 0.5, 1.5)]]
        return self.node("BatchNormalization", ins, name=f"/{prefix}/BatchNormalization",
                         epsilon=eps)

    def act(self, x, kind):
        """`relu`, `relu6`, `silu` (as PyTorch exports it: x * sigmoid(x)),
        `hardswish`, `hardsigmoid` (PyTorch's: relu6(x + 3) / 6) or None."""
        if kind is None:
            return x
        if kind == "silu":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if kind == "hardsigmoid":
            return self.node("HardSigmoid", [x], alpha=1.0 / 6)
        return {"relu": self.relu, "relu6": self.relu6,
                "hardswish": lambda x: self.node("HardSwish", [x])}[kind](x)

    def cbn(self, x, prefix, c_in, c_out, k, stride=1, group=1, act="relu", eps=1e-5, names=("0", "1")):
        """torchvision's Conv2dNormActivation: conv (no bias), batch norm,
        activation; the conv and norm named `prefix.0` and `prefix.1`."""
        conv, norm = (f"{prefix}.{n}" if prefix else n for n in names)
        y = self.conv(x, conv, c_in, c_out, k, stride, group=group)
        return self.act(self.bn(y, norm, c_out, eps), act)

    def squeeze_excite(self, x, prefix, c, squeeze, act="relu", gate="sigmoid"):
        """torchvision's SqueezeExcitation: global pool, 1x1 conv, act, 1x1
        conv, gate, the input scaled by the gate."""
        s = self.node("GlobalAveragePool", [x])
        s = self.act(self.conv(s, f"{prefix}.fc1", c, squeeze, 1, bias=True), act)
        s = self.conv(s, f"{prefix}.fc2", squeeze, c, 1, bias=True)
        s = self.node("Sigmoid", [s]) if gate == "sigmoid" else self.act(s, gate)
        return self.node("Mul", [x, s])

    def classifier(self, x, prefix, c_in, classes=1000, dropout=True):
        """Global average pool, flatten, dropout, linear."""
        y = self.node("Flatten", [self.node("GlobalAveragePool", [x])])
        if dropout:
            y = self.node("Dropout", [y])
        return self.linear(y, prefix, c_in, classes)

    def max_pool(self, x, k, stride, pad=0, ceil=False):
        return self.node("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, ceil_mode=int(ceil))

    def recurrent(self, x, op, gates, features, hidden, dirs, **attrs):
        """An LSTM or GRU over `x` [seq, 1, features] with PyTorch's init
        (uniform in +-1 / sqrt(hidden)); returns Y as [seq, 1, dirs * hidden]
        (ONNX's [seq, dirs, 1, hidden] transposed and reshaped, as PyTorch
        exports it)."""
        bound = 1.0 / np.sqrt(hidden)
        ins = [x] + [self.weight(self.name(n), s, bound) for n, s in [
            ("W", [dirs, gates * hidden, features]), ("R", [dirs, gates * hidden, hidden]),
            ("B", [dirs, 2 * gates * hidden])]]
        direction = "bidirectional" if dirs == 2 else "forward"
        y = self.node(op, ins, name=self.name(f"/{op}"), hidden_size=hidden, direction=direction,
                      **attrs)
        y = self.node("Transpose", [y], perm=[0, 2, 1, 3])
        return self.node("Reshape", [y, self.init(self.name("shape"),
                                                  np.array([0, 0, -1], np.int64))])

    def finish(self, outputs, shape, name):
        for y in outputs if isinstance(outputs, list) else [outputs]:
            self.output(y)
        return self.model(OPSET, name), [rand(self.rng, shape)]


def efficientnet_b0():
    """torchvision efficientnet_b0: MBConv blocks with SiLU and
    squeeze-excite (squeeze to a quarter of the block's input channels)."""
    g = Net(101)
    x = g.input("input", [1, 3, 224, 224])
    y = g.cbn(x, "features.0", 3, 32, 3, 2, act="silu")
    c = 32
    # expand ratio, kernel, stride, output channels, blocks
    for stage, (e, k, s, out, n) in enumerate([(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
                                               (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                                               (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)], start=1):
        for i in range(n):
            p, stride, hidden = f"features.{stage}.{i}.block", s if i == 0 else 1, c * e
            h, j = y, 0
            if e != 1:
                h, j = g.cbn(h, f"{p}.0", c, hidden, 1, act="silu"), 1
            h = g.cbn(h, f"{p}.{j}", hidden, hidden, k, stride, group=hidden, act="silu")
            h = g.squeeze_excite(h, f"{p}.{j + 1}", hidden, max(1, c // 4), act="silu")
            h = g.cbn(h, f"{p}.{j + 2}", hidden, out, 1, act=None)
            y = g.node("Add", [h, y]) if stride == 1 and c == out else h
            c = out
    y = g.cbn(y, "features.8", c, 1280, 1, act="silu")
    return g.finish(g.classifier(y, "classifier.1", 1280), [1, 3, 224, 224], "efficientnet_b0")


def make_divisible(v, divisor=8):
    """torchvision's `_make_divisible`: `v` rounded to a multiple of 8, not
    below 90% of `v`."""
    rounded = max(divisor, (v + divisor // 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def mobilenet_v3_small():
    """torchvision mobilenet_v3_small: HardSwish, squeeze-excite gated by
    HardSigmoid, batch norms with eps 1e-3."""
    g = Net(102)
    x = g.input("input", [1, 3, 224, 224])
    y = g.cbn(x, "features.0", 3, 16, 3, 2, act="hardswish", eps=1e-3)
    c = 16
    # kernel, expanded, output, squeeze-excite, activation, stride
    config = [(3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
              (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hardswish", 2),
              (5, 240, 40, True, "hardswish", 1), (5, 240, 40, True, "hardswish", 1),
              (5, 120, 48, True, "hardswish", 1), (5, 144, 48, True, "hardswish", 1),
              (5, 288, 96, True, "hardswish", 2), (5, 576, 96, True, "hardswish", 1),
              (5, 576, 96, True, "hardswish", 1)]
    for i, (k, hidden, out, se, act, stride) in enumerate(config, start=1):
        p, h, j = f"features.{i}.block", y, 0
        if hidden != c:
            h, j = g.cbn(h, f"{p}.0", c, hidden, 1, act=act, eps=1e-3), 1
        h = g.cbn(h, f"{p}.{j}", hidden, hidden, k, stride, group=hidden, act=act, eps=1e-3)
        if se:
            j += 1
            h = g.squeeze_excite(h, f"{p}.{j}", hidden, make_divisible(hidden // 4), gate="hardsigmoid")
        h = g.cbn(h, f"{p}.{j + 1}", hidden, out, 1, act=None, eps=1e-3)
        y = g.node("Add", [h, y]) if stride == 1 and c == out else h
        c = out
    y = g.cbn(y, "features.12", c, 576, 1, act="hardswish", eps=1e-3)
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    y = g.node("Dropout", [g.act(g.linear(y, "classifier.0", 576, 1024), "hardswish")])
    return g.finish(g.linear(y, "classifier.3", 1024, 1000), [1, 3, 224, 224], "mobilenet_v3_small")


def shufflenet_v2():
    """torchvision shufflenet_v2_x1_0: units that split the channels in
    two, transform one half, concatenate and shuffle (Reshape, Transpose,
    Reshape)."""
    g = Net(103)
    x = g.input("input", [1, 3, 224, 224])
    y = g.max_pool(g.cbn(x, "conv1", 3, 24, 3, 2), 3, 2, 1)
    c, size = 24, 56

    def shuffle(y, c, size):
        shape = lambda *d: g.init(g.name("shape"), np.array(d, np.int64))
        y = g.node("Reshape", [y, shape(1, 2, c // 2, size, size)])
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return g.node("Reshape", [y, shape(1, -1, size, size)])

    def branch(x, p, c_in, c_out, stride):
        y = g.cbn(x, p, c_in, c_out, 1, names=("0", "1"))
        y = g.cbn(y, p, c_out, c_out, 3, stride, group=c_out, act=None, names=("3", "4"))
        return g.cbn(y, p, c_out, c_out, 1, names=("5", "6"))

    for stage, (out, n) in enumerate([(116, 4), (232, 8), (464, 4)], start=2):
        half = out // 2
        for i in range(n):
            p = f"stage{stage}.{i}"
            if i == 0:
                left = g.cbn(y, f"{p}.branch1", c, c, 3, 2, group=c, act=None)
                left = g.cbn(left, f"{p}.branch1", c, half, 1, names=("2", "3"))
                right = branch(y, f"{p}.branch2", c, half, 2)
                size //= 2
            else:
                left, right = g.node("Split", [y, g.init(g.name("split"), np.array([half, half]))],
                                     2, axis=1)
                right = branch(right, f"{p}.branch2", half, half, 1)
            y = shuffle(g.node("Concat", [left, right], axis=1), out, size)
            c = out
    y = g.cbn(y, "conv5", c, 1024, 1)
    y = g.node("ReduceMean", [y], axes=[2, 3], keepdims=0)
    return g.finish(g.linear(y, "fc", 1024, 1000), [1, 3, 224, 224], "shufflenet_v2")


def googlenet():
    """torchvision googlenet (no aux heads, as in eval): inception modules
    of four branches (1x1; 1x1, 3x3; 1x1, 3x3 where the paper has 5x5, as
    torchvision does; 3x3 max pool, 1x1), ceil-mode max pools, batch norms
    with eps 1e-3."""
    g = Net(104)
    x = g.input("input", [1, 3, 224, 224])
    conv = lambda y, p, c_in, c_out, k, s=1: g.cbn(y, p, c_in, c_out, k, s, eps=1e-3,
                                                   names=("conv", "bn"))
    y = g.max_pool(conv(x, "conv1", 3, 64, 7, 2), 3, 2, ceil=True)
    y = g.max_pool(conv(conv(y, "conv2", 64, 64, 1), "conv3", 64, 192, 3), 3, 2, ceil=True)

    def inception(y, p, c_in, c1, c3r, c3, c5r, c5, pool):
        b1 = conv(y, f"{p}.branch1", c_in, c1, 1)
        b2 = conv(conv(y, f"{p}.branch2.0", c_in, c3r, 1), f"{p}.branch2.1", c3r, c3, 3)
        b3 = conv(conv(y, f"{p}.branch3.0", c_in, c5r, 1), f"{p}.branch3.1", c5r, c5, 3)
        b4 = conv(g.max_pool(y, 3, 1, 1, ceil=True), f"{p}.branch4.1", c_in, pool, 1)
        return g.node("Concat", [b1, b2, b3, b4], axis=1)

    y = inception(y, "inception3a", 192, 64, 96, 128, 16, 32, 32)
    y = inception(y, "inception3b", 256, 128, 128, 192, 32, 96, 64)
    y = g.max_pool(y, 3, 2, ceil=True)
    for name, args in [("4a", (480, 192, 96, 208, 16, 48, 64)), ("4b", (512, 160, 112, 224, 24, 64, 64)),
                       ("4c", (512, 128, 128, 256, 24, 64, 64)), ("4d", (512, 112, 144, 288, 32, 64, 64)),
                       ("4e", (528, 256, 160, 320, 32, 128, 128))]:
        y = inception(y, f"inception{name}", *args)
    y = g.max_pool(y, 2, 2, ceil=True)
    y = inception(y, "inception5a", 832, 256, 160, 320, 32, 128, 128)
    y = inception(y, "inception5b", 832, 384, 192, 384, 48, 128, 128)
    return g.finish(g.classifier(y, "fc", 1024), [1, 3, 224, 224], "googlenet")


def resnext50():
    """torchvision resnext50_32x4d: bottlenecks whose 3x3 conv has 32
    groups (4, 8, 16 and 32 channels per group), stride on the 3x3."""
    g = Net(105)
    x = g.input("input", [1, 3, 224, 224])
    y = g.max_pool(g.cbn(x, "", 3, 64, 7, 2, names=("conv1", "bn1")), 3, 2, 1)
    c = 64
    for layer, (planes, n) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        width, out = planes * 2, planes * 4
        for i in range(n):
            p, stride = f"layer{layer}.{i}", 2 if i == 0 and layer > 1 else 1
            h = g.cbn(y, p, c, width, 1, names=("conv1", "bn1"))
            h = g.cbn(h, p, width, width, 3, stride, group=32, names=("conv2", "bn2"))
            h = g.cbn(h, p, width, out, 1, act=None, names=("conv3", "bn3"))
            if i == 0:
                y = g.cbn(y, f"{p}.downsample", c, out, 1, stride, act=None)
            y = g.relu(g.node("Add", [h, y]))
            c = out
    return g.finish(g.classifier(y, "fc", 2048, dropout=False), [1, 3, 224, 224], "resnext50")


def regnetx_400mf():
    """torchvision regnet_x_400mf: four stages of 32, 64, 160 and 400
    channels and 1, 2, 7 and 12 blocks; each block a 1x1, a 3x3 grouped
    conv of 16 channels per group, a 1x1, and a residual (projected where
    the shape changes)."""
    g = Net(106)
    x = g.input("input", [1, 3, 224, 224])
    y = g.cbn(x, "stem", 3, 32, 3, 2)
    c = 32
    for stage, (width, n) in enumerate([(32, 1), (64, 2), (160, 7), (400, 12)], start=1):
        for i in range(n):
            p, stride = f"trunk_output.block{stage}.block{stage}-{i}", 2 if i == 0 else 1
            h = g.cbn(y, f"{p}.f.a", c, width, 1)
            h = g.cbn(h, f"{p}.f.b", width, width, 3, stride, group=width // 16)
            h = g.cbn(h, f"{p}.f.c", width, width, 1, act=None)
            if stride != 1 or c != width:
                y = g.cbn(y, f"{p}.proj", c, width, 1, stride, act=None)
            y = g.relu(g.node("Add", [y, h]))
            c = width
    return g.finish(g.classifier(y, "fc", 400, dropout=False), [1, 3, 224, 224], "regnetx_400mf")


def unet():
    """A UNet (the layout of milesial/Pytorch-UNet, base width 32) on a
    256x256 image: four max-pool steps down, each a double 3x3 conv-BN-ReLU;
    up again with two 2x2 stride-2 transposed convs, then two bilinear x2
    Resizes (align_corners, as nn.Upsample exports), each followed by the
    skip connection's Concat and a double conv; a 1x1 conv to 2 classes."""
    g = Net(107)
    x = g.input("input", [1, 3, 256, 256])

    def double(y, p, c_in, c_out):
        y = g.cbn(y, f"{p}.double_conv", c_in, c_out, 3, names=("0", "1"))
        return g.cbn(y, f"{p}.double_conv", c_out, c_out, 3, names=("3", "4"))

    skips, y, c = [], double(x, "inc", 3, 32), 32
    for i in range(1, 5):
        skips.append((y, c))
        y, c = double(g.max_pool(y, 2, 2), f"down{i}.maxpool_conv.1", c, 2 * c), 2 * c
    for i in range(1, 5):
        skip, c_skip = skips.pop()
        if i <= 2:
            w = g.weight(f"up{i}.up.weight", [c, c // 2, 2, 2], np.sqrt(6.0 / c))
            b = g.weight(f"up{i}.up.bias", [c // 2], 0.1)
            y = g.node("ConvTranspose", [y, w, b], name=f"/up{i}/up/ConvTranspose",
                       kernel_shape=[2, 2], strides=[2, 2])
            c_up = c // 2
        else:
            scales = g.init(g.name("scales"), np.array([1, 1, 2, 2], np.float32))
            y = g.node("Resize", [y, "", scales], mode="linear",
                       coordinate_transformation_mode="align_corners")
            c_up = c
        y = g.node("Concat", [skip, y], axis=1)
        y, c = double(y, f"up{i}.conv", c_skip + c_up, c_skip), c_skip
    y = g.conv(y, "outc.conv", c, 2, 1, bias=True)
    return g.finish(y, [1, 3, 256, 256], "unet")


def densenet121():
    """torchvision densenet121: dense blocks of 6, 12, 24 and 16 layers
    (BN, ReLU, 1x1 conv to 128, BN, ReLU, 3x3 conv to 32), each layer
    reading the Concat of all earlier features as torchvision exports it
    (one Concat per layer); transitions halve channels and size."""
    g = Net(108)
    x = g.input("input", [1, 3, 224, 224])
    y = g.cbn(x, "features", 3, 64, 7, 2, names=("conv0", "norm0"))
    y, c = g.max_pool(y, 3, 2, 1), 64
    for block, n in enumerate([6, 12, 24, 16], start=1):
        features = [y]
        for i in range(1, n + 1):
            p = f"features.denseblock{block}.denselayer{i}"
            h = features[0] if len(features) == 1 else g.node("Concat", features, axis=1)
            h = g.conv(g.relu(g.bn(h, f"{p}.norm1", c + 32 * (i - 1))), f"{p}.conv1",
                       c + 32 * (i - 1), 128, 1)
            features.append(g.conv(g.relu(g.bn(h, f"{p}.norm2", 128)), f"{p}.conv2", 128, 32, 3))
        y, c = g.node("Concat", features, axis=1), c + 32 * n
        if block < 4:
            p = f"features.transition{block}"
            y = g.conv(g.relu(g.bn(y, f"{p}.norm", c)), f"{p}.conv", c, c // 2, 1)
            y, c = g.node("AveragePool", [y], kernel_shape=[2, 2], strides=[2, 2]), c // 2
    y = g.relu(g.bn(y, "features.norm5", c))
    return g.finish(g.classifier(y, "classifier", c, dropout=False), [1, 3, 224, 224], "densenet121")


def crnn():
    """A speech-style CRNN: 80 mel bands over 400 frames, two conv1d-BN-ReLU
    layers (the first with stride 2), two bidirectional GRUs of hidden 256
    (PyTorch's `linear_before_reset`) over the 200 steps, and a linear layer
    to 29 characters per step."""
    g = Net(109)
    x = g.input("input", [1, 80, 400])
    y = g.relu(g.bn(g.conv(x, "conv.0", 80, 256, 5, 2, dims=1), "conv.1", 256))
    y = g.relu(g.bn(g.conv(y, "conv.3", 256, 256, 3, dims=1), "conv.4", 256))
    y = g.node("Transpose", [y], perm=[2, 0, 1])
    y = g.recurrent(y, "GRU", 3, 256, 256, 2, linear_before_reset=1)
    y = g.recurrent(y, "GRU", 3, 512, 256, 2, linear_before_reset=1)
    w = g.weight("fc.weight", [512, 29])
    y = g.node("Add", [g.node("MatMul", [y, w]), g.weight("fc.bias", [29], 0.1)])
    return g.finish(y, [1, 80, 400], "crnn")


def lstm_lm():
    """PyTorch's word_language_model example (LSTM): 35 steps of 512-wide
    embeddings through two LSTM layers of hidden 512, then a decoder to a
    10,000-word vocabulary at every step. The embedding lookup is left out
    (its input is the embedded sequence): nnc's Gather takes constant
    indices only."""
    g = Net(110)
    x = g.input("input", [35, 1, 512])
    y = g.recurrent(x, "LSTM", 4, 512, 512, 1)
    y = g.recurrent(y, "LSTM", 4, 512, 512, 1)
    y = g.node("Reshape", [y, g.init("flat", np.array([35, 512], np.int64))])
    y = g.node("Gemm", [y, g.weight("decoder.weight", [10000, 512], 0.1),
                        g.weight("decoder.bias", [10000], 0.1)], transB=1)
    return g.finish(y, [35, 1, 512], "lstm_lm")


# Name in the suite -> builder.
BUILDERS = {
    "efficientnet_b0": efficientnet_b0,
    "mobilenet_v3_small": mobilenet_v3_small,
    "shufflenet_v2": shufflenet_v2,
    "googlenet": googlenet,
    "resnext50": resnext50,
    "regnetx_400mf": regnetx_400mf,
    "unet": unet,
    "densenet121": densenet121,
    "crnn": crnn,
    "lstm_lm": lstm_lm,
}
