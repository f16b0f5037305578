"""A request body that must be one JSON object, refused with a 400 that says what was sent instead."""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest


def load_object(raw: bytes, expected: str) -> dict[str, Any]:
    """``expected`` completes the refusal of a non-object, e.g. 'an inference request'."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadRequest(f"the body must be a JSON object: {expected}")
    return obj
