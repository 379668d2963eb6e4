#!/usr/bin/env python3
"""Builds the ONNX cases of the lint suite under tests/cases/lints/.

Run by hand (not by CI) after `pip install onnx numpy`:

    python3 scripts/lint_fixtures.py

tests/tests/lints.rs imports each model and snapshots the warnings nnc
gives it; the model's doc string lists the lints it must raise, as the
second line of a `.nn` case does. An imported model's warnings name the
binding that the ONNX node (or its weights' module path) became, and point
into the `.nn` text the model is imported as. The weights come from a
seeded numpy generator, so regenerating writes the same bytes.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cases", "lints")


def dilated_stack_with_upsampling():
    """Two 3x3 convs with dilations 2 and 4 (gridding), then a 3x3 stride-2
    ConvTranspose (checkerboard), with PyTorch-style node and weight names."""
    rng = np.random.default_rng(0)
    inits = []

    def weight(name, shape):
        inits.append(numpy_helper.from_array(
            rng.uniform(-0.3, 0.3, shape).astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", weight("encoder.0.weight", [8, 4, 3, 3])], ["e0"],
                         name="/encoder/0/Conv", kernel_shape=[3, 3], dilations=[2, 2],
                         pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["e0"], ["e0_act"], name="/encoder/0/Relu"),
        helper.make_node("Conv", ["e0_act", weight("encoder.1.weight", [8, 8, 3, 3])], ["e1"],
                         name="/encoder/1/Conv", kernel_shape=[3, 3], dilations=[4, 4],
                         pads=[4, 4, 4, 4]),
        helper.make_node("Relu", ["e1"], ["e1_act"], name="/encoder/1/Relu"),
        helper.make_node("ConvTranspose", ["e1_act", weight("decoder.weight", [8, 4, 3, 3])],
                         ["y"], name="/decoder/ConvTranspose", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "dilated_stack_with_upsampling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              doc_string="expect: nnc::gridding, nnc::checkerboard")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    os.makedirs(ROOT, exist_ok=True)
    onnx.save_model(dilated_stack_with_upsampling(),
                    os.path.join(ROOT, "onnx_dilated_stack.onnx"))


if __name__ == "__main__":
    main()
