"""The friendly V1 predict codec, in the style of TF Serving and KServe V1.

``{"instances": [...], "parameters": {...}}`` in, ``{"predictions": [...]}`` out.
TF Serving's ``inputs`` aliases are accepted: a list (row format) or an object
of equally long lists (columnar format).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from .jsonbody import dump, load_object


@dataclass
class PredictRequest:
    instances: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


def decode_request(body: bytes) -> PredictRequest:
    """Parse a predict request; a malformed one is a 400 that says what to send."""
    req = load_object(body, '{"instances": [...]}')
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    inputs = req.get("inputs")
    if "instances" in req:
        instances = req["instances"]
    elif isinstance(inputs, list):  # TF Serving's row format
        instances = inputs
    elif isinstance(inputs, dict):  # TF Serving's columnar format: {input: [batch...]}
        lengths = {len(v) if isinstance(v, list) else -1 for v in inputs.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise BadRequest("columnar 'inputs' need a list per input, all of the same length")
        instances = [{k: v[i] for k, v in inputs.items()} for i in range(lengths.pop())]
    else:
        raise BadRequest('missing "instances": send {"instances": [...]}')
    if not isinstance(instances, list):
        raise BadRequest("'instances' must be a list")
    return PredictRequest(instances, params)


def encode_response(predictions: list[Any]) -> bytes:
    return dump({"predictions": predictions})
