"""A real uvicorn server on loopback, in a thread, for HTTP tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
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
def running_keyed(app):
    """``running(app)`` with keys required, as ``modelbay serve`` starts: a root admin key is minted
    in the app's store and saved for the URL, so ``Client(url)`` (and the TUI) find it."""
    from modelbay.auth import SCOPES, KeyStore, credentials

    with running(app) as url:
        credentials.save_key([url], KeyStore(app.state.store).create("default", SCOPES, name="tests", root=True)[1])
        yield url
