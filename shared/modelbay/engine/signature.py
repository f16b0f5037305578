"""Inputs checked against the model's signature before onnxruntime sees them.

onnxruntime's own messages for a wrong dtype or shape are long, name internal
node arguments, and arrive as a generic failure; checking first gives a 400
that says which input, what was sent and what the model takes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import BadRequest
from ..manifest import TensorSpec
from ..protocols.dtypes import MANIFEST_TO_OIP

_NUMPY = {name: np.dtype(name) for name in MANIFEST_TO_OIP if name not in ("string", "bfloat16")}


def _shape(spec: TensorSpec) -> str:
    return "[" + ", ".join("-1" if not isinstance(d, int) else str(d) for d in spec.shape) + "]"


def check_feeds(inputs: list[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    by_name = {s.name: s for s in inputs}
    for name in feeds:
        if name not in by_name:
            raise BadRequest(f"unknown input {name!r}; the model's inputs are {sorted(by_name)}", input=name)
    for spec in inputs:
        array = feeds.get(spec.name)
        if array is None:
            raise BadRequest(
                f"missing input {spec.name!r} ({MANIFEST_TO_OIP.get(spec.dtype, spec.dtype)} {_shape(spec)})",
                input=spec.name,
            )
        want = spec.dtype
        if array.dtype.kind in "OUS":
            got = "string"
        elif array.dtype == _NUMPY.get(want):  # the common case, without building dtype names
            got = want
        else:
            got = array.dtype.name
        if got != want:
            raise BadRequest(
                f"input {spec.name!r} is {MANIFEST_TO_OIP.get(got, got)}; the model takes "
                f"{MANIFEST_TO_OIP.get(want, want)}",
                input=spec.name,
            )
        if array.ndim != len(spec.shape):
            raise BadRequest(
                f"input {spec.name!r} has shape {list(array.shape)}; the model takes "
                f"{_shape(spec)} (rank {len(spec.shape)})",
                input=spec.name,
            )
        for axis, (n, d) in enumerate(zip(array.shape, spec.shape)):
            if isinstance(d, int) and d > 0 and n != d and not (axis == 0 and d == 1):
                raise BadRequest(
                    f"input {spec.name!r} has shape {list(array.shape)}; the model takes "
                    f"{_shape(spec)} (dimension {axis} must be {d})",
                    input=spec.name,
                )
