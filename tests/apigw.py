"""API Gateway REST-proxy events in the exact shape `sam local generate-event apigateway aws-proxy` prints."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = json.loads((ROOT / "infra/events/apigw-proxy.json").read_text())


def event(
    method: str,
    path: str,
    *,
    body: bytes | str | dict | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    binary: bool = False,
) -> dict[str, Any]:
    e = copy.deepcopy(SAMPLE)
    e["httpMethod"] = e["requestContext"]["httpMethod"] = method
    e["path"] = path
    e["pathParameters"] = {"proxy": path.lstrip("/")}
    e["requestContext"]["path"] = f"/{e['requestContext']['stage']}{path}"
    e["queryStringParameters"] = query or None
    e["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    hdrs = {k: v for k, v in e["headers"].items() if k not in ("Accept",)}
    if isinstance(body, dict):
        body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    e["headers"] = hdrs
    e["multiValueHeaders"] = {k: [v] for k, v in hdrs.items()}
    if body is None:
        e["body"], e["isBase64Encoded"] = None, False
    elif binary or isinstance(body, bytes):
        raw = body if isinstance(body, bytes) else body.encode()
        e["body"], e["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    else:
        e["body"], e["isBase64Encoded"] = body, False
    return e


class LambdaContext:
    function_name = "modelbay-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:modelbay-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def load_function(name: str):
    """Import functions/<name>/app.py fresh, as the Lambda runtime would in its init phase."""
    mod_name = f"_lambda_{name}"
    sys.modules.pop(mod_name, None)
    spec = importlib.util.spec_from_file_location(mod_name, ROOT / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(handler, e: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    r = handler(e, LambdaContext())
    body = r.get("body") or ""
    raw = base64.b64decode(body) if r.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
    for k, vs in (r.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), vs[-1])
    return r["statusCode"], headers, raw
