"""The malicious-model corpus, built by the tests: every file is a real ONNX model made with onnx.helper.

``SMUGGLED``: models that hide a tensor stored as external data somewhere a list
of known places could miss (a model-local function's attribute default, a
training initializer, a sparse initializer, a subgraph of a subgraph, ...), or
a field this onnx does not know. Each reads ``location`` from beside the model
file when onnxruntime loads it, which is how a tenant read another tenant's
model from the shared disk cache. Registration must refuse every one.

``VALUE_DEPENDENT``: valid models whose work or memory is decided by an input's
*value* (a Loop trip count, ConstantOfShape(n)), or that fail on some values
(Reshape, Range, integer division): they register, and serving bounds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import AttributeProto, TensorProto, helper

OPSET = 17
I = helper.make_tensor_value_info  # noqa: E741


def _model(graph: onnx.GraphProto, **kw) -> onnx.ModelProto:
    imports = [helper.make_opsetid("", OPSET)] + kw.pop("extra_imports", [])
    m = helper.make_model(graph, opset_imports=imports, producer_name="modelbay-tests", **kw)
    m.ir_version = 9
    return m


def external_tensor(location: str, name: str = "stolen", size: int = 256) -> TensorProto:
    """A uint8 tensor of ``size`` bytes that onnxruntime reads from ``location`` beside the model."""
    t = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[size])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    t.external_data.add(key="length", value=str(size))
    return t


def function_default_leak(location: str) -> onnx.ModelProto:
    """The review's attack: a model-local function whose attribute *default* is an external tensor.

    The graph calls ``evil.Leak`` without the attribute; onnxruntime inlines the
    function, its Constant takes the default, and reads ``location``.
    """
    constant = helper.make_node("Constant", [], ["c"])
    constant.attribute.append(AttributeProto(name="value", ref_attr_name="val", type=AttributeProto.TENSOR))
    fn = helper.make_function("evil", "Leak", [], ["c"], [constant], [helper.make_opsetid("", OPSET)])
    fn.attribute_proto.append(helper.make_attribute("val", external_tensor(location)))
    graph = helper.make_graph(
        [helper.make_node("Leak", [], ["y"], domain="evil")], "leak", [], [I("y", TensorProto.UINT8, [256])]
    )
    return _model(graph, functions=[fn], extra_imports=[helper.make_opsetid("evil", 1)])


def _identity_graph() -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [I("x", TensorProto.FLOAT, [1])],
        [I("y", TensorProto.FLOAT, [1])],
    )


def training_info_leak(location: str) -> onnx.ModelProto:
    m = _model(_identity_graph())
    init = helper.make_graph([], "init", [], [])
    init.initializer.append(external_tensor(location))
    m.training_info.add(initialization=init)
    return m


def sparse_initializer_leak(location: str) -> onnx.ModelProto:
    m = _model(_identity_graph())
    values = external_tensor(location, "sparse_values", 4)
    values.dims[:] = [4]
    indices = helper.make_tensor("sparse_indices", TensorProto.INT64, [4], [0, 1, 2, 3])
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [16]))
    return m


def constant_attribute_leak(location: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=external_tensor(location))],
        "const",
        [],
        [I("y", TensorProto.UINT8, [256])],
    )
    return _model(graph)


def _leaky_branch(name: str, output: str, location: str) -> onnx.GraphProto:
    """A subgraph whose one output is an initializer stored as external data at ``location``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["stolen"], [output])], name, [], [I(output, TensorProto.UINT8, [256])]
    )
    graph.initializer.append(external_tensor(location))
    return graph


def nested_subgraph_leak(location: str) -> onnx.ModelProto:
    """An If inside the then-branch of an If: the tensor is an initializer two subgraphs deep."""
    inner_then = _leaky_branch("t2", "a", location)
    inner_else = helper.make_graph(
        [helper.make_node("Constant", [], ["b"], value=helper.make_tensor("z", TensorProto.UINT8, [256], [0] * 256))],
        "e2",
        [],
        [I("b", TensorProto.UINT8, [256])],
    )
    outer_then = helper.make_graph(
        [helper.make_node("If", ["cond"], ["c"], then_branch=inner_then, else_branch=inner_else)],
        "t1",
        [],
        [I("c", TensorProto.UINT8, [256])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=outer_then, else_branch=inner_else)],
        "nested",
        [I("cond", TensorProto.BOOL, [])],
        [I("y", TensorProto.UINT8, [256])],
    )
    return _model(graph)


def function_subgraph_leak(location: str) -> onnx.ModelProto:
    """A function whose body holds an If whose branch holds the external tensor."""
    then, other = _leaky_branch("t", "a", location), _leaky_branch("e", "b", location)
    fn = helper.make_function(
        "evil",
        "Pick",
        ["cond"],
        ["y"],
        [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)],
        [helper.make_opsetid("", OPSET)],
    )
    graph = helper.make_graph(
        [helper.make_node("Pick", ["cond"], ["y"], domain="evil")],
        "fsub",
        [I("cond", TensorProto.BOOL, [])],
        [I("y", TensorProto.UINT8, [256])],
    )
    return _model(graph, functions=[fn], extra_imports=[helper.make_opsetid("evil", 1)])


def external_flag_only(location: str) -> onnx.ModelProto:
    """data_location=EXTERNAL with no external_data entries (onnxruntime's own checks differ by version)."""
    m = constant_attribute_leak(location)
    del m.graph.node[0].attribute[0].t.external_data[:]
    return m


def unknown_field(location: str) -> onnx.ModelProto:
    """A valid model with a field number onnx does not define appended to its graph: a parser that knows it
    (another onnx, another onnxruntime) may find a tensor there that this server never looked at."""
    m = _model(_identity_graph())
    tensor = external_tensor(location).SerializeToString()
    # field 999, wire type 2 (length-delimited), holding a TensorProto
    tag = (999 << 3) | 2
    graph = m.graph.SerializeToString() + _varint(tag) + _varint(len(tensor)) + tensor
    m.graph.ParseFromString(graph)
    return m


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


SMUGGLED: dict[str, Callable[[str], onnx.ModelProto]] = {
    "function-attribute-default": function_default_leak,
    "training-info-initializer": training_info_leak,
    "sparse-initializer": sparse_initializer_leak,
    "constant-attribute": constant_attribute_leak,
    "subgraph-of-subgraph": nested_subgraph_leak,
    "function-body-subgraph": function_subgraph_leak,
    "external-flag-without-location": external_flag_only,
    "unknown-field": unknown_field,
}


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def with_sha_prefix(build: Callable[[str], onnx.ModelProto], location: str, prefix: str) -> bytes:
    """The attack's second step: tune the model's bytes until its sha256 starts with ``prefix``, so the
    disk cache (``blobs/<sha[:2]>/<sha>``) puts it in the same folder as the file it points at."""
    model = build(location)
    for i in range(1 << 16):
        model.producer_version = str(i)
        data = model.SerializeToString()
        if hashlib.sha256(data).hexdigest().startswith(prefix):
            return data
    raise RuntimeError("no sha256 prefix match")  # 1 in 256 per try: never in practice


# ------------------------------------------------------------------ value-dependent models
def loop_model() -> onnx.ModelProto:
    """``n`` (int64 scalar) -> Loop n times adding 1: the trip count is the caller's."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [I("i", TensorProto.INT64, []), I("cond_in", TensorProto.BOOL, []), I("acc_in", TensorProto.FLOAT, [1])],
        [I("cond_out", TensorProto.BOOL, []), I("acc_out", TensorProto.FLOAT, [1])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "acc0"], ["acc"], body=body)],
        "spin",
        [I("n", TensorProto.INT64, [])],
        [I("acc", TensorProto.FLOAT, [1])],
        [helper.make_tensor("acc0", TensorProto.FLOAT, [1], [0.0])],
    )
    return _model(graph)


def constant_of_shape_model(output_whole: bool = False) -> onnx.ModelProto:
    """``n`` (int64 [1]) -> ConstantOfShape(n) of ones -> their sum (or, ``output_whole``, the tensor itself):
    a 60-byte request asks for n floats."""
    fill = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [helper.make_node("ConstantOfShape", ["n"], ["z" if not output_whole else "y"], value=fill)]
    if not output_whole:
        nodes.append(helper.make_node("ReduceSum", ["z"], ["y"], keepdims=0))
    out = I("y", TensorProto.FLOAT, ["m"] if output_whole else [])
    return _model(helper.make_graph(nodes, "cos", [I("n", TensorProto.INT64, [1])], [out]))


def failing_ops_model() -> onnx.ModelProto:
    """Three outputs that each fail on some input values: Reshape(x, s), Range(0, 10, d), a // b."""
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "s"], ["reshaped"]),
            helper.make_node("Range", ["zero", "ten", "d"], ["range"]),
            helper.make_node("Div", ["a", "b"], ["quotient"]),
        ],
        "failing",
        [
            I("x", TensorProto.FLOAT, [4]),
            I("s", TensorProto.INT64, [1]),
            I("d", TensorProto.INT64, []),
            I("a", TensorProto.INT64, []),
            I("b", TensorProto.INT64, []),
        ],
        [
            I("reshaped", TensorProto.FLOAT, ["r"]),
            I("range", TensorProto.INT64, ["k"]),
            I("quotient", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor("zero", TensorProto.INT64, [], [0]),
            helper.make_tensor("ten", TensorProto.INT64, [], [10]),
        ],
    )
    return _model(graph)


VALUE_DEPENDENT: dict[str, Callable[[], onnx.ModelProto]] = {
    "loop": loop_model,
    "constant-of-shape": constant_of_shape_model,
    "constant-of-shape-output": lambda: constant_of_shape_model(output_whole=True),
    "failing-ops": failing_ops_model,
}
