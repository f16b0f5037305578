"""Malicious and broken models are refused with 4xx JSON and leave nothing behind.

External data (any location, traversal included, and hidden wherever the review of
issue 11 hid it: ``malicious_models.SMUGGLED``), traversal in model, alias and
side-file names, tensors declaring huge dims, non-ONNX bytes and truncated files.
"""

from __future__ import annotations

import os
from functools import partial

import onnx
import pytest
from onnx import TensorProto, helper

from modelbay.client import ApiError
from tests import malicious_models as mm
from tests.onnx_models import external_data_model, mlp_model

pytestmark = pytest.mark.fuzz


def _refused(call) -> tuple[int, str]:
    with pytest.raises(ApiError) as e:
        call()
    assert 400 <= e.value.status < 500, (e.value.status, e.value.message)
    assert e.value.message
    return e.value.status, e.value.code


def _huge_initializer(path):
    m = mlp_model()
    t = m.graph.initializer[0]  # w1, 4x8 floats, now claiming 2^40 x 2^40
    t.ClearField("dims")
    t.dims.extend([1 << 40, 1 << 40])
    path.write_bytes(m.SerializeToString())
    return path


def _huge_constant(path):
    """A Constant whose tensor declares ~4 PB and carries 16 bytes."""
    t = TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[1 << 25, 1 << 25], raw_data=b"\0" * 16)
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=t)],
        "bomb",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 25, 1 << 25])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


def _truncated(path, fraction):
    data = mlp_model().SerializeToString()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


BAD_MODELS = {
    "external-data": lambda p: external_data_model(p, "weights.bin"),
    "external-data-traversal": lambda p: external_data_model(p, "../../../../etc/passwd"),
    "external-data-absolute": lambda p: external_data_model(p, "/proc/self/environ"),
    "huge-initializer-dims": _huge_initializer,
    "huge-constant-dims": _huge_constant,
    "random-bytes": lambda p: (p.write_bytes(os.urandom(4096)), p)[1],
    "png": lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200)), p)[1],
    "json": lambda p: (p.write_text('{"graph": "not really"}'), p)[1],
    "truncated-half": lambda p: _truncated(p, 0.5),
    "truncated-one-byte-short": lambda p: _truncated(p, 0.995),
    "empty-graph": lambda p: (p.write_bytes(onnx.ModelProto(ir_version=8).SerializeToString()), p)[1],
    # the location a tenant used to read another tenant's blob from the shared cache
    **{
        f"smuggled-{k}": partial(lambda build, p: mm.save(build("0" * 64), p), build)
        for k, build in mm.SMUGGLED.items()
    },
}


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_bad_model_is_refused_and_nothing_is_kept(client, tmp_path, kind, store):
    path = BAD_MODELS[kind](tmp_path / f"{kind}.onnx")
    status, code = _refused(lambda: client.push(path, "victim"))
    assert status in (400, 413, 422), (kind, status, code)
    assert _refused(lambda: client.model("victim"))[0] == 404  # no version, no half-made model
    assert not [i.key for i in store.list("tenants/default/models/")]


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "A", "x" * 65, "-x", "x y", "%2e%2e", "x\x00", "ümlaut"])
def test_traversal_and_junk_in_names_are_400(client, mlp_path, name):
    import httpx

    for call in (
        lambda: client.push(mlp_path, name),
        lambda: client.version(name, 1),
        lambda: client.set_alias(name, "production", 1),
    ):
        try:
            status, code = _refused(call)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            continue  # the client itself will not send it
        assert status in (400, 404, 405), (name, status, code)


def test_traversal_in_alias_and_side_file_names(client, mlp_path, tmp_path):
    client.push(mlp_path, "m")
    for alias in ("../../keys", "..", "Production", "a" * 65):
        assert _refused(partial(client.set_alias, "m", alias, 1))[0] in (400, 404, 405)  # 405: ".." resolved away
    side = tmp_path / "tok.json"
    side.write_text("{}")
    for fname in ("../tokenizer.json", "model.onnx", "manifest.json", ".claim", "a/b.json", ".."):
        status, code = _refused(partial(client.push, mlp_path, "m", side_files={fname: side}))
        assert status in (400, 422), (fname, status, code)  # 422: "model.onnx" replaced the model itself
    assert [v.version for v in client.versions("m")] == [1]
