"""Real ONNX models built with onnx.helper, small enough to build in every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp_model(n_in: int = 4, n_hidden: int = 8, n_out: int = 3, seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """x[batch, n_in] -> Gemm -> Relu -> Gemm -> Softmax -> probabilities[batch, n_out]."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((n_in, n_hidden)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(n_hidden).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((n_hidden, n_out)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="modelbay-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_mlp(path: Path, **kw) -> Path:
    onnx.save(mlp_model(**kw), str(path))
    return path


def external_data_model(path: Path, location: str = "weights.bin") -> Path:
    """A model whose initializer claims to live in an external file."""
    model = mlp_model()
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    path.write_bytes(model.SerializeToString())
    return path


def saturating_mlp(seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray]:
    """x[batch, 100] -> Gemm -> Relu -> Gemm, and inputs on which int8 U8S8 saturates without VNNI.

    Layer 1's weights are all equal, so every quantized weight is 127; the inputs
    are positive, so dynamic quantization maps them to 0..255. A pair of products
    then reaches 2 * 255 * 127 = 64770, past the int16 that ``vpmaddubsw`` sums
    into on AVX2/AVX-512 without VNNI. Opset 21: onnx's reference evaluator runs
    QuantizeLinear/DequantizeLinear from opset 19 on.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(np.full((100, 50), 0.05, np.float32), "w1"),
        numpy_helper.from_array(np.zeros(50, np.float32), "b1"),
        numpy_helper.from_array(rng.uniform(-0.1, 0.1, (50, 10)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(10, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "saturating",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 100])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="modelbay-tests")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model, rng.uniform(0, 3, (64, 100)).astype(np.float32)


def failing_mlp_model(n_in: int = 4, n_out: int = 3) -> onnx.ModelProto:
    """The signature of ``mlp_model`` (x[batch, n_in] -> probabilities[batch, n_out]), but every run fails inside
    onnxruntime: a Reshape to [-1, n_out] of rows of n_in values (n_in is not a multiple of n_out).
    A version that returns errors, as a bad release would."""
    assert n_in % n_out
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["probabilities"])],
        "failing-mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])],
        [numpy_helper.from_array(np.array([-1, n_out], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelbay-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
