"""Input specs: names, dtypes and shapes (with dynamic axes) of a model's inputs.

Text form, one input per ``;``: ``x:float32:[batch,100]`` or
``input_ids:int64:[batch,sequence]``. A string dim is dynamic and names the axis;
an int is fixed. A JSON list of ``{"name", "dtype", "shape"}`` is accepted too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modelbay.errors import BadRequest
from modelbay.manifest import TensorSpec

_DTYPES = {"float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool", "string"}
# Sizes for dynamic dims when we must invent a sample; 3 rather than 1 or 2 so a
# broadcasting bug or a dim the exporter specialised shows up in the check.
DYNAMIC_SAMPLE_SIZE = 3


def parse_input_spec(text: str | Path | list | None) -> list[TensorSpec] | None:
    if text is None:
        return None
    if isinstance(text, list):
        return [t if isinstance(t, TensorSpec) else TensorSpec(**t) for t in text]
    raw = str(text).strip()
    if raw.endswith(".json") and Path(raw).is_file():
        raw = Path(raw).read_text()
    if raw.startswith("["):
        try:
            return [TensorSpec(**t) for t in json.loads(raw)]
        except (ValueError, TypeError) as e:
            raise BadRequest(f"input spec is not a JSON list of {{name, dtype, shape}}: {e}") from None
    specs = []
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        try:
            name, dtype, shape = part.split(":", 2)
        except ValueError:
            raise BadRequest(f"input spec {part!r}: expected name:dtype:[dims]") from None
        if dtype not in _DTYPES:
            raise BadRequest(f"input spec {part!r}: dtype {dtype!r} not one of {sorted(_DTYPES)}")
        shape = shape.strip()
        if not (shape.startswith("[") and shape.endswith("]")):
            raise BadRequest(f"input spec {part!r}: shape must look like [batch,100]")
        dims: list[int | str] = []
        for d in filter(None, (d.strip() for d in shape[1:-1].split(","))):
            dims.append(int(d) if d.lstrip("-").isdigit() else d)
        specs.append(TensorSpec(name=name.strip(), dtype=dtype, shape=dims))
    if not specs:
        raise BadRequest("input spec is empty")
    return specs


def sample_inputs(specs: list[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs matching ``specs`` (ints in [0, 10) so they index any embedding)."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        shape = [d if isinstance(d, int) else DYNAMIC_SAMPLE_SIZE for d in s.shape]
        if s.dtype.startswith("float"):
            out[s.name] = rng.standard_normal(shape).astype(s.dtype)
        elif s.dtype == "bool":
            out[s.name] = rng.integers(0, 2, shape).astype(bool)
        elif s.dtype == "string":
            out[s.name] = np.array(["sample text"] * int(np.prod(shape)), dtype=object).reshape(shape)
        else:
            out[s.name] = rng.integers(0, 10, shape).astype(s.dtype)
    return out


def dynamic_axes(specs: list[TensorSpec]) -> dict[str, dict[int, str]]:
    return {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
