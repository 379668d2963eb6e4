#!/usr/bin/env python3
"""Bundles against the JIT, model by model: size, time to the first result
and latency. Run by hand (not by CI) after `cargo build --release`:

    python3 bench/bundle.py [--threads 1] [--rounds 5] [--runs 50] [MODEL.nn ...]

For each model (default: every `models/*.nn`) it makes a bundle with the
release `nnc compile --emit=bundle`, links `bench/bundle_bench.c` with it
by the bundle's README line, and then, `--rounds` times, alternating:
- the time from process start to the first result: the bundle program
  opening the model and running it once, against `nnc run MODEL` (which
  seeds the weights, compiles and runs once), each a whole process timed
  from spawn to exit;
- the latency: `--runs` runs in one bundle process against `nnc bench
  --runs` (the JIT), same threads.
Prints a Markdown table of medians (p10-p90 over all runs for latency)
and the CPU's name; on a shared machine compare the ratios within one
run, and the p10 ratio (the least disturbed runs) as well as the median's.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
NNC = ROOT / "target" / "release" / "nnc"


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1e3


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))]


def bundle(model, work, threads):
    name = model.stem
    out = work / name
    subprocess.run(
        [NNC, "compile", model, "--emit=bundle", "-o", out, "--prefix", name,
         "--threads", str(threads)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exe = work / f"{name}_bench"
    objects = [str(p) for p in out.glob("*.o")]
    subprocess.run(
        ["cc", "-O2", str(ROOT / "bench" / "bundle_bench.c"), "-I", str(out), *objects,
         str(out / "libnnc_runtime.a"), "-lpthread", "-ldl", "-lm", f"-DNNC_OPEN={name}_model_open",
         "-o", str(exe)],
        check=True)
    size = sum(p.stat().st_size for p in out.glob("*.o"))
    return exe, size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", type=pathlib.Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    if not NNC.is_file():
        sys.exit(f"{NNC} is missing: run `cargo build --release` first")
    models = args.models or sorted((ROOT / "models").glob("*.nn"))
    t = str(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for model in models:
            exe, size = bundle(model, work, args.threads)
            first_b, first_j, lat_b, lat_j = [], [], [], []
            for r in range(args.rounds):
                for side in (("b", "j") if r % 2 == 0 else ("j", "b")):
                    if side == "b":
                        first_b.append(wall([exe, t, "0"]))
                        out = subprocess.run([exe, t, str(args.runs)], check=True,
                                             capture_output=True, text=True).stdout
                        lat_b += json.loads(out)["times_ms"]
                    else:
                        first_j.append(wall([NNC, "run", model, "--threads", t]))
                        out = subprocess.run(
                            [NNC, "bench", model, "--threads", t, "--runs", str(args.runs),
                             "--warmup", "1", "--seconds", "0", "--json"],
                            check=True, capture_output=True, text=True).stdout
                        lat_j += json.loads(out)["times_ms"]
            rows.append((model.stem, size, first_b, first_j, lat_b, lat_j))
            print(f"{model.stem}: done", file=sys.stderr)
    print(f"CPU: {cpu_name()}; {args.threads} thread(s); {args.rounds} rounds, "
          f"{args.runs} runs per latency sample; load average {os.getloadavg()[0]:.2f}\n")
    print("| model | bundle object | start to first result: bundle / `nnc run` | latency: bundle | JIT | bundle/JIT: median (p10) |")
    print("|---|---|---|---|---|---|")
    for name, size, fb, fj, lb, lj in rows:
        mb, mj = statistics.median(lb), statistics.median(lj)
        print(f"| {name} | {size / 2**20:.1f} MiB | {statistics.median(fb):.0f} / "
              f"{statistics.median(fj):.0f} ms | {mb:.3f} ms ({quantile(lb, .1):.3f}-{quantile(lb, .9):.3f}) "
              f"| {mj:.3f} ms ({quantile(lj, .1):.3f}-{quantile(lj, .9):.3f}) | {mb / mj:.3f} "
              f"({quantile(lb, .1) / quantile(lj, .1):.3f}) |")


if __name__ == "__main__":
    main()
