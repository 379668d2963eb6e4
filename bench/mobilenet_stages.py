#!/usr/bin/env python3
"""MobileNetV2 stage by stage: nnc against ONNX Runtime on sub-models.

Run by hand (not by CI), like compare_ort.py, after `pip install onnx
onnxruntime numpy` and `cargo build --release`:

    python3 bench/mobilenet_stages.py [--threads 1 2] [--stages B_f2-3 ...]

ORT's own per-node profile adds a few microseconds to every node, and ORT
runs three nodes per inverted residual block where nnc runs two steps, so
comparing the two profiles layer by layer flatters nnc on small layers.
This script instead cuts MobileNetV2 (the same graph and weights layout as
compare_ort.py's, seeded) into stages, builds each as its own ONNX model,
and times both engines end to end on it, in alternating turns:

    A_f0-1     the stem and features.1 (224x224 input, 112x112 maps)
    B_f2-3     features.2-3   (112x112 -> 56x56)
    C_f4-6     features.4-6   (56x56 -> 28x28)
    D_f7-10    features.7-10  (28x28 -> 14x14)
    E_f11-13   features.11-13 (14x14)
    F_f14-17   features.14-17 (14x14 -> 7x7)
    G_f18-cls  features.18, pooling and the classifier

Each stage's time includes copying its input in and its output out, in
both engines. Medians; the machine is shared, so compare ratios from one
run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import onnx_fixtures  # noqa: E402
from onnx_fixtures import Graph, rand, save  # noqa: E402

NNC = os.path.join(ROOT, "target", "release", "nnc")

# (expansion t, output channels c, repeats n, first stride s), as torchvision.
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]

# Name: (first block, last block, with the stem, with the head).
STAGES = {
    "A_f0-1": (1, 1, True, False),
    "B_f2-3": (2, 3, False, False),
    "C_f4-6": (4, 6, False, False),
    "D_f7-10": (7, 10, False, False),
    "E_f11-13": (11, 13, False, False),
    "F_f14-17": (14, 17, False, False),
    "G_f18-cls": (None, None, False, True),
}


def blocks():
    """Every inverted residual block: (index, in channels, t, out channels,
    stride, input size)."""
    out, c, i, size = [], 32, 1, 112
    for t, width, n, s in SETTINGS:
        for k in range(n):
            stride = s if k == 0 else 1
            out.append((i, c, t, width, stride, size))
            size //= stride
            c, i = width, i + 1
    return out


def build(work, name, first, last, stem, head):
    """Writes stage `name` as work/name/model.onnx with input_0.npy."""
    g = Graph(11)

    def cbr(x, prefix, c_in, c_out, k, stride, group=1):
        conv = g.conv(x, f"{prefix}.0", c_in, c_out, k, stride, k // 2, group, bias=False)
        return g.relu6(g.bn(conv, f"{prefix}.1", c_out))

    chosen = [b for b in blocks() if first is not None and first <= b[0] <= last]
    if stem:
        shape = [1, 3, 224, 224]
        y = cbr(g.input("input", shape), "features.0", 3, 32, 3, 2)
    elif chosen:
        _, c_in, _, _, _, size = chosen[0]
        shape = [1, c_in, size, size]
        y = g.input("input", shape)
    else:
        shape = [1, 320, 7, 7]
        y = g.input("input", shape)
    for i, c_in, t, width, stride, _ in chosen:
        hidden, p, h, j = c_in * t, f"features.{i}.conv", y, 0
        if t != 1:
            h, j = cbr(h, f"{p}.{j}", c_in, hidden, 1, 1), 1
        h = cbr(h, f"{p}.{j}", hidden, hidden, 3, stride, group=hidden)
        h = g.bn(g.conv(h, f"{p}.{j + 1}", hidden, width, 1, bias=False), f"{p}.{j + 2}", width)
        y = g.node("Add", [y, h]) if stride == 1 and c_in == width else h
    if head:
        y = cbr(y, "features.18", 320, 1280, 1, 1)
        y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
        y = g.linear(y, "classifier.1", 1280, 1000)
    g.output(y)
    onnx_fixtures.ROOT = work
    save(name, g.model(17, name), [rand(g.rng, shape)])
    return os.path.join(work, name)


def time_stage(path, threads, rounds, seconds):
    """Alternating turns of nnc and ORT; returns both engines' times (ms)."""
    x = np.load(os.path.join(path, "input_0.npy"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    ort_times, nnc_times = [], []
    for _ in range(rounds):
        out = subprocess.run(
            [NNC, "bench", os.path.join(path, "model.onnx"), "--threads", str(threads), "--json",
             "--seconds", str(seconds / rounds)],
            check=True, capture_output=True, text=True)
        nnc_times += json.loads(out.stdout)["times_ms"]
        session = ort.InferenceSession(os.path.join(path, "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(5):
            session.run(None, feed)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            t = time.perf_counter()
            session.run(None, feed)
            ort_times.append((time.perf_counter() - t) * 1e3)
        del session
    return ort_times, nnc_times


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per engine")
    parser.add_argument("--rounds", type=int, default=20, help="turns each engine takes")
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}")
    print(f"{'stage':10s} {'threads':>7s} {'ORT':>9s} {'nnc':>9s} {'nnc/ORT':>8s} {'nnc-ORT':>9s}")
    with tempfile.TemporaryDirectory() as work:
        for name in args.stages:
            path = build(work, name, *STAGES[name])
            for threads in args.threads:
                ort_times, nnc_times = time_stage(path, threads, args.rounds, args.seconds)
                o, n = np.median(ort_times), np.median(nnc_times)
                print(f"{name:10s} {threads:7d} {o:7.3f}ms {n:7.3f}ms {n / o:8.2f} {n - o:+8.3f}ms",
                      flush=True)


if __name__ == "__main__":
    main()
