"""JSON bodies of both protocols: a request that must be one JSON object, and responses.

Responses go through orjson: a V1 answer of 32 sentence embeddings (12k floats)
encodes in ~0.3 ms instead of ~6 ms with the standard library, the same digits;
NaN and infinities become ``null`` (standard JSON) rather than Python's bare
``NaN``, which strict clients cannot parse. Requests stay with the standard
library, which accepts what clients send today (``NaN`` included).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..errors import BadRequest


def load_object(raw: bytes, expected: str) -> dict[str, Any]:
    """``expected`` completes the refusal of a non-object, e.g. 'an inference request'."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    except RecursionError:  # the parser's depth limit (about a thousand levels): no tensor is that deep
        raise BadRequest("malformed JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise BadRequest(f"the body must be a JSON object: {expected}")
    return obj


def dump(obj: Any) -> bytes:
    """Compact JSON; numpy arrays and scalars are written as their values."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
