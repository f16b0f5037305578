"""Running modelbay's images in tests: the images (built once, by infra/container/images.py),
containers that are always removed, and a Lambda Runtime API for the Lambda image to poll."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from infra.container import images as images_mod

LOGS: dict[str, str] = {}


def built_images() -> images_mod.Images:
    """The images for the current sources, or a skip saying why no container engine works here."""
    try:
        engine = images_mod.detect()
    except images_mod.NoEngine as e:
        pytest.skip(str(e))
    try:
        return images_mod.ensure(engine)
    except images_mod.NoEngine as e:  # e.g. mmdebstrap missing: no base image can be made
        pytest.skip(str(e))


@contextlib.contextmanager
def volume(engine: images_mod.Engine) -> Iterator[str]:
    """A named volume: unlike a tmpfs or a bind mount, it takes the image directory's owner (uid 10001)."""
    name = f"modelbay-test-{uuid.uuid4().hex[:10]}"
    engine("volume", "create", name)
    try:
        yield name
    finally:
        engine("volume", "rm", "-f", name, check=False)


@contextlib.contextmanager
def container(engine: images_mod.Engine, image: str, *args: str, command: tuple[str, ...] = ()) -> Iterator[str]:
    """`run -d` with the host's network; removed afterwards, its log kept in LOGS for failures."""
    name = f"modelbay-test-{uuid.uuid4().hex[:10]}"
    engine("run", "-d", "--name", name, "--network", "host", *no_timers(engine), *args, image, *command, timeout=120)
    try:
        yield name
    finally:
        LOGS[name] = logs(engine, name)
        engine("rm", "-f", "-t", "0", name, check=False, timeout=60)


def no_timers(engine: images_mod.Engine) -> tuple[str, ...]:
    """podman schedules HEALTHCHECKs with systemd timers, which a container host may lack; tests run them."""
    return ("--health-interval", "disable") if engine.name == "podman" else ()


def logs(engine: images_mod.Engine, name: str) -> str:
    r = engine("logs", name, check=False)
    return (r.stdout + r.stderr)[-4000:]


def running(engine: images_mod.Engine, name: str) -> bool:
    r = engine("inspect", "--format", "{{.State.Running}}", name, check=False)
    return r.stdout.strip() == "true"


def wait_ready(engine: images_mod.Engine, name: str, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(engine, name):
            raise AssertionError(f"container exited before it was ready:\n{logs(engine, name)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout} s:\n{logs(engine, name)}")


class RuntimeAPI:
    """The Lambda Runtime API (2018-06-01) as far as a runtime client uses it, on loopback.

    ``invoke(event)`` queues an event; the runtime's long-polling ``GET .../invocation/next``
    receives it with Lambda's headers, and its ``POST .../invocation/{id}/response`` (or
    ``/error``) completes the call. An ``init/error`` fails every waiting call at once.
    """

    PREFIX = "/2018-06-01/runtime"

    def __init__(self, function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:modelbay") -> None:
        self.arn = function_arn
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, tuple[threading.Event, list[Any]]] = {}
        self.init_error: str | None = None
        self.closed = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{api.PREFIX}/invocation/next":
                    return self._reply(404)
                while not api.closed.is_set():
                    try:
                        rid, body = api.events.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    deadline = int((time.time() + 60) * 1000)
                    trace = f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0"
                    return self._reply(
                        200,
                        body,
                        {
                            "Content-Type": "application/json",
                            "Lambda-Runtime-Aws-Request-Id": rid,
                            "Lambda-Runtime-Deadline-Ms": str(deadline),
                            "Lambda-Runtime-Invoked-Function-Arn": api.arn,
                            "Lambda-Runtime-Trace-Id": trace,
                        },
                    )
                self.close_connection = True  # shut down: the container polling here is gone

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.removeprefix(api.PREFIX + "/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = body.decode(errors="replace")
                    for done, _ in api.results.values():
                        done.set()
                elif (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2] in ("response", "error")
                    and parts[1] in api.results
                ):
                    done, out = api.results[parts[1]]
                    out[:] = [parts[2], body]
                    done.set()
                else:
                    return self._reply(404)
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def invoke(self, event: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        rid = str(uuid.uuid4())
        done, out = threading.Event(), list[Any]()
        self.results[rid] = (done, out)
        self.events.put((rid, json.dumps(event).encode()))
        if not done.wait(timeout):
            raise AssertionError(f"no answer from the runtime in {timeout} s")
        if self.init_error is not None:
            raise AssertionError(f"the function failed its init phase: {self.init_error}")
        kind, body = out
        if kind == "error":
            raise AssertionError(f"the handler raised: {body.decode(errors='replace')}")
        return json.loads(body)

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
