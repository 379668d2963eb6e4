#!/usr/bin/env python3
"""Checks nnc on the real models that the onnx wheel ships with its backend
tests, at their own opsets. Run by hand (not by CI):

    cargo build --release
    python3 scripts/zoo_check.py                   # everything, 1 and 2 threads
    python3 scripts/zoo_check.py --filter resnet --threads 2

Two parts, each printed as markdown:

1. `light/`: the nine Model Zoo classics (AlexNet ... ZFNet-512), Caffe2
   exports at opset 9 whose large weights are `ConstantOfShape` nodes. Each
   such node becomes an initializer of seeded random values (see
   `with_random_weights`), the logits before a final Softmax become an
   output too, ONNX Runtime runs the model on a seeded input, and `nnc run`
   runs it at every `--threads` count. A table gives per model: opset,
   whether `nnc import` accepts it, the largest ORT output, the largest
   absolute error against ORT and that error relative to the output's scale
   over all outputs, and pass (every output within `1e-4 * max(1, max
   |ort|)`) or the first lines of the import error.
2. `pytorch-converted/` and `pytorch-operator/`: one PyTorch module each
   (opsets 6 and 9), with PyTorch's own output for `input_*.pb`. nnc runs
   each and is compared with that output within the same tolerance. Models
   with 3-D convolutions or pooling are skipped and counted apart.

Every model runs in its own temporary directory with a timeout; a model
that fails in any way is reported, never stops the run. At the end, the ops
that block models from importing are listed with the models they block.
"""

import argparse
import collections
import glob
import os
import re
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
from onnx import numpy_helper

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
TOL = 1e-4
# An unsupported node as `nnc import` lists it.
NODE_LINE = re.compile(r"node `(?P<node>.*)` \((?P<op>[^,]+), opset (?P<opset>\d+)\): (?P<why>.*)")


class Failure(Exception):
    """A step that failed, with the lines that say why."""

    def __init__(self, stage, text, timed_out=False):
        super().__init__(text)
        self.stage = stage
        self.timed_out = timed_out
        self.lines = [l for l in text.strip().splitlines() if l.strip()] or ["(no output)"]


def run(cmd, timeout, stage):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(stage, f"timed out after {timeout} s", timed_out=True)
    if done.returncode != 0:
        raise Failure(stage, done.stderr or done.stdout)
    return done


def blockers(failure):
    """What blocks an import, one entry per unsupported node: the op type
    when nnc has no conversion for it, else the op type and the reason."""
    found = []
    for m in map(NODE_LINE.search, failure.lines):
        if m is None:
            continue
        why = m["why"].strip()
        if why == "nnc has no conversion for this op":
            found.append(m["op"])
        else:
            found.append(cell(f"{m['op']}: {why}", 90))
    return found


def errors(actual, expected):
    """The largest absolute error, and that error relative to the output's
    scale `max(1, max |expected|)` (the criterion of nnc's own compiled-vs-
    interpreter tests): with random weights ResNet-50's logits reach 2e5,
    where float32 rounding alone moves the small ones by 0.1, and ONNX
    Runtime with and without its graph optimisations differs by as much.
    NaN where the reference has NaN (sqrt of a negative) is a match; NaN
    anywhere else, or a missing NaN, an infinite error."""
    if actual.shape != expected.shape:
        raise Failure("compare", f"nnc's output has shape {list(actual.shape)}, "
                                 f"the reference {list(expected.shape)}")
    nan = np.isnan(expected)
    if (np.isnan(actual) != nan).any():
        return float("inf"), float("inf")
    actual, expected = np.where(nan, 0, actual), np.where(nan, 0, expected)
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    if diff.size == 0:
        return 0.0, 0.0
    if not np.isfinite(diff).all():
        return float("inf"), float("inf")
    return float(diff.max()), float(diff.max() / max(1.0, float(np.abs(expected).max())))


class Nnc:
    def __init__(self, binary, timeout):
        self.binary = binary
        self.timeout = timeout

    def imports(self, model, tmp):
        run([self.binary, "import", model, "-o", os.path.join(tmp, "model.nn")],
            self.timeout, "import")

    def run(self, model, inputs, outputs, threads, tmp):
        """Runs the model on `inputs` (arrays) and returns its outputs."""
        cmd = [self.binary, "run", model, "--threads", str(threads)]
        for i, x in enumerate(inputs):
            path = os.path.join(tmp, f"input_{i}.npy")
            np.save(path, x)
            cmd += ["--input", path]
        paths = [os.path.join(tmp, f"nnc_{threads}_{i}.npy") for i in range(outputs)]
        for p in paths:
            cmd += ["-o", p]
        run(cmd, self.timeout, f"run at {threads} thread(s)")
        return [np.load(p) for p in paths]


def import_error(failure, nodes=2):
    """The first lines of an import error, without the model's path."""
    head = re.sub(r"^(error: )?cannot import `[^`]*`: ", "", failure.lines[0].strip())
    listed = [l.strip() for l in failure.lines[1:] if NODE_LINE.search(l)]
    more = f"; {len(listed) - nodes} more" if len(listed) > nodes else ""
    return "; ".join([head] + listed[:nodes]) + more


def cell(text, width=160):
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


# ------------------------------------------------------------------ light

def with_random_weights(model, seed):
    """Replaces every `ConstantOfShape` whose shape is an initializer by an
    initializer of seeded random values of that shape: weights normal with
    He's scale `sqrt(2 / fan_in)`, so that activations neither vanish nor
    explode through twenty layers (with a plain `normal * 0.1` VGG-19's
    logits reach 1e11 and its softmax is one-hot, which any two engines
    agree on); BatchNormalization scales and variances, and the scale
    vectors that Caffe2 multiplies after its BNs, uniform in [0.5, 1.5);
    other vectors (biases, means) normal * 0.1."""
    rng = np.random.default_rng(seed)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    unsqueezed_by = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Unsqueeze"}
    scales = {n.input[i] for n in graph.node if n.op_type == "BatchNormalization"
              for i in (1, 4) if len(n.input) > i}
    scales |= {unsqueezed_by[i] for n in graph.node if n.op_type == "Mul"
               for i in n.input if i in unsqueezed_by}
    kept, replaced_shapes = [], set()
    new_inits = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = [int(d) for d in numpy_helper.to_array(inits[node.input[0]])]
            name = node.output[0]
            if name in scales:
                values = rng.uniform(0.5, 1.5, shape)
            elif len(shape) >= 2:
                values = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
            else:
                values = rng.standard_normal(shape) * 0.1
            new_inits.append(numpy_helper.from_array(values.astype(np.float32), name))
            replaced_shapes.add(node.input[0])
        else:
            kept.append(node)
    still_used = {i for n in kept for i in n.input}
    dropped = replaced_shapes - still_used
    del graph.node[:]
    graph.node.extend(kept)
    others = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(others + new_inits)
    inputs = [i for i in graph.input if i.name not in dropped]
    if model.ir_version < 4:
        # Below IR version 4 every initializer is also a graph input.
        inputs += [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in new_inits]
    del graph.input[:]
    graph.input.extend(inputs)
    return model


def with_logits(model):
    """Adds the input of every Softmax that computes a graph output as an
    output too: with random weights the probabilities may be nearly one-hot
    or nearly uniform, where any two engines agree; the logits are compared
    as well."""
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Softmax" and node.output[0] in outputs:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    return model


def data_inputs(model):
    """The graph inputs that are not initializers, with their static shapes."""
    inits = {t.name for t in model.graph.initializer}
    return [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim])
            for i in model.graph.input if i.name not in inits]


def check_light(path, nnc, threads, tmp):
    import onnxruntime as ort
    name = os.path.basename(path)[len("light_"):-len(".onnx")]
    row = {"model": name, "opset": "?", "imports": "no", "errors": {}, "result": ""}
    model = onnx.load(path)
    row["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    model = with_logits(with_random_weights(model, zlib.crc32(name.encode())))
    file = os.path.join(tmp, "model.onnx")
    onnx.save_model(model, file)
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    feeds = {n: rng.uniform(-1, 1, s).astype(np.float32) for n, s in data_inputs(model)}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    row["top"] = float(np.abs(expected[0]).max())
    try:
        nnc.imports(file, tmp)
    except Failure as f:
        row["imports"] = "timed out" if f.timed_out else "no"
        row["result"] = "import fails: " + import_error(f)
        row["blockers"] = blockers(f)
        return row
    row["imports"] = "yes"
    ok = True
    for t in threads:
        try:
            actual = nnc.run(file, list(feeds.values()), len(expected), t, tmp)
            worst = [errors(a, e) for a, e in zip(actual, expected)]
            row["errors"][t] = (max(w[0] for w in worst), max(w[1] for w in worst))
            ok = ok and row["errors"][t][1] <= TOL
        except Failure as f:
            row["errors"][t] = None
            row["result"] = f"{f.stage} fails: " + " / ".join(f.lines[:3])
            ok = False
    if not row["result"]:
        row["result"] = "pass" if ok else "FAIL (error above 1e-4)"
    return row


def light_part(args, nnc):
    paths = sorted(glob.glob(os.path.join(DATA, "light", "light_*.onnx")))
    paths = [p for p in paths if args.filter in os.path.basename(p)]
    rows = []
    for path in paths:
        print(f"light: {os.path.basename(path)}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="nnc-zoo-") as tmp:
            try:
                rows.append(check_light(path, nnc, args.threads, tmp))
            except Exception as e:  # a broken model must not stop the run
                rows.append({"model": os.path.basename(path), "opset": "?", "imports": "?",
                             "errors": {}, "result": cell(f"check failed: {e!r}")})
    # The largest ORT output (of the first, the model's own): for a softmax,
    # the top probability.
    heads = ["model", "opset", "imports?", "max \\|ort\\|"]
    heads += [f"{t} thread{'s' if t != 1 else ''}: max abs / rel" for t in args.threads]
    heads += ["result"]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        errs = []
        for t in args.threads:
            e = r["errors"].get(t)
            errs.append("" if e is None else f"{e[0]:.2e} / {e[1]:.2e}")
        top = f"{r['top']:.3g}" if "top" in r else ""
        print("| " + " | ".join([r["model"], str(r["opset"]), r["imports"], top] + errs
                                + [cell(r["result"])]) + " |")
    return rows


# ---------------------------------------------------------------- pytorch

def has_3d_window(model):
    """True if a conv or pool of the model has three spatial dims."""
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
            continue
        for a in n.attribute:
            if a.name == "kernel_shape" and len(a.ints) == 3:
                return True
        if len(n.input) > 1 and n.input[1] in inits and len(inits[n.input[1]].dims) == 5:
            return True
    return False


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def check_pytorch(case, nnc, threads, tmp):
    """None if nnc matches PyTorch, else the reason, one line."""
    data = os.path.join(case, "test_data_set_0")
    inputs = [read_pb(p) for p in sorted(glob.glob(os.path.join(data, "input_*.pb")))]
    expected = [read_pb(p) for p in sorted(glob.glob(os.path.join(data, "output_*.pb")))]
    file = os.path.join(case, "model.onnx")
    nnc.imports(file, tmp)
    for t in threads:
        actual = nnc.run(file, inputs, len(expected), t, tmp)
        for i, (a, e) in enumerate(zip(actual, expected)):
            abs_err, rel_err = errors(a, e)
            if rel_err > TOL:
                return f"output {i} at {t} thread(s) differs by {abs_err:.2e} ({rel_err:.2e} relative)"
    return None


def pytorch_part(args, nnc):
    cases = []
    for suite in ("pytorch-converted", "pytorch-operator"):
        cases += sorted(glob.glob(os.path.join(DATA, suite, "test_*")))
    cases = [c for c in cases if args.filter in os.path.basename(c)]
    passed, skipped, failures = [], [], []
    blocked = collections.defaultdict(set)
    for case in cases:
        name = f"{os.path.basename(os.path.dirname(case))}/{os.path.basename(case)}"
        print(f"pytorch: {name}", file=sys.stderr, flush=True)
        try:
            model = onnx.load(os.path.join(case, "model.onnx"))
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
            if has_3d_window(model):
                skipped.append(name)
                continue
            with tempfile.TemporaryDirectory(prefix="nnc-zoo-") as tmp:
                why = check_pytorch(case, nnc, args.threads, tmp)
        except Failure as f:
            for blocker in blockers(f):
                blocked[blocker].add(os.path.basename(case))
            line = next((l for l in f.lines if NODE_LINE.search(l)), f.lines[0])
            why = f"{f.stage} fails: {line.strip()}"
            if f.stage == "import":
                why = "import fails: " + import_error(f, 1)
        except Exception as e:  # a broken case must not stop the run
            why = f"check failed: {e!r}"
        if why is None:
            passed.append(name)
        else:
            failures.append((name, opset, why))
    total = len(cases) - len(skipped)
    print(f"\n**{len(passed)} of {total} pass** against PyTorch's outputs "
          f"({len(skipped)} 3-D conv/pool cases skipped).\n")
    if failures:
        print("| case | opset | reason |\n|---|---|---|")
        for name, opset, why in failures:
            print(f"| {name} | {opset} | {cell(why)} |")
    return blocked


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filter", default="", help="only models whose name contains this")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts for nnc (default: 1 2)")
    parser.add_argument("--nnc", default=os.path.join(REPO, "target", "release", "nnc"),
                        help="the nnc binary (default: target/release/nnc)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per nnc command")
    parser.add_argument("--skip-light", action="store_true", help="only the PyTorch cases")
    parser.add_argument("--skip-pytorch", action="store_true", help="only the light models")
    args = parser.parse_args()
    if not os.path.exists(args.nnc):
        sys.exit(f"no nnc binary at {args.nnc}; run `cargo build --release` first")
    nnc = Nnc(args.nnc, args.timeout)
    blocked = collections.defaultdict(set)
    if not args.skip_light:
        print(f"## Model Zoo `light/` models against ONNX Runtime "
              f"(tolerance {TOL:g} * max(1, max |ort|))\n")
        for row in light_part(args, nnc):
            for blocker in row.get("blockers", []):
                blocked[blocker].add(row["model"])
    if not args.skip_pytorch:
        print("\n## `pytorch-converted/` and `pytorch-operator/` against PyTorch's outputs")
        for op, names in pytorch_part(args, nnc).items():
            blocked[op] |= names
    if blocked:
        print("\n## What blocks imports\n\n| op (and reason, if not a missing conversion) | models |"
              "\n|---|---|")
        for op, names in sorted(blocked.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            print(f"| {cell(op)} | {len(names)}: {', '.join(sorted(names))} |")


if __name__ == "__main__":
    main()
