"""The user's saved API keys, per server URL: ``~/.config/modelbay/credentials.json`` (mode 0600).

``modelbay serve`` writes the local admin key here on first start, so the CLI
and the TUI on the same machine just work; ``--api-key``/``MODELBAY_API_KEY``
always win over this file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def path() -> Path:
    from ..settings import Settings

    return Settings.from_env().credentials_file


def _norm(url: str) -> str:
    return url.rstrip("/")


def load_all(file: Path | None = None) -> dict[str, dict]:
    try:
        data = json.loads((file or path()).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("servers", {}) if isinstance(data, dict) else {}


def load_key(url: str, file: Path | None = None) -> str | None:
    entry = load_all(file).get(_norm(url)) or {}
    return entry.get("api_key")


def save_key(urls: list[str], key: str) -> Path:
    servers = load_all()
    for url in urls:
        servers[_norm(url)] = {"api_key": key}
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"servers": servers}, f, indent=1)
    os.replace(tmp, p)
    return p


def local_urls(host: str, port: int) -> list[str]:
    hosts = {host} | ({"127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost", "0.0.0.0", "::") else set())
    return [f"http://{h}:{port}" for h in sorted(hosts) if h not in ("0.0.0.0", "::")]
