"""Shared fixtures: S3 servers (LocalStack's, atomic; moto's where it suffices), stores, tiny real ONNX models.

Servers come from tests/servers.py. LocalStack runs once per test run, shared by the
xdist workers, and is stopped by the controlling process when the run ends.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.onnx_models import make_mlp
from tests.servers import LocalStack, localstack_installed, moto_s3, running, shared_localstack, stop_shared_localstack

_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
# small multipart sizes so a 10 MB test file crosses them
_S3_SIZES = {"multipart_threshold": 5 * 1024**2, "part_size": 5 * 1024**2}


def _run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by every process of this test run (the xdist controller's basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


# Handed out first (stable sort; ``--dist worksteal`` in pyproject): the tests that build or wait for the
# example models, then the slowest others. One worker starts the long builds at once while the other works
# through the rest and later steals from the end of the first one's queue; run last, a cold MiniLM build
# would be the whole run's tail.
_FIRST = (
    "tests/test_examples_minilm.py",
    "tests/test_v1_minilm.py",
    "tests/test_examples_small.py",
    "tests/test_demo.py",
    "tests/test_tui_launch.py",
    "tests/test_readme.py",
    "tests/test_package_size.py",
    "tests/test_localstack.py",
    "tests/test_crash_points.py",
    "tests/test_s3_faults.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(_FIRST)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller stops LocalStack once every worker is done
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        stop_shared_localstack(factory.getbasetemp())


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> LocalStack:
    """LocalStack's core (S3 with atomic conditional writes) on a free port, one per test run."""
    if not localstack_installed():
        pytest.skip("no .venv-localstack: `make localstack-install` installs LocalStack's core (Python 3.13)")
    return shared_localstack(_run_dir(tmp_path_factory))


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on loopback; boto3 reaches it through AWS_ENDPOINT_URL."""
    old = {k: os.environ.get(k) for k in _AWS_ENV}
    with moto_s3() as url:
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        yield url
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


@pytest.fixture
def local_store(tmp_path):
    from modelbay.storage.local import LocalStore

    return LocalStore(tmp_path / "store")


@pytest.fixture
def s3_settings(tmp_path):
    """Settings of S3 stores in tests: work files under the test's directory, not the user's cache."""
    from modelbay.settings import Settings

    return Settings(cache_dir=tmp_path / "cache")


@pytest.fixture
def moto_store(s3_bucket, s3_settings):
    """S3 on moto: fine for everything but racing writers."""
    from modelbay.storage.s3 import S3Store

    return S3Store(s3_bucket, "root", settings=s3_settings, **_S3_SIZES)


@pytest.fixture
def localstack_store(localstack, s3_settings):
    """S3 on LocalStack, whose If-None-Match/If-Match are atomic: for the contract and concurrency tests.
    The client is modelbay's own (its timeouts and retries)."""
    return localstack.s3_store(localstack.new_bucket(), "root", s3_settings, **_S3_SIZES)


_STORES = {"local": "local_store", "s3": "moto_store", "localstack": "localstack_store"}


@pytest.fixture(params=["local", "s3"])
def store(request):
    """Registry and API tests run on both back ends. Concurrency tests parametrize it
    indirectly with ``["local", "localstack"]``: S3 semantics under racing writers need LocalStack."""
    return request.getfixturevalue(_STORES[request.param])


@pytest.fixture(scope="session")
def mlp_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "mlp.onnx"
    make_mlp(path)
    return path


@pytest.fixture(autouse=True)
def _no_user_credentials(tmp_path_factory, monkeypatch):
    """Tests never read or write the developer's saved API keys."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "xdg-config"))
    monkeypatch.delenv("MODELBAY_API_KEY", raising=False)
    monkeypatch.delenv("MODELBAY_BOOTSTRAP_KEY", raising=False)


@pytest.fixture
def admin_key(store) -> str:
    """A root admin key of the default tenant, minted in the store as `modelbay serve` does."""
    from modelbay.auth import SCOPES, KeyStore

    return KeyStore(store).create("default", SCOPES, name="tests", root=True)[1]


@pytest.fixture
def auth_headers(admin_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


@pytest.fixture
def serve_store(tmp_path):
    """Start a modelbay server (management + inference, keys required) on a given store; stopped after the test."""
    import contextlib

    from modelbay.api.app import create_app
    from modelbay.settings import Settings

    with contextlib.ExitStack() as stack:

        def start(store):
            # as `modelbay serve` does on first start: a root admin key, saved for this URL,
            # so Client(url) without a key uses it
            from modelbay.auth import SCOPES, KeyStore, credentials

            settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=True)
            url = stack.enter_context(running(create_app(settings, store=store)))
            credentials.save_key([url], KeyStore(store).create("default", SCOPES, name="tests", root=True)[1])
            return url

        yield start


@pytest.fixture
def server(store, serve_store):
    """A local modelbay server on the parametrised store."""
    return serve_store(store)


@pytest.fixture
def client(server, admin_key):
    from modelbay.client import Client

    with Client(server, admin_key) as c:
        yield c
