"""Every server the tests start, in one module.

* ``running(app)`` / ``running_keyed(app)``: an ASGI app under uvicorn in a thread,
  on a free loopback port (keyed: a root admin key minted and saved for the URL,
  as ``modelbay serve`` does on its first start).
* ``modelbay_serve(store)``: the real ``modelbay serve`` in a child process, for
  the CLI and launcher tests.
* ``LocalStack``: LocalStack's Python core (S3 whose conditional writes are atomic,
  CloudFormation, Secrets Manager) on a free port with its state in a given
  directory. ``shared_localstack(dir)`` starts one per test run and lets every
  pytest-xdist worker join it (a file lock and a readiness check);
  ``stop_shared_localstack(dir)`` ends it.
* ``moto_s3()``: moto's S3 server in a thread, where its fidelity suffices (its
  conditional PUT is check-then-write: not for concurrency tests).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
LOCALSTACK_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"
AWS_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- in-thread uvicorn
@contextlib.contextmanager
def running(app: Any, port: int | None = None) -> Iterator[str]:
    """``app`` served on loopback (a free port unless given: a restart on the same URL); yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def running_keyed(app: Any) -> Iterator[str]:
    """``running(app)`` with keys required, as ``modelbay serve`` starts: a root admin key is minted
    in the app's store and saved for the URL, so ``Client(url)`` (and the TUI) find it."""
    from modelbay.auth import SCOPES, KeyStore, credentials

    with running(app) as url:
        credentials.save_key([url], KeyStore(app.state.store).create("default", SCOPES, name="tests", root=True)[1])
        yield url


# ---------------------------------------------------------------- `modelbay serve` child process
def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM to the child's process group, SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def modelbay_serve(
    store: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log: Path | None = None,
) -> Iterator[str]:
    """``python -m modelbay serve --store STORE`` on a free port; yields its URL, then stops it.

    The child imports the same modelbay as the tests (``PYTHONPATH`` = this ``sys.path``);
    its output goes to ``log``, by default ``serve-<port>.log`` beside a directory store.
    """
    with modelbay_serve_process(store, *args, env=env, timeout=timeout, log=log) as (url, _):
        yield url


@contextlib.contextmanager
def modelbay_serve_process(
    store: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``modelbay_serve`` yielding the child process too (its own process group), for tests that signal it
    or read its memory."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (
        log
        or (Path(store).parent if "://" not in str(store) else Path(os.environ.get("TMPDIR", "/tmp")))
        / f"serve-{port}.log"
    )
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelbay", "serve", "--store", str(store), "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )
    try:
        _wait_http(f"{url}/v2/health/live", proc, log, timeout)
        yield url, proc
    finally:
        _stop(proc)


# ---------------------------------------------------------------- LocalStack's core
@dataclass(frozen=True)
class LocalStack:
    endpoint: str
    pid: int
    home: str

    def healthy(self) -> bool:
        return localstack_healthy(self.endpoint)

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    @property
    def env(self) -> dict[str, str]:
        """What a child process (or boto3 in this one) needs to reach it."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **AWS_TEST_CREDENTIALS}

    def s3_store(self, bucket: str, prefix: str, settings: Any, endpoint: str | None = None, **sizes: int) -> Any:
        """An S3Store on ``bucket`` with modelbay's own client (timeouts, retries from ``settings``),
        reaching S3 at ``endpoint`` (e.g. a fault proxy in front of this LocalStack; default: itself)."""
        from modelbay.storage.s3 import S3Store, s3_client

        client = s3_client(
            settings,
            endpoint_url=endpoint or self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        return S3Store(bucket, prefix, client=client, settings=settings, **sizes)

    def new_bucket(self) -> str:
        import uuid

        name = f"mb-{uuid.uuid4().hex[:12]}"
        self.client("s3").create_bucket(Bucket=name)
        return name


def localstack_installed() -> bool:
    return LOCALSTACK_PYTHON.exists()


def localstack_healthy(endpoint: str, services: tuple[str, ...] = ("s3",)) -> bool:
    try:
        r = httpx.get(f"{endpoint}/_localstack/health", timeout=2)
        states = r.json().get("services", {})
    except (httpx.HTTPError, ValueError):
        return False
    return r.status_code == 200 and all(states.get(s) in ("available", "running") for s in services)


def start_localstack(home: Path, timeout: float = 120.0) -> LocalStack:
    """LocalStack's core on a free port, its files under ``home``; returns once S3 answers."""
    if not localstack_installed():
        raise RuntimeError("no .venv-localstack: `make localstack-install` installs LocalStack's core")
    home.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # the free port may be taken between choosing it and binding it
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            # the core on the host (no Docker): hypercorn gateway, no DNS server
            "OVERRIDE_IN_DOCKER": "0",
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "FILESYSTEM_ROOT": str(home / "fs"),
            "LOCALSTACK_VOLUME_DIR": str(home / "volume"),
        }
        log = home / f"localstack-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"],
                cwd=home,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if localstack_healthy(endpoint):
                return LocalStack(endpoint, proc.pid, str(home))
            time.sleep(0.2)
        _stop(proc)
        if "address already in use" not in log.read_text(errors="replace").lower():
            break
    raise RuntimeError(f"LocalStack did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of group ``pgid`` is left (reaping the leader when it is our child)."""
    deadline = time.time() + timeout
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.1)


def stop_localstack(ls: LocalStack, grace: float = 3.0) -> None:
    """SIGTERM to its process group; SIGKILL what is left after ``grace`` seconds: its state is throwaway,
    and its graceful shutdown waits for idle keep-alive connections of the clients."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ls.pid, sig)
        if _group_gone(ls.pid, wait):
            return


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def shared_localstack(shared: Path) -> LocalStack:
    """The test run's LocalStack: the first caller starts it, later callers (other workers) join it."""
    state = shared / "localstack.json"
    with _locked(shared / "localstack.lock"):
        if state.is_file():
            ls = LocalStack(**json.loads(state.read_text()))
            if ls.healthy():
                return ls
            stop_localstack(ls, grace=2)
        ls = start_localstack(shared / "localstack")
        state.write_text(json.dumps(asdict(ls)))
        return ls


def stop_shared_localstack(shared: Path) -> None:
    state = shared / "localstack.json"
    if not state.is_file():
        return
    with _locked(shared / "localstack.lock"):
        if state.is_file():
            stop_localstack(LocalStack(**json.loads(state.read_text())))
            state.unlink()


# ---------------------------------------------------------------- moto
@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server in a thread on a free port; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
