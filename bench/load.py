#!/usr/bin/env python3
"""nnc under load: alone, two processes at once, and more threads than cores.

Run by hand (not by CI) after `cargo build --release`:

    python3 bench/load.py [--model models/resnet18.nn] [--old /tmp/old/target/release/nnc]
                          [--seconds 4] [--rounds 4] [--ort]

Situations (`--situations`, default the last four):
- `solo1`, `solo2`: one `nnc bench --threads 1` (or 2) process alone;
- `pair2`: two `nnc bench --threads 2` processes started together, their
  runs pooled;
- `solo4`, `solo8`: one process with `--threads 4` (or 8), on however many
  cores the machine has.

Each situation is run `--rounds` times for `--seconds / --rounds` each, and
with `--old` the two binaries take turns in every round (the order flipping
from round to round), so a burst of load from the machine's other tenants
lands on both. The table gives each binary's median latency, the 10th-90th
percentile spread, and the ratio of the median to the same binary's solo
2-thread median. Each `nnc bench` compiles the model first; the two
processes of a pair compile at the same time, so their timed runs overlap
but for a few tens of milliseconds at either end.

With `--ort` (and onnxruntime importable), ONNX Runtime runs the same
situations on the same architecture, built as ONNX by
`bench/compare_ort.py`'s helpers (resnet18 and mobilenet_v2 only): a pair is
two processes that start timing together. The machine's model name and load
average are printed with the table; on a shared machine compare ratios
from one run, not absolute times across runs.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NNC = os.path.join(ROOT, "target", "release", "nnc")
SITUATIONS = {
    "solo1": (1, 1, "alone, 1 thread"),
    "solo2": (1, 2, "alone, 2 threads"),
    "pair2": (2, 2, "two processes at once, 2 threads each"),
    "solo4": (1, 4, "alone, `--threads 4`"),
    "solo8": (1, 8, "alone, `--threads 8`"),
}


def cpu_name():
    """The CPU's model name, as `lscpu` prints it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def quantile(sorted_times, q):
    if not sorted_times:
        return float("nan")
    return sorted_times[min(len(sorted_times) - 1, int(round(q * (len(sorted_times) - 1))))]


def nnc_command(binary, model, threads, seconds, warmup):
    return [binary, "bench", model, "--threads", str(threads), "--json", "--warmup", str(warmup),
            "--runs", "5", "--seconds", str(seconds)]


def time_nnc(binary, model, processes, threads, seconds, warmup):
    """Starts `processes` `nnc bench` processes at once; returns all their
    timed runs' latencies and the thread count they report."""
    procs = [subprocess.Popen(nnc_command(binary, model, threads, seconds, warmup),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    times, reported = [], set()
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"{binary} failed:\n{err}")
        figures = json.loads(out)
        times += figures["times_ms"]
        reported.add(figures["threads"])
    return times, sorted(reported)


def ort_worker(path, threads, warmup, seconds, barrier, results):
    """One ORT process of a situation: warm up, wait for the others, time."""
    import numpy as np
    import compare_ort

    session = compare_ort.ort_session(path, threads)
    x = np.load(os.path.join(path, "input_0.npy"))
    compare_ort.time_ort(session, x, warmup, 0)
    barrier.wait()
    results.put(compare_ort.time_ort(session, x, 0, seconds))


def time_ort(path, processes, threads, seconds, warmup):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=ort_worker, args=(path, threads, warmup, seconds, barrier, results))
             for _ in range(processes)]
    for p in procs:
        p.start()
    times = []
    for _ in procs:
        times += results.get()
    for p in procs:
        p.join()
    return times, [threads]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnc", default=NNC, help="the nnc binary (default: target/release/nnc)")
    parser.add_argument("--old", help="a second nnc binary to run side by side (say, a build of "
                                      "the previous commit)")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "resnet18.nn"))
    parser.add_argument("--situations", nargs="+", choices=list(SITUATIONS),
                        default=["solo2", "pair2", "solo4", "solo8"])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="timed seconds per binary and situation, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--ort", action="store_true",
                        help="also time ONNX Runtime on the same architecture")
    parser.add_argument("--work", help="where to build the ONNX model for --ort")
    parser.add_argument("--json", help="also write every latency to this file")
    args = parser.parse_args()

    engines = []
    if args.old:
        engines.append(("nnc (old)", args.old))
    engines.append(("nnc (new)" if args.old else "nnc", args.nnc))
    for _, binary in engines:
        if not os.path.exists(binary):
            sys.exit(f"{binary} not found: run `cargo build --release` first")
    ort_path = None
    if args.ort:
        name = os.path.splitext(os.path.basename(args.model))[0]
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import compare_ort
        except ImportError as e:
            sys.exit(f"--ort needs onnxruntime, onnx and numpy: {e}")
        if name not in ("resnet18", "mobilenet_v2"):
            sys.exit("--ort knows resnet18 and mobilenet_v2")
        work = args.work or tempfile.mkdtemp(prefix="nnc-load-")
        ort_path = compare_ort.build(name, work)
        engines.append(("ORT", None))

    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} CPUs; {os.path.basename(args.model)}; "
          f"load average {load_average()} at the start", flush=True)
    share = args.seconds / args.rounds
    times = {(e, s): [] for e, _ in engines for s in args.situations}
    reported = {}
    for r in range(args.rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        for situation in args.situations:
            processes, threads, _ = SITUATIONS[situation]
            for engine, binary in order:
                if binary is None:
                    t, rep = time_ort(ort_path, processes, threads, share, args.warmup)
                else:
                    t, rep = time_nnc(binary, args.model, processes, threads, share, args.warmup)
                times[engine, situation] += t
                reported[engine, situation] = rep
        print(f"round {r + 1}/{args.rounds} done, load average {load_average()}", file=sys.stderr,
              flush=True)

    print(f"load average {load_average()} at the end\n")
    print("| situation | engine | threads run | median ms | p10-p90 ms | runs | ratio to solo 2 threads |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for situation in args.situations:
        for engine, _ in engines:
            t = sorted(times[engine, situation])
            base = sorted(times.get((engine, "solo2"), []))
            median = quantile(t, 0.5)
            ratio = median / quantile(base, 0.5) if base else float("nan")
            row = {"situation": situation, "engine": engine,
                   "threads": reported[engine, situation], "median_ms": median,
                   "p10_ms": quantile(t, 0.1), "p90_ms": quantile(t, 0.9), "runs": len(t),
                   "ratio_to_solo2": ratio, "times_ms": t}
            rows.append(row)
            threads = "/".join(str(n) for n in row["threads"])
            print(f"| {SITUATIONS[situation][2]} | {engine} | {threads} | {median:.2f} | "
                  f"{row['p10_ms']:.2f}-{row['p90_ms']:.2f} | {len(t)} | {ratio:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "model": args.model, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
