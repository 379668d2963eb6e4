#!/usr/bin/env python3
"""Loading: from an ONNX file to a model ready to run, nnc against ONNX
Runtime's session creation, with each process's peak memory.

Run by hand (not by CI) after `cargo build --release` and
`pip install onnx onnxruntime numpy`:

    python3 bench/loading.py                       # VGG-19, ResNet-50, ResNeXt-50
    python3 bench/loading.py --models zoo_vgg19 --rounds 9

The models are bench/suite.py's (built into its cache on first use). Per
round, alternating, each in a fresh process:
- nnc: `nnc compile MODEL.onnx --threads T`, which imports the model
  (decoding its weights), compiles it (packing the weights for the
  kernels) and reports `from source to ready to run`; the process's wall
  time adds starting and exiting.
- ORT: a Python process creates an `InferenceSession` (all graph
  optimisations, `intra_op_num_threads` T) and reports how long that took.
Peak memory is each process's maximum resident set (`wait4`; Linux counts
the parent's resident set at exec into it, so this script keeps its own
small: about 70 MiB). ORT's includes the Python interpreter and the
onnxruntime module, whose resident set before the session is reported as
its baseline.

Medians over the rounds; the machine's other tenants make single runs
noisy.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402

ORT_CHILD = r"""
import resource, sys, time
import onnxruntime as ort
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
so = ort.SessionOptions()
so.intra_op_num_threads = int(sys.argv[2])
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
t = time.perf_counter()
ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
print(f"{1e3 * (time.perf_counter() - t):.1f} {base}")
"""


def run_measured(cmd):
    """Runs `cmd` and returns (stdout, wall seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return out, wall, usage.ru_maxrss / 1024


WEIGHTS_CHILD = r"""
import sys, onnx
model = onnx.load(sys.argv[1])
total = 0
for t in model.graph.initializer:
    n = 1
    for d in t.dims:
        n *= d
    total += 4 * n
print(total)
"""


def weight_mib(path):
    """The model's weights as f32, counted in a child process: a process's
    peak RSS starts from its parent's at exec, so this one stays small."""
    out = subprocess.run([sys.executable, "-c", WEIGHTS_CHILD, path], capture_output=True,
                         text=True, check=True).stdout
    return int(out) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["zoo_vgg19", "zoo_resnet50", "resnext50"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None, help="bench/suite.py's model cache")
    args = parser.parse_args()
    cache = args.cache or os.path.join(os.environ.get("TMPDIR", "/tmp"), "nnc-suite",
                                       suite.cache_key())
    print(f"machine: {suite.machine()}; nnc {suite.nnc_version()}, onnxruntime "
          f"{suite.ort.__version__}; {args.rounds} rounds, {args.threads} threads; medians")
    print("| model | weights | nnc: file to ready | nnc process | nnc peak RSS "
          "| ORT session creation | ORT peak RSS (baseline) | time nnc/ORT |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        path = os.path.join(suite.build(name, cache), "model.onnx")
        nnc, ort_rows = [], []
        for _ in range(args.rounds):
            out, wall, rss = run_measured([suite.NNC, "compile", path,
                                           "--threads", str(args.threads)])
            ready = re.search(r"from source to ready to run: ([0-9.]+) ms", out)
            if not ready:
                raise SystemExit(f"nnc compile printed no time:\n{out}")
            nnc.append((float(ready.group(1)), 1e3 * wall, rss))
            out, _, rss = run_measured([sys.executable, "-c", ORT_CHILD, path,
                                        str(args.threads)])
            session, base = out.split()
            ort_rows.append((float(session), rss, int(base) / 1024))
        med = lambda rows, i: statistics.median(r[i] for r in rows)
        print(f"| {name} | {weight_mib(path):.0f} MiB | {med(nnc, 0):.0f} ms | "
              f"{med(nnc, 1):.0f} ms | {med(nnc, 2):.0f} MiB | {med(ort_rows, 0):.0f} ms | "
              f"{med(ort_rows, 1):.0f} MiB ({med(ort_rows, 2):.0f}) | "
              f"{med(nnc, 1) / med(ort_rows, 0):.2f} |", flush=True)


if __name__ == "__main__":
    main()
