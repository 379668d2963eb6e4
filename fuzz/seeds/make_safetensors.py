#!/usr/bin/env python3
"""Writes the seed corpus of the `weights_safetensors` fuzz target: weights
for its fixed model (see fuzz_targets/weights_safetensors.rs) as F32, F16
and BF16, plus PyTorch's `num_batches_tracked` counter, which loading skips.

Run from any directory: python3 fuzz/seeds/make_safetensors.py
"""

import json
import pathlib
import struct

import numpy as np

TENSORS = {
    "conv.weight": [3, 2, 3, 3],
    "conv.bias": [3],
    "bn.weight": [3],
    "bn.bias": [3],
    "bn.running_mean": [3],
    "bn.running_var": [3],
    "norm.weight": [4, 4],
    "norm.bias": [4, 4],
    "fc.weight": [2, 48],
    "fc.bias": [2],
}


def encode(values, dtype):
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    if dtype == "BF16":
        # The top half of each float32.
        bits = values.astype("<f4").view("<u4") >> 16
        return bits.astype("<u2").tobytes()
    raise ValueError(dtype)


def safetensors(tensors, dtype):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = encode(values, dtype)
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    rng = np.random.default_rng(7)
    tensors = {
        name: (shape, rng.uniform(0.5, 1.5, size=shape).astype(np.float32))
        for name, shape in TENSORS.items()
    }
    out = pathlib.Path(__file__).resolve().parent / "weights_safetensors"
    out.mkdir(exist_ok=True)
    for dtype in ["F32", "F16", "BF16"]:
        (out / f"small_{dtype.lower()}.safetensors").write_bytes(safetensors(tensors, dtype))
    extra = dict(tensors)
    extra["bn.num_batches_tracked"] = ([], np.zeros([], dtype=np.float32))
    (out / "with_counter.safetensors").write_bytes(safetensors(extra, "F32"))


if __name__ == "__main__":
    main()
