"""schemathesis against the OpenAPI of both apps: bounded, and no 5xx anywhere.

Each operation gets MAX_EXAMPLES generated requests (valid and invalid bodies,
paths and queries) with a root admin key, on a store holding a real model.
Every answer must be < 500, and every error a JSON body with a string ``error``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from modelbay.api.app import create_inference_app, create_registry_app
from modelbay.auth import SCOPES, KeyStore
from modelbay.registry import Registry
from modelbay.settings import Settings
from modelbay.storage.local import LocalStore
from tests.onnx_models import make_mlp

MAX_EXAMPLES = 25
_dir = Path(tempfile.mkdtemp(prefix="modelbay-fuzz-"))
_store = LocalStore(_dir / "store")
_settings = Settings(store_url=_store.url, cache_dir=_dir / "cache", auth=True)
_, KEY = KeyStore(_store).create("default", SCOPES, name="fuzz", root=True)
Registry(_store, "default").register_version("m", make_mlp(_dir / "m.onnx"), aliases=["production"])
HEADERS = {"Authorization": f"Bearer {KEY}"}
CASES: dict[str, int] = {"registry": 0, "inference": 0}

registry_schema = schemathesis.openapi.from_asgi("/openapi.json", create_registry_app(_settings))
inference_schema = schemathesis.openapi.from_asgi("/openapi.json", create_inference_app(_settings))
FUZZ = settings(
    max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _check(case, app: str) -> None:
    CASES[app] += 1
    response = case.call(headers=HEADERS)
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], response.text[:500]


@pytest.mark.fuzz
@registry_schema.parametrize()
@FUZZ
def test_registry_api_has_no_5xx(case):
    _check(case, "registry")


@pytest.mark.fuzz
@inference_schema.parametrize()
@FUZZ
def test_inference_api_has_no_5xx(case):
    _check(case, "inference")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\nschemathesis cases: {CASES} (max {MAX_EXAMPLES} per operation)")
    (_dir / "cases.txt").write_text(repr(CASES))
