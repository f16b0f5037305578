"""An HTTP proxy that injects S3 faults between modelbay and a real S3 (LocalStack's).

Every request (botocore's calls and presigned uploads alike) passes through it;
for some it plays a failure instead of, or after, forwarding:

* ``503``: SlowDown, without forwarding (nothing happened);
* ``500``: InternalError, without forwarding;
* ``drop``: the connection is reset before forwarding;
* ``lost``: forwarded (the write commits), then the connection is reset before the answer;
* ``commit500``: forwarded (the write commits), then answered 500 InternalError;
* ``delay``: forwarded after ``delay_seconds``.

Which requests fail is decided by ``rate`` (a seeded random draw per request, among
``kinds``) and by ``rules``: deterministic reproducers such as "lose the answer to
the first PUT of a manifest". ``injected`` counts what was played, by kind.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("503", "500", "drop", "lost", "commit500", "delay")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"}
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>faultproxy</RequestId></Error>"
)


@dataclass
class Rule:
    """Play ``kind`` on the first ``times`` requests whose method matches and whose path matches ``path``."""

    method: str
    path: str  # a regular expression searched in the request path
    kind: str
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass
class FaultPlan:
    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    delay_seconds: float = 0.3
    seed: int = 0
    rules: list[Rule] = field(default_factory=list)
    # only requests whose method is in here draw random faults (all by default)
    methods: tuple[str, ...] = ("GET", "HEAD", "PUT", "POST", "DELETE")

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def choose(self, method: str, path: str) -> str | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.times -= 1
                    return rule.kind
            if method in self.methods and self.rate and self._random.random() < self.rate:
                return self._random.choice(self.kinds)
        return None


class FaultProxy:
    """``with FaultProxy(upstream, plan) as proxy:`` point S3 clients at ``proxy.url``."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan or FaultPlan()
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="faultproxy")

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, method: str, path: str, kind: str | None) -> None:
        with self._lock:
            self.requests[method] += 1
            self.log.append((method, path, kind))
            if kind:
                self.injected[kind] += 1

    def attempts(self, method: str, path_pattern: str) -> int:
        """How many requests matching were seen (each attempt of a retried call counts)."""
        with self._lock:
            return sum(1 for m, p, _ in self.log if m == method and re.search(path_pattern, p))


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    _local = threading.local()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        """Close the connection with a RST and no answer."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def _error(self, status: int, code: str, message: str) -> None:
        body = _ERROR_XML.format(code=code, message=message).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        up = self.owner.upstream
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):  # a pooled upstream connection may have gone stale
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                return r.status, r.reason, r.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _handle(self) -> None:
        body = self._body()
        kind = self.owner.plan.choose(self.command, self.path)
        self.owner.record(self.command, self.path, kind)
        if kind == "503":
            return self._error(503, "SlowDown", "Please reduce your request rate.")
        if kind == "500":
            return self._error(500, "InternalError", "We encountered an internal error. Please try again.")
        if kind == "drop":
            return self._reset()
        if kind == "delay":
            time.sleep(self.owner.plan.delay_seconds)
        status, reason, headers, data = self._forward(body)
        if kind == "lost":
            return self._reset()
        if kind == "commit500":
            return self._error(500, "InternalError", "We encountered an internal error. Please try again.")
        self.send_response(status, reason)
        for k, v in headers:
            if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


@contextlib.contextmanager
def proxied(upstream: str, plan: FaultPlan | None = None) -> Iterator[FaultProxy]:
    with FaultProxy(upstream, plan) as proxy:
        yield proxy
