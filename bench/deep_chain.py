#!/usr/bin/env python3
"""How compile time grows with a model's depth: chains of conv + batch norm
+ relu layers (8 channels, 16x16), each compiled with `nnc compile`, whose
phases (passes, memory plan, kernels, codegen) are printed per depth.

    cargo build --release
    python3 bench/deep_chain.py                      # 100 to 5000 layers
    python3 bench/deep_chain.py --layers 100 1000 --runs 3

Each depth is compiled `--runs` times and the median of each phase is
shown, with its time per layer: a phase linear in the graph's size keeps
that column flat.
"""

import argparse
import os
import re
import statistics
import subprocess
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PHASES = ["passes", "plan", "kernels", "codegen", "link"]


def chain(layers):
    """The `.nn` text of a chain of `layers` conv + batch norm + relu."""
    lines = ["model deep {", "    input x: f32[1, 8, 16, 16]"]
    prev = "x"
    for i in range(layers):
        lines += [f"    c{i} = conv2d({prev}, out=8, kernel=3, pad=1, bias=false)",
                  f"    b{i} = batch_norm(c{i})",
                  f"    r{i} = relu(b{i})"]
        prev = f"r{i}"
    lines += [f"    output {prev}", "}"]
    return "\n".join(lines) + "\n"


def phases(nnc, path):
    """The milliseconds of each compile phase `nnc compile` reports."""
    out = subprocess.run([nnc, "compile", path], capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    return {p: float(re.search(rf"{p} ([0-9.]+) ms", text).group(1)) for p in PHASES}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[100, 200, 400, 800, 1600, 3200, 5000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nnc", default=os.path.join(ROOT, "target", "release", "nnc"))
    args = parser.parse_args()
    print("| layers | " + " | ".join(f"{p} ms" for p in PHASES) + " | passes us/layer | plan us/layer | codegen us/layer |")
    print("|---" * (len(PHASES) + 4) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.layers:
            path = os.path.join(tmp, f"deep{n}.nn")
            with open(path, "w") as f:
                f.write(chain(n))
            runs = [phases(args.nnc, path) for _ in range(args.runs)]
            median = {p: statistics.median(r[p] for r in runs) for p in PHASES}
            per = lambda p: f"{1000 * median[p] / n:.1f}"
            print(f"| {n} | " + " | ".join(f"{median[p]:.1f}" for p in PHASES)
                  + f" | {per('passes')} | {per('plan')} | {per('codegen')} |", flush=True)


if __name__ == "__main__":
    main()
