#!/usr/bin/env python3
"""The model suite: nnc against ONNX Runtime on 24 models, checked, then
timed side by side.

Run by hand (not by CI) after `cargo build --release` and
`pip install onnx onnxruntime numpy`:

    python3 bench/suite.py                        # all models, 1 and 2 threads; rewrites the
                                                  # table in bench/README.md and bench/profiles/suite/
    python3 bench/suite.py --models unet crnn --threads 1 --seconds 1 --no-write

Models (batch 1, seeded random weights, each built once as an ONNX file so
that both engines run exactly the same graph; kept in a cache directory,
`--cache`, keyed by the builders' source):
- the five peer models of bench/compare_ort.py (its builders);
- the nine ONNX Model Zoo classics shipped in the onnx wheel
  (`onnx/backend/test/data/light/`), their `ConstantOfShape` weights
  replaced by seeded random initialisers and the logits before the final
  Softmax added as an output (scripts/zoo_check.py's `with_random_weights`
  and `with_logits`);
- ten published architectures built with `onnx.helper` in
  bench/architectures.py.

Per model:
1. Check: ONNX Runtime (all graph optimisations) and `nnc run` at every
   `--threads` count on the same seeded input; every output must be within
   1e-4 of ORT's relative to max(1, max |ORT|). The largest such error is
   reported. A model that nnc cannot import or run, or whose outputs differ,
   is reported in the table and the run goes on.
2. Timing, as bench/compare_ort.py does: per thread count, `--rounds` turns
   alternating between `nnc bench --json` (first, with no ORT session
   alive) and an ORT session with all graph optimisations and
   `intra_op_num_threads`, each turn a share of `--seconds` after
   `--warmup` runs; each engine's runs pooled; medians, 10th-90th
   percentiles and the ratio of the medians nnc/ORT (below 1: nnc is
   faster), and the geometric mean of the ratios over the suite. With
   several threads, the range of the core round trips `nnc bench` measured
   before and after its turns: about 60 ns where the two threads' cores
   share an L3, hundreds across dies, which moves both engines' times (see
   bench/README.md, "Two threads on two dies").
3. `nnc profile --threads 1` written to bench/profiles/suite/<model>.txt.

The machine's other tenants make timings noisy: compare ratios from one
run, not absolute times across runs.
"""

import argparse
import datetime
import hashlib
import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
import onnxruntime as ort

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(BENCH, ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import architectures  # noqa: E402
import compare_ort  # noqa: E402
import zoo_check  # noqa: E402

NNC = os.path.join(ROOT, "target", "release", "nnc")
README = os.path.join(BENCH, "README.md")
PROFILES = os.path.join(BENCH, "profiles", "suite")
BEGIN = "<!-- suite:begin: written by bench/suite.py, replaced on every run -->"
END = "<!-- suite:end -->"
TOL = zoo_check.TOL
# The Caffe2 exports carry an unused initializer that ORT warns about on
# every session.
ort.set_default_logger_severity(3)

# Suite name -> file under onnx/backend/test/data/light/.
ZOO = {
    "zoo_alexnet": "bvlc_alexnet", "zoo_googlenet": "inception_v1",
    "zoo_inception_v2": "inception_v2", "zoo_resnet50": "resnet50",
    "zoo_shufflenet": "shufflenet", "zoo_squeezenet": "squeezenet", "zoo_vgg19": "vgg19",
    "zoo_zfnet512": "zfnet512", "zoo_densenet121": "densenet121",
}
PEERS = ["resnet18", "mobilenet_v2", "vgg_cifar", "lstm", "lstm2"]
MODELS = PEERS + list(ZOO) + list(architectures.BUILDERS)


def what(name):
    """Where a model comes from, for the table."""
    if name in PEERS:
        return "compare_ort.py"
    if name in ZOO:
        return "Model Zoo"
    return "architectures.py"


# ------------------------------------------------------------- building

def build_zoo(name, path):
    """A Model Zoo classic with seeded weights, its logits as an output,
    and a seeded input, seeded as scripts/zoo_check.py seeds them."""
    file = ZOO[name]
    model = onnx.load(os.path.join(zoo_check.DATA, "light", f"light_{file}.onnx"))
    model = zoo_check.with_logits(zoo_check.with_random_weights(model, zlib.crc32(file.encode())))
    onnx.save_model(model, os.path.join(path, "model.onnx"))
    rng = np.random.default_rng(zlib.crc32(file.encode()) + 1)
    return [rng.uniform(-1, 1, s).astype(np.float32) for _, s in zoo_check.data_inputs(model)]


def cache_key():
    """A digest of every source that decides what the models are."""
    digest = hashlib.sha256(onnx.__version__.encode())
    for module in (architectures, compare_ort, zoo_check, compare_ort.onnx_fixtures):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    digest.update(inspect.getsource(build_zoo).encode())
    return digest.hexdigest()[:12]


def build(name, cache):
    """The directory holding `name`'s model.onnx and input_<i>.npy, built
    unless the cache has it."""
    path = os.path.join(cache, name)
    done = os.path.join(path, "built")
    if os.path.exists(done):
        return path
    shutil.rmtree(path, ignore_errors=True)
    if name in PEERS:
        compare_ort.build(name, cache)
    else:
        os.makedirs(path)
        if name in ZOO:
            inputs = build_zoo(name, path)
        else:
            model, inputs = architectures.BUILDERS[name]()
            onnx.save_model(model, os.path.join(path, "model.onnx"))
        for i, x in enumerate(inputs):
            np.save(os.path.join(path, f"input_{i}.npy"), x)
    open(done, "w").close()
    return path


def inputs_of(path):
    i, found = 0, []
    while os.path.exists(os.path.join(path, f"input_{i}.npy")):
        found.append(np.load(os.path.join(path, f"input_{i}.npy")))
        i += 1
    return found


# ------------------------------------------------------------- checking

def failure_text(failure):
    """One line for the table: the import error's first lines, or the
    failing step and its first line."""
    if any("cannot import" in l or zoo_check.NODE_LINE.search(l) for l in failure.lines):
        return "import fails: " + zoo_check.import_error(failure)
    return f"{failure.stage} fails: {failure.lines[0].strip()}"


def check(path, threads, timeout):
    """ORT's outputs against nnc's at each thread count: {threads: largest
    relative error}, or raises zoo_check.Failure."""
    session = compare_ort.ort_session(path, 1)
    inputs = inputs_of(path)
    expected = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})
    del session
    nnc = zoo_check.Nnc(NNC, timeout)
    found = {}
    with tempfile.TemporaryDirectory(prefix="nnc-suite-") as tmp:
        for t in threads:
            actual = nnc.run(os.path.join(path, "model.onnx"), inputs, len(expected), t, tmp)
            found[t] = max(zoo_check.errors(a, e)[1] for a, e in zip(actual, expected))
    return found


# --------------------------------------------------------------- timing

def quantile(sorted_times, q):
    return sorted_times[min(len(sorted_times) - 1, int(round(q * (len(sorted_times) - 1))))]


def time_both(path, threads, args):
    """Alternating turns, runs pooled per engine (see bench/compare_ort.py):
    {engine: (median, p10, p90, runs)} in ms."""
    x = inputs_of(path)[0]
    share = args.seconds / args.rounds
    nnc_times, ort_times, cores = [], [], []
    for _ in range(args.rounds):
        bench = compare_ort.time_nnc(path, threads, args.warmup, share, args.runs)
        nnc_times += bench["times_ms"]
        cores += bench.get("core_round_trip_ns", [])
        session = compare_ort.ort_session(path, threads)
        ort_times += compare_ort.time_ort(session, x, args.warmup, share, args.runs)
        del session
    figures = {}
    for engine, times in (("nnc", nnc_times), ("ort", ort_times)):
        times.sort()
        figures[engine] = (quantile(times, 0.5), quantile(times, 0.1), quantile(times, 0.9),
                           len(times))
    figures["cores"] = (min(cores), max(cores)) if cores else None
    return figures


def cores_cell(f):
    """The range of `nnc bench`'s core round trips (ns) over the rounds:
    about 60 where the threads' cores share an L3, hundreds across dies."""
    lo_hi = f.get("cores") if f else None
    return f"{lo_hi[0]:.0f}-{lo_hi[1]:.0f}" if lo_hi else ""


def profile(path, runs, timeout):
    """`nnc profile` at one thread, its text."""
    done = subprocess.run([NNC, "profile", os.path.join(path, "model.onnx"), "--threads", "1",
                           "--runs", str(runs)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise zoo_check.Failure("profile", done.stderr or done.stdout)
    return done.stdout


# A layer of `nnc profile`'s table: index, name (with its source line),
# op, milliseconds, share.
LAYER = re.compile(r"^\d+\s+.*?\s+\S+\s+(\d+\.\d+)\s+\d+\.\d+%")


def top_layers(text, n):
    """The `n` layers of a profile that take the longest, slowest first."""
    layers = [(float(m[1]), line.rstrip()) for line in text.splitlines()
              for m in [LAYER.match(line)] if m]
    return [line for _, line in sorted(layers, key=lambda l: -l[0])[:n]]


# -------------------------------------------------------------- reporting

def machine():
    """The CPU's model name, core count and whether it has AVX-512F and FMA."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    field = lambda key: next((l.split(":", 1)[1].strip() for l in out.splitlines()
                              if l.startswith(key + ":")), "?")
    flags = field("Flags").split()
    yes = lambda f: "yes" if f in flags else "no"
    return (f"{field('Model name')} ({os.cpu_count()} CPUs; avx512f: {yes('avx512f')}, "
            f"FMA: {yes('fma')})")


def nnc_version():
    version = subprocess.run([NNC, "--version"], capture_output=True, text=True).stdout.strip()
    git = lambda *a: subprocess.run(["git", "-C", ROOT, *a], capture_output=True,
                                    text=True).stdout.strip()
    dirty = "+changes" if git("status", "--porcelain", "--", "compiler", "runtime",
                              "frontend") else ""
    return f"{version.removeprefix('nnc ')} (commit {git('rev-parse', '--short', 'HEAD')}{dirty})"


def ms(f):
    return f"{f[0]:.3g} ({f[1]:.3g}-{f[2]:.3g})"


def ratio_cell(r):
    return f"**{r:.2f}**" if r > 1.0 else f"{r:.2f}"


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def table(rows, args):
    """The markdown block: table, geometric means, failures, and the top
    layers of the models above 0.9."""
    threads = args.threads
    heads = ["model", "from", "max rel. error (" + " / ".join(f"{t}t" for t in threads) + ")"]
    for t in threads:
        heads += [f"{t}t ORT ms (p10-p90)", f"{t}t nnc ms (p10-p90)", f"{t}t nnc/ORT"]
        if t > 1:
            heads.append(f"{t}t cores ns apart")
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        err = " / ".join(f"{r['errors'][t]:.1e}" for t in threads if t in r["errors"])
        if r["problem"]:
            err = (err + "; " if err else "") + zoo_check.cell(r["problem"], 200)
        cells = [r["model"], what(r["model"]), err]
        for t in threads:
            f = r["timing"].get(t)
            cells += [ms(f["ort"]), ms(f["nnc"]), ratio_cell(f["ratio"])] if f else ["", "", ""]
            if t > 1:
                cells.append(cores_cell(f))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    means = []
    for t in threads:
        ratios = [r["timing"][t]["ratio"] for r in rows if t in r["timing"]]
        means.append(f"{t} thread{'s' if t > 1 else ''}: **{geomean(ratios):.2f}** "
                     f"over {len(ratios)} models")
    lines.append("Geometric mean of nnc/ORT: " + "; ".join(means) + ".")
    if any(t > 1 for t in threads):
        lines.append("")
        lines.append("\"cores ns apart\": the round trip of a cache line between two threads, "
                     "measured by `nnc bench` before and after each of its turns (range over the "
                     "rounds): about 60 ns where the two cores share an L3, hundreds where they "
                     "sit on different dies, which on a virtual machine the host can change at "
                     "any time and which moves both engines' two-thread times (see "
                     "`bench/README.md`, \"Two threads on two dies\").")
    slow = [r for r in rows if any(f["ratio"] > 0.9 for f in r["timing"].values()) and r["top"]]
    if slow:
        lines += ["", "Where nnc spends its time on the models above 0.9 (the five slowest "
                  "layers of `nnc profile --threads 1`, from `bench/profiles/suite/`):", ""]
        for r in slow:
            lines += [f"- {r['model']}:", "", "  ```"] + [f"  {l}" for l in r["top"]] + ["  ```"]
    return "\n".join(lines)


def write_readme(block):
    with open(README) as f:
        text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1]
    else:
        text += f"\n{BEGIN}\n{block}\n{END}\n"
    with open(README, "w") as f:
        f.write(text)


# ------------------------------------------------------------------ main

def run_model(name, args):
    row = {"model": name, "errors": {}, "problem": "", "timing": {}, "top": []}
    path = build(name, args.cache)
    try:
        row["errors"] = check(path, args.threads, args.timeout)
    except zoo_check.Failure as f:
        row["problem"] = failure_text(f)
        return row
    worst = max(row["errors"].values())
    if worst > TOL:
        row["problem"] = f"MISMATCH: error above {TOL:g}"
    print(f"{name}: max rel. error " + ", ".join(f"{e:.1e} at {t}t" for t, e in
                                                 row["errors"].items()), flush=True)
    for t in args.threads:
        try:
            f = time_both(path, t, args)
        except subprocess.CalledProcessError as e:
            row["problem"] += f"; nnc bench fails at {t}t: " + (e.stderr or "").strip()[:200]
            continue
        f["ratio"] = f["nnc"][0] / f["ort"][0]
        row["timing"][t] = f
        print(f"{name:<20}{t:>3}t  ORT {ms(f['ort']):<24} nnc {ms(f['nnc']):<24} "
              f"nnc/ORT {f['ratio']:.2f}" + (f"  cores {cores_cell(f)} ns apart" if t > 1 else ""),
              flush=True)
    try:
        text = profile(path, args.profile_runs, args.timeout)
        row["top"] = top_layers(text, 5)
        if args.write:
            os.makedirs(PROFILES, exist_ok=True)
            with open(os.path.join(PROFILES, f"{name}.txt"), "w") as f:
                f.write(text)
    except (zoo_check.Failure, subprocess.TimeoutExpired) as e:
        row["problem"] += f"; profile fails: {e}"
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, metavar="NAME",
                        help="only these models (default: all of " + ", ".join(MODELS) + ")")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timed seconds per engine, model and thread count (default 3)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="turns each engine takes, its runs pooled (default 10; each turn "
                             "recompiles nnc's model and recreates ORT's session, seconds for "
                             "VGG-19)")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per turn at least")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per turn")
    parser.add_argument("--profile-runs", type=int, default=20)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per nnc command")
    parser.add_argument("--cache", help="where to keep the built models (default: "
                                        "<tmp>/nnc-suite/<digest of the builders>)")
    parser.add_argument("--note", default="", help="a sentence for the README, such as the "
                                                   "machine's load at the time")
    parser.add_argument("--no-write", dest="write", action="store_false",
                        help="print only: leave bench/README.md and bench/profiles/ alone")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        sys.exit(f"unknown models {unknown}; the suite has {', '.join(MODELS)}")
    if not os.path.exists(NNC):
        sys.exit(f"{NNC} not found: run `cargo build --release` first")
    args.cache = args.cache or os.path.join(tempfile.gettempdir(), "nnc-suite", cache_key())
    os.makedirs(args.cache, exist_ok=True)

    started = datetime.datetime.now(datetime.timezone.utc)
    start_load = os.getloadavg()[0]
    header = (f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine()}, ONNX Runtime "
              f"{ort.__version__}, nnc {nnc_version()}; `--seconds {args.seconds:g} --rounds "
              f"{args.rounds}`, times in ms, error relative to max(1, max \\|ORT\\|).")
    print(header + f"\nmodels in {args.cache}", flush=True)
    rows = []
    for name in args.models:
        try:
            rows.append(run_model(name, args))
        except Exception as e:  # a broken model must not stop the run
            rows.append({"model": name, "errors": {}, "problem": f"suite error: {e!r}",
                         "timing": {}, "top": []})
        if rows[-1]["problem"]:
            print(f"{name}: {rows[-1]['problem']}", flush=True)
    load = f"Load average (1 min) {start_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
    block = header + f" {load}" + (f" {args.note}" if args.note else "") + "\n\n" + table(rows, args)
    print("\n" + block)
    if args.write:
        write_readme(block)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
