"""The Open Inference Protocol (KServe V2) REST codec, JSON tensors and the binary tensor extension.

Pure functions from bytes to arrays and back; the routes add transport and
the engine does the running. Binary tensor data follows Triton's extension:
the JSON header is ``Inference-Header-Content-Length`` bytes long, tensors
follow in input order, little-endian, row-major; a BYTES element is a 4-byte
little-endian length and its bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..manifest import TensorSpec
from .dtypes import MANIFEST_TO_OIP, OIP_TO_NUMPY, oip_datatype
from .jsonbody import dump, load_object

HEADER = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "classification", "parameters"]
_INT_KINDS = "iu"
_ALLOWED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
MAX_RANK = 32


@dataclass
class RequestedOutput:
    name: str
    binary: bool
    class_count: int = 0


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None  # None: all outputs
    binary_output: bool = False  # the request-level binary_data_output parameter

    @property
    def batch(self) -> int:
        """Rows in the first input's first axis (1 for a scalar): the request's instance count."""
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if first.ndim else 1


@dataclass
class InferResponse:
    model_name: str
    model_version: int
    outputs: list[tuple[str, np.ndarray, bool]]  # name, array, binary?
    id: str | None = None
    parameters: dict[str, Any] | None = None


def _bad(msg: str, **details: Any) -> BadRequest:
    return BadRequest(msg, **details)


def _shape(t: dict[str, Any], name: str, body_bytes: int) -> list[int]:
    """The declared shape, refused before anything is allocated for it when the request cannot hold it:
    every element takes at least one byte of the body, whatever its encoding."""
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers", input=name)
    if len(shape) > MAX_RANK:
        raise _bad(f"input {name!r}: rank {len(shape)}; at most {MAX_RANK} dimensions", input=name)
    extent = 1
    for d in shape:  # zero-sized axes count as one: [0, 2**80] is no more acceptable than [2**80]
        extent *= max(d, 1)
        if extent > body_bytes:
            raise _bad(
                f"input {name!r}: shape {_brief(shape)} declares more elements than a request of {body_bytes} "
                "bytes can carry",
                input=name,
            )
    return shape


def _brief(shape: list[int]) -> str:
    text = str(shape)
    return text if len(text) <= 80 else text[:77] + "...]"


def _dtype(t: dict[str, Any], name: str) -> np.dtype:
    datatype = t.get("datatype")
    if datatype not in OIP_TO_NUMPY:
        hint = " (BF16 cannot be fed through onnxruntime's Python API)" if datatype == "BF16" else ""
        raise _bad(
            f"input {name!r}: unsupported datatype {datatype!r}{hint}; use one of {sorted(OIP_TO_NUMPY)}", input=name
        )
    return OIP_TO_NUMPY[datatype]


def _decode_bytes_elements(buf: memoryview, count: int, name: str) -> np.ndarray:
    if count * 4 > len(buf):  # each element has its 4-byte length: checked before the array is made
        raise _bad(
            f"input {name!r}: {count} BYTES elements need at least {count * 4} bytes, not {len(buf)}", input=name
        )
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(buf):
            raise _bad(f"input {name!r}: binary BYTES data ends after {i} of {count} elements", input=name)
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise _bad(f"input {name!r}: BYTES element {i} claims {n} bytes past the end of its data", input=name)
        try:
            out[i] = bytes(buf[pos : pos + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(
                f"input {name!r}: BYTES element {i} is not UTF-8 (onnxruntime strings are text)", input=name
            ) from None
        pos += n
    if pos != len(buf):
        raise _bad(f"input {name!r}: {len(buf) - pos} bytes after the last BYTES element", input=name)
    return out


def _from_binary(buf: memoryview, dtype: np.dtype, shape: list[int], name: str) -> np.ndarray:
    count = math.prod(shape)
    if dtype == np.dtype(object):
        return _decode_bytes_elements(buf, count, name).reshape(shape)
    want = count * dtype.itemsize
    if len(buf) != want:
        raise _bad(
            f"input {name!r}: binary_data_size is {len(buf)} bytes; shape {shape} of {dtype.name} needs {want}",
            input=name,
        )
    return np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(shape)


def _from_json(data: Any, dtype: np.dtype, shape: list[int], name: str) -> np.ndarray:
    count = math.prod(shape)
    if not isinstance(data, list):
        data = [data]
    if dtype == np.dtype(object):
        arr = np.array(data, dtype=object).reshape(-1)
        if arr.size and not all(isinstance(v, str) for v in arr):
            raise _bad(f"input {name!r}: BYTES data must be strings", input=name)
    else:
        try:
            arr = np.asarray(data)
        except ValueError:
            raise _bad(f"input {name!r}: data is a ragged nested list", input=name) from None
        if arr.size and dtype.kind in _INT_KINDS and arr.dtype.kind in "fO":
            arr = _big_ints(data, dtype, name)  # e.g. uint64 above 2**63 mixed with small ints
        if arr.size and arr.dtype.kind not in _ALLOWED_KINDS[dtype.kind]:
            what = {"b": "booleans", "U": "strings", "O": "mixed values"}.get(arr.dtype.kind, arr.dtype.name)
            raise _bad(f"input {name!r}: datatype {oip_name(dtype)} cannot hold {what}", input=name)
        if dtype.kind in _INT_KINDS and arr.size:
            info = np.iinfo(dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise _bad(f"input {name!r}: values outside the {oip_name(dtype)} range", input=name)
        arr = arr.astype(dtype, copy=False)
    if arr.size != count:
        raise _bad(f"input {name!r}: shape {shape} needs {count} elements, data has {arr.size}", input=name)
    return arr.reshape(shape)


def _big_ints(data: Any, dtype: np.dtype, name: str) -> np.ndarray:
    obj = np.array(data, dtype=object)
    if not all(type(v) is int for v in obj.reshape(-1)):
        raise _bad(f"input {name!r}: datatype {oip_name(dtype)} needs integers", input=name)
    try:
        return np.array(data, dtype=dtype)
    except OverflowError:
        raise _bad(f"input {name!r}: values outside the {oip_name(dtype)} range", input=name) from None


def oip_name(dtype: np.dtype) -> str:
    return next((k for k, v in OIP_TO_NUMPY.items() if v == dtype), dtype.name)


def decode_request(body: bytes, header_length: str | int | None = None) -> InferRequest:
    """Parse an infer request; every malformed part is a 400 that names it."""
    if header_length is not None and header_length != "":
        try:
            hl = int(header_length)
        except (TypeError, ValueError):
            raise _bad(f"{HEADER} must be an integer, not {header_length!r}") from None
        if hl < 0 or hl > len(body):
            raise _bad(f"{HEADER} is {hl}, but the body has {len(body)} bytes")
        header, binary = body[:hl], memoryview(body)[hl:]
    else:
        header, binary = body, memoryview(b"")
    req = load_object(header, 'an inference request {"inputs": [...]}')
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("'inputs' must be a non-empty list of tensors")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise _bad("'parameters' must be an object")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise _bad("'id' must be a string")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for t in inputs:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise _bad("every input needs a 'name'")
        name = t["name"]
        if name in arrays:
            raise _bad(f"input {name!r} appears twice", input=name)
        shape, dtype = _shape(t, name, len(body)), _dtype(t, name)
        tparams = t.get("parameters") or {}
        size = tparams.get("binary_data_size") if isinstance(tparams, dict) else None
        if size is not None:
            if "data" in t:
                raise _bad(f"input {name!r} has both 'data' and binary_data_size", input=name)
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise _bad(
                    f"input {name!r}: binary_data_size {size!r} runs past the {len(binary)} bytes of binary data",
                    input=name,
                )
            arrays[name] = _from_binary(binary[offset : offset + size], dtype, shape, name)
            offset += size
        elif "data" in t:
            arrays[name] = _from_json(t["data"], dtype, shape, name)
        else:
            raise _bad(f"input {name!r} has neither 'data' nor binary_data_size", input=name)
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes of binary data that no input claims")
    return InferRequest(
        inputs=arrays,
        id=rid,
        parameters=params,
        outputs=_outputs(req.get("outputs")),
        binary_output=bool(params.get("binary_data_output", False)),
    )


def _outputs(outputs: Any) -> list[RequestedOutput] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise _bad("'outputs' must be a list")
    out = []
    for o in outputs:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise _bad("every requested output needs a 'name'")
        p = o.get("parameters") or {}
        if not isinstance(p, dict):
            raise _bad(f"output {o['name']!r}: 'parameters' must be an object")
        k = p.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise _bad(f"output {o['name']!r}: classification must be a non-negative integer")
        out.append(RequestedOutput(o["name"], bool(p.get("binary_data", False)), k))
    return out


# ------------------------------------------------------------------ responses
def classify(scores: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """Triton's classification extension: the top k as "score:index[:label]" strings per row."""
    rows = scores.reshape(scores.shape[0], -1) if scores.ndim > 1 else scores.reshape(1, -1)
    k = min(k, rows.shape[1])
    idx = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty(idx.shape, dtype=object)
    for r, row in enumerate(idx):
        for c, j in enumerate(row):
            label = f":{labels[j]}" if labels and j < len(labels) else ""
            out[r, c] = f"{float(rows[r, j]):f}:{j}{label}"
    return out if scores.ndim > 1 else out[0]


def _bytes_payload(arr: np.ndarray) -> bytes:
    parts = []
    for v in arr.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _json_data(arr: np.ndarray) -> list[Any]:
    flat = arr.reshape(-1)
    if arr.dtype.kind in "OSU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()


def _tensor(name: str, arr: np.ndarray, binary: bool, blobs: list[bytes]) -> dict[str, Any]:
    """One tensor's JSON description; with ``binary`` its bytes are appended to ``blobs`` (little-endian)."""
    t: dict[str, Any] = {"name": name, "datatype": oip_datatype(arr), "shape": list(arr.shape)}
    if binary:
        blob = (
            _bytes_payload(arr)
            if arr.dtype.kind in "OSU"
            else np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        )
        t["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    else:
        t["data"] = _json_data(arr)
    return t


def encode_response(response: InferResponse) -> tuple[bytes, dict[str, str]]:
    """The response body and its content headers (binary outputs after the JSON header)."""
    blobs: list[bytes] = []
    tensors = [_tensor(name, arr, binary, blobs) for name, arr, binary in response.outputs]
    body: dict[str, Any] = {"model_name": response.model_name, "model_version": str(response.model_version)}
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    body["outputs"] = tensors
    header = dump(body)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER.lower(): str(len(header))}


def tensor_metadata(specs: Iterable[TensorSpec]) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "datatype": MANIFEST_TO_OIP.get(s.dtype, s.dtype),
            "shape": [d if isinstance(d, int) and d > 0 else -1 for d in s.shape],
        }
        for s in specs
    ]


def encode_request(
    inputs: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    *,
    binary: bool = True,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The client side (modelbay's Client and benchmarks): an infer request body and its headers."""
    blobs: list[bytes] = []
    tensors = [_tensor(name, np.asarray(arr), binary, blobs) for name, arr in inputs.items()]
    req: dict[str, Any] = {"inputs": tensors}
    if request_id is not None:
        req["id"] = request_id
    params = dict(parameters or {})
    if outputs is not None:
        req["outputs"] = [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]
    elif binary:
        params["binary_data_output"] = True
    if params:
        req["parameters"] = params
    header = json.dumps(req, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER: str(len(header))}


def decode_response(
    body: bytes, header_length: str | int | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The client side: the response JSON and its outputs as arrays."""
    hl = int(header_length) if header_length not in (None, "") else len(body)
    meta = json.loads(body[:hl])
    binary = memoryview(body)[hl:]
    out, offset = {}, 0
    for t in meta.get("outputs", []):
        dtype = OIP_TO_NUMPY[t["datatype"]]
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            out[t["name"]] = _from_binary(binary[offset : offset + size], dtype, t["shape"], t["name"])
            offset += size
        else:
            out[t["name"]] = np.array(t["data"], dtype=dtype).reshape(t["shape"])
    return meta, out
