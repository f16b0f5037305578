"""Checks a file must pass before it becomes a version, and the signature read from it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from onnx import TensorProto, helper

from .errors import InvalidModel, TooLarge, library_message
from .manifest import TensorSpec

# ONNX elem type -> numpy dtype name. STRING has no numpy dtype of its own.
_DTYPES: dict[int, str] = {
    v: k
    for k, v in {
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
        "float16": TensorProto.FLOAT16,
        "bfloat16": TensorProto.BFLOAT16,
        "int8": TensorProto.INT8,
        "int16": TensorProto.INT16,
        "int32": TensorProto.INT32,
        "int64": TensorProto.INT64,
        "uint8": TensorProto.UINT8,
        "uint16": TensorProto.UINT16,
        "uint32": TensorProto.UINT32,
        "uint64": TensorProto.UINT64,
        "bool": TensorProto.BOOL,
        "string": TensorProto.STRING,
    }.items()
}


@dataclass
class Signature:
    ir_version: int
    opset: dict[str, int]
    producer: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@functools.cache
def ort_max_opset() -> int:
    """The newest ai.onnx opset the installed onnxruntime builds a session for.

    onnxruntime publishes no API for this, so probe with a one-node model,
    newest first; it runs once per process in a few milliseconds.
    """
    import onnxruntime as ort

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    for opset in range(onnx.defs.onnx_opset_version(), 6, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:
            continue
    raise RuntimeError("onnxruntime accepted no opset")


def _messages(root: Message) -> Iterator[tuple[str, Message]]:
    """(path, message) for ``root`` and every message inside it, at any depth.

    Walked through the protobuf descriptors, not a list of places where ONNX
    keeps tensors today: every set field of every message, single or repeated
    (a function's attribute defaults, training_info, sparse tensors, subgraphs
    of subgraphs, and whatever a later ONNX adds). Iterative, so depth costs no stack.
    """
    stack: list[tuple[str, Message]] = [("model", root)]
    while stack:
        path, msg = stack.pop()
        yield path, msg
        for fd, value in msg.ListFields():
            if fd.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            if not fd.is_repeated:
                stack.append((f"{path}.{fd.name}", value))
            elif fd.message_type.GetOptions().map_entry:
                stack.extend((f"{path}.{fd.name}[{k!r}]", v) for k, v in value.items() if isinstance(v, Message))
            else:
                stack.extend((f"{path}.{fd.name}[{i}]", v) for i, v in enumerate(value))


def check_self_contained(model: onnx.ModelProto) -> None:
    """Refuse a model with any tensor stored outside it, or any field this onnx does not know.

    onnxruntime reads external data from beside the model file, wherever the
    tensor sits (an initializer, a Constant in a function's attribute default,
    a training initializer); a field unknown here may be one onnxruntime knows.
    """
    for path, msg in _messages(model):
        if len(UnknownFieldSet(msg)):
            raise InvalidModel(
                f"{path} has fields this server's onnx does not know; re-export the model with a released onnx",
                where=path,
            )
        if isinstance(msg, TensorProto) and (msg.data_location == TensorProto.EXTERNAL or len(msg.external_data)):
            loc = next((e.value for e in msg.external_data if e.key == "location"), "?")
            raise InvalidModel(
                f"tensor {msg.name!r} at {path} is stored as external data ({loc[:100]!r}); "
                "modelbay accepts only self-contained models",
                tensor=msg.name,
                where=path,
            )


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise InvalidModel(f"graph input/output {vi.name!r} is not a tensor; only tensor I/O is served")
    shape: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            shape.append(d.dim_value)
        elif d.HasField("dim_param"):
            shape.append(d.dim_param)
        else:
            shape.append(None)
    dtype = _DTYPES.get(t.elem_type)
    if dtype is None:
        raise InvalidModel(
            f"{vi.name!r} has element type {TensorProto.DataType.Name(t.elem_type)}, which modelbay does not serve"
        )
    return TensorSpec(name=vi.name, dtype=dtype, shape=shape)


def inspect_onnx(path: Path, max_bytes: int) -> Signature:
    """Validate a candidate ``model.onnx`` and read its signature.

    Refuses: files over ``max_bytes``, bytes that do not parse as ONNX, any
    tensor stored as external data wherever it sits and whatever its path
    (``check_self_contained``), models failing ``onnx.checker``, opsets newer
    than the installed onnxruntime, and models onnxruntime cannot build a
    session for. No message names a path of this server.
    """
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise TooLarge(f"model is {size} bytes; the limit is {max_bytes}", size=size, limit=max_bytes)
    if size == 0:
        raise InvalidModel("model file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise InvalidModel(f"not an ONNX model: {type(e).__name__}: {library_message(e, 200)}") from None
    if not model.graph.node and not model.graph.output:
        raise InvalidModel("not an ONNX model: the graph is empty")
    check_self_contained(model)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise InvalidModel(f"onnx.checker refused the model: {library_message(e)}") from None
    opset = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    max_opset = ort_max_opset()
    if opset.get("ai.onnx", 0) > max_opset:
        raise InvalidModel(
            f"opset {opset['ai.onnx']} is newer than onnxruntime supports ({max_opset})",
            opset=opset["ai.onnx"],
            max_opset=max_opset,
        )
    _try_session(path)
    init_names = {i.name for i in model.graph.initializer}
    return Signature(
        ir_version=model.ir_version,
        opset=opset,
        producer={"name": model.producer_name, "version": model.producer_version},
        inputs=[_spec(i) for i in model.graph.input if i.name not in init_names],
        outputs=[_spec(o) for o in model.graph.output],
    )


def _try_session(path: Path) -> None:
    # the engine's builder: alone in a private directory, as when it is served
    from .engine.session import SessionConfig, build_session

    try:
        # the serving options (one thread: only proving the model loads), so that a model whose
        # session the server could not build (e.g. the int8 weight rewrite failing) is refused here
        build_session(path, SessionConfig(intra_op_threads=1))
    except Exception as e:
        raise InvalidModel(f"onnxruntime cannot load the model: {library_message(e)}") from None


def check_metadata(metadata, sig: Signature, side_files: set[str] | None) -> None:
    """The publisher's metadata must name tensors and files the version really has.

    Also run before a conversion, on what is known by then: ``sig.outputs`` empty means the outputs are not known
    yet, ``side_files`` None that the files are not.
    """
    from .errors import BadRequest

    inputs = {t.name for t in sig.inputs}
    outputs = {t.name for t in sig.outputs}
    pre, post = metadata.preprocessing, metadata.postprocessing

    def need(fields: dict[str, str | None], have: set[str], what: str, kind: str) -> None:
        for field, n in fields.items():
            if n is not None and n not in have:
                hint = f' (or "{field}": null if the model takes none)' if field in _OPTIONAL_TEXT_INPUTS else ""
                raise BadRequest(
                    f"{what}.{field} names {kind} {n!r}, which the model does not have: its {kind}s are "
                    f"{sorted(have)}; set {what}.{field} to one of them{hint}",
                    field=f"{what}.{field}",
                )

    if pre is not None:
        if pre.kind == "text":
            fields = {"input_ids": pre.input_ids, "attention_mask": pre.attention_mask}
            need({**fields, "token_type_ids": pre.token_type_ids}, inputs, "preprocessing", "input")
            if side_files is not None and pre.tokenizer not in side_files:
                raise BadRequest(
                    f"text preprocessing needs the side file {pre.tokenizer!r} (push it with --file)",
                    field="preprocessing.tokenizer",
                )
        else:
            need({"input": pre.input}, inputs, "preprocessing", "input")
    if post is not None:
        if metadata.task != post.kind:
            raise BadRequest(f"task {metadata.task!r} does not match {post.kind} postprocessing", field="task")
        if outputs:
            field = "output" if post.kind == "embedder" else "scores"
            need({field: getattr(post, field)}, outputs, "postprocessing", "output")
        if post.kind == "tagger" and (pre is None or pre.kind != "text"):
            raise BadRequest("tagger postprocessing needs text preprocessing (its spans are offsets into the text)")
    if metadata.labels is not None and post is not None and post.kind in ("classifier", "tagger") and outputs:
        spec = next(t for t in sig.outputs if t.name == post.scores)
        last = spec.shape[-1] if spec.shape else None
        if isinstance(last, int) and last != len(metadata.labels):
            raise BadRequest(f"{len(metadata.labels)} labels for {last} classes in {post.scores!r}", field="labels")
    _check_generation(metadata, inputs, outputs, side_files)


def _check_generation(metadata, inputs: set[str], outputs: set[str], side_files: set[str] | None) -> None:
    """A generator needs its generation spec, the decoder graph's inputs and outputs and its text files."""
    from .errors import BadRequest

    gen = metadata.generation
    if metadata.task != "generator":
        if gen is not None:
            raise BadRequest('"generation" is only for task "generator"', field="generation")
        return
    if gen is None:
        raise BadRequest('task "generator" needs the "generation" section (layers, heads, tokens)', field="generation")
    if metadata.preprocessing is not None or metadata.postprocessing is not None:
        raise BadRequest("a generator has no pre/postprocessing: the decode loop reads it", field="task")
    cache = [
        f"{kind}.{i}.{kv}"
        for i in range(gen.num_layers)
        for kind, kv in (("past_key_values", "key"), ("past_key_values", "value"))
    ]
    wanted_in = ["input_ids", "attention_mask", *cache] if inputs else []
    wanted_out = ["logits", *(f"present.{i}.{kv}" for i in range(gen.num_layers) for kv in ("key", "value"))]
    for names, have, kind in ((wanted_in, inputs, "input"), (wanted_out if outputs else [], outputs, "output")):
        missing = [n for n in names if n not in have]
        if missing:
            raise BadRequest(
                f"a generator with {gen.num_layers} layers needs the {kind}s {missing[:4]}, which the model lacks",
                field="generation",
            )
    for f in (gen.tokenizer, gen.chat_template):
        if f is not None and side_files is not None and f not in side_files:
            raise BadRequest(f"the generator needs the side file {f!r} (push it with --file)", field="generation")


# text inputs a tokenizer may or may not feed, depending on the model
_OPTIONAL_TEXT_INPUTS = ("attention_mask", "token_type_ids")
