"""The test servers themselves: `modelbay serve` as a child process, and LocalStack's lifecycle."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.servers import localstack_installed, modelbay_serve, shared_localstack, stop_shared_localstack


def test_modelbay_serve_child_answers_and_requires_keys(tmp_path):
    with modelbay_serve(tmp_path / "store") as url:
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        r = httpx.get(f"{url}/registry/models")
        assert r.status_code == 401 and "error" in r.json()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/v2/health/live", timeout=2)  # stopped


@pytest.mark.skipif(not localstack_installed(), reason="no .venv-localstack (make localstack-install)")
def test_shared_localstack_is_joined_then_stopped(tmp_path):
    first = shared_localstack(tmp_path)
    assert first.healthy() and first.endpoint.rsplit(":", 1)[1] != "4566"
    assert shared_localstack(tmp_path) == first  # another worker joins the running one
    bucket = "joined"
    first.client("s3").create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in first.client("s3").list_buckets()["Buckets"]]
    stop_shared_localstack(tmp_path)
    assert not first.healthy() and not (tmp_path / "localstack.json").exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(first.pid, 0)  # its process group is gone, the leader reaped
