"""Shared fixtures: a real S3 protocol server (moto's), stores, tiny real ONNX models."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from tests.onnx_models import make_mlp
from tests.servers import running


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on loopback; boto3 reaches it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    yield url
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint):
    import boto3

    name = f"mb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Each contract and registry test runs on both back ends."""
    if request.param == "local":
        from modelbay.storage.local import LocalStore

        return LocalStore(tmp_path / "store")
    from modelbay.storage.s3 import S3Store

    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket, "root", multipart_threshold=5 * 1024**2, part_size=5 * 1024**2)


@pytest.fixture(scope="session")
def mlp_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "mlp.onnx"
    make_mlp(path)
    return path


@pytest.fixture
def serve_store(tmp_path):
    """Start a modelbay server (management + inference) on a given store; stopped after the test."""
    import contextlib

    from modelbay.api.app import create_app
    from modelbay.settings import Settings

    with contextlib.ExitStack() as stack:
        def start(store):
            settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache")
            return stack.enter_context(running(create_app(settings, store=store)))

        yield start


@pytest.fixture
def server(store, serve_store):
    """A local modelbay server on the parametrised store."""
    return serve_store(store)


@pytest.fixture
def client(server):
    from modelbay.client import Client

    with Client(server) as c:
        yield c
