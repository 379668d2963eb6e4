#!/usr/bin/env python3
"""nnc against ONNX Runtime on the same models with the same weights.

Run by hand (not by CI) after `pip install onnx onnxruntime numpy` and
`cargo build --release`:

    python3 bench/compare_ort.py [--threads 1 2] [--seconds 3] [--models resnet18 ...]

Each model is built once as ONNX with the onnx package and seeded weights
(the builders of scripts/onnx_fixtures.py), so both engines run exactly the
same graph: ONNX Runtime loads the file with all graph optimizations on,
and nnc imports the same file (`nnc bench model.onnx`). Before timing, the
outputs of both on the same input are compared. Then, per model and thread
count, the two are timed one after the other in the same run: warm-up,
then repeated runs for at least `--seconds`, split into `--rounds` turns that
alternate between the engines (runs pooled per engine, so a burst of load
from other tenants hits both). The table gives each engine's
median latency with the 10th-90th percentile spread, and the ratio of the
medians nnc/ORT (below 1: nnc is faster). The machine is shared and noisy;
compare ratios from one run, not absolute times across runs.

Models: resnet18 and mobilenet_v2 (224x224, torchvision layouts, as
models/*.nn), vgg_cifar (models/vgg_cifar.nn), lstm (seq 32, input 64,
hidden 128, as models/lstm_seq.nn) and lstm2 (two layers, as
models/lstm2.nn); all batch 1.
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
from onnx_fixtures import Graph, rand, recurrent_weights  # noqa: E402

NNC = os.path.join(ROOT, "target", "release", "nnc")


def vgg_cifar(out):
    """models/vgg_cifar.nn: conv-bn-relu stacks and max pools, then a
    classifier with dropout."""
    g = Graph(20)
    x = g.input("input", [1, 3, 32, 32])
    y, c = x, 3
    for i, width in enumerate([64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]):
        if width == "M":
            y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
            continue
        y = g.relu(g.bn(g.conv(y, f"features.{i}.0", c, width, 3, pad=1), f"features.{i}.1", width))
        c = width
    y = g.node("Flatten", [y])
    y = g.relu(g.linear(y, "classifier.1", 512, 512))
    y = g.relu(g.linear(y, "classifier.4", 512, 512))
    g.output(g.linear(y, "classifier.6", 512, 10))
    return g.model(17, "vgg_cifar"), [rand(g.rng, [1, 3, 32, 32])]


def lstm(layers):
    """models/lstm_seq.nn (one layer) and models/lstm2.nn (two): LSTM over
    32 steps of 64 features, hidden 128, the last step to a linear."""
    g = Graph(21 + layers)
    seq, feat, hid = 32, 64, 128
    y = g.input("input", [seq, 1, feat])
    for layer in range(layers):
        ins = [y] + recurrent_weights(g, 4, 1, hid, feat if layer == 0 else hid)
        y = g.node("LSTM", ins, [f"l{layer}_y"], name=f"/lstm/LSTM_{layer}", hidden_size=hid)
        y = g.node("Squeeze", [y, g.init(g.name("axis"), np.array([1], np.int64))])
    last = g.node("Gather", [y, g.init("last", np.array(-1, np.int64))], axis=0)
    g.output(g.linear(last, "fc", hid, 10))
    return g.model(14, f"lstm{layers}"), [rand(g.rng, [seq, 1, feat])]


def build(name, work):
    """Writes `name`'s model.onnx and input_0.npy under `work`; returns the
    directory."""
    import onnx

    path = os.path.join(work, name)
    if name in ("resnet18", "mobilenet_v2"):
        # The fixtures script writes both full-size models with inputs.
        if not os.path.exists(path):
            onnx_fixtures.full_size(work)
        return path
    model, inputs = {"vgg_cifar": lambda: vgg_cifar(work), "lstm": lambda: lstm(1),
                     "lstm2": lambda: lstm(2)}[name]()
    os.makedirs(path, exist_ok=True)
    onnx.save_model(model, os.path.join(path, "model.onnx"))
    np.save(os.path.join(path, "input_0.npy"), inputs[0])
    return path


def ort_session(path, threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(os.path.join(path, "model.onnx"), options,
                                providers=["CPUExecutionProvider"])


def time_ort(session, x, warmup, seconds, runs=10):
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < runs:
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def time_nnc(path, threads, warmup, seconds, runs):
    out = subprocess.run(
        [NNC, "bench", os.path.join(path, "model.onnx"), "--threads", str(threads), "--json",
         "--warmup", str(warmup), "--runs", str(runs), "--seconds", str(seconds)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def check_outputs(path, session, x):
    """The largest difference between nnc's and ORT's outputs, relative to
    max(1, max |ORT|)."""
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "y.npy")
        subprocess.run([NNC, "run", os.path.join(path, "model.onnx"), "--input",
                        os.path.join(path, "input_0.npy"), "-o", out],
                       check=True, capture_output=True, text=True)
        found = np.load(out)
    scale = max(1.0, float(np.abs(expected).max()))
    return float(np.abs(found - expected).max()) / scale


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+",
                        default=["resnet18", "mobilenet_v2", "vgg_cifar", "lstm", "lstm2"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per engine")
    parser.add_argument("--rounds", type=int, default=20,
                        help="turns each engine takes, its runs pooled (default 20: on this "
                             "shared machine, 6 turns left a burst of load on one engine often "
                             "enough to move a ratio by 5%%)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--work", help="where to keep the built models (default: a temp dir)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if not os.path.exists(NNC):
        sys.exit(f"{NNC} not found: run `cargo build --release` first")

    work = args.work or tempfile.mkdtemp(prefix="nnc-bench-")
    print(f"onnxruntime {ort.__version__}; models in {work}")
    rows = []
    header = f"{'model':<14}{'threads':>8}{'ORT median':>12}{'(p10-p90)':>18}{'nnc median':>12}" \
             f"{'(p10-p90)':>18}{'nnc/ORT':>9}{'max err':>10}"
    print(header)
    for name in args.models:
        path = build(name, work)
        x = np.load(os.path.join(path, "input_0.npy"))
        err = check_outputs(path, ort_session(path, 1), x)
        for threads in args.threads:
            # The engines take turns, `--rounds` times, each for its share
            # of `--seconds`, and each engine's runs are pooled: a burst of
            # load from the machine's other tenants then lands on both
            # rather than on whichever ran at the time. nnc goes first in
            # each round, with no ORT session alive: ORT's worker threads
            # spin for a while after each run and would take a core from it.
            share = args.seconds / args.rounds
            nnc_times, ort_times = [], []
            for _ in range(args.rounds):
                nnc_times += time_nnc(path, threads, args.warmup, share, 10)["times_ms"]
                session = ort_session(path, threads)
                ort_times += time_ort(session, x, args.warmup, share)
                del session
            nnc_times.sort()
            ort_times.sort()
            q = lambda t, p: t[min(len(t) - 1, int(round(p * (len(t) - 1))))]
            row = {
                "model": name, "threads": threads,
                "ort_median_ms": q(ort_times, 0.5), "ort_p10_ms": q(ort_times, 0.1),
                "ort_p90_ms": q(ort_times, 0.9), "ort_runs": len(ort_times),
                "nnc_median_ms": q(nnc_times, 0.5), "nnc_p10_ms": q(nnc_times, 0.1),
                "nnc_p90_ms": q(nnc_times, 0.9), "nnc_runs": len(nnc_times),
                "ratio": q(nnc_times, 0.5) / q(ort_times, 0.5), "max_rel_err": err,
            }
            rows.append(row)
            print(f"{name:<14}{threads:>8}{row['ort_median_ms']:>10.3f}ms"
                  f"{row['ort_p10_ms']:>9.3f}-{row['ort_p90_ms']:<8.3f}"
                  f"{row['nnc_median_ms']:>10.3f}ms{row['nnc_p10_ms']:>9.3f}-{row['nnc_p90_ms']:<8.3f}"
                  f"{row['ratio']:>9.2f}{err:>10.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
