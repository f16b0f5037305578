"""Configuration, read once from the environment (the same names on Lambda and locally)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def default_store() -> str:
    """$MODELBAY_STORE, else the XDG data dir: ~/.local/share/modelbay/store."""
    if os.environ.get("MODELBAY_STORE"):
        return os.environ["MODELBAY_STORE"]
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return str(Path(data) / "modelbay" / "store")


def default_cache_dir() -> Path:
    if os.environ.get("MODELBAY_CACHE_DIR"):
        return Path(os.environ["MODELBAY_CACHE_DIR"])
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return Path("/tmp/modelbay-cache")  # the only writable place on Lambda
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "modelbay"


@dataclass
class Limits:
    # onnx protobufs cannot exceed 2 GiB without external data, which we refuse
    max_model_bytes: int = field(default_factory=lambda: _int("MODELBAY_MAX_MODEL_BYTES", 2 * 1024**3 - 1))
    max_side_file_bytes: int = field(default_factory=lambda: _int("MODELBAY_MAX_SIDE_FILE_BYTES", 64 * 1024**2))
    max_side_files: int = field(default_factory=lambda: _int("MODELBAY_MAX_SIDE_FILES", 8))
    upload_ttl_seconds: int = field(default_factory=lambda: _int("MODELBAY_UPLOAD_TTL", 3600))
    max_body_bytes: int = field(default_factory=lambda: _int("MODELBAY_MAX_BODY_BYTES", 6 * 1024**2))
    max_instances: int = field(default_factory=lambda: _int("MODELBAY_MAX_INSTANCES", 256))


@dataclass
class Settings:
    store_url: str = field(default_factory=default_store)
    default_tenant: str = field(default_factory=lambda: os.environ.get("MODELBAY_TENANT", "default"))
    cache_dir: Path = field(default_factory=default_cache_dir)
    limits: Limits = field(default_factory=Limits)
    # API keys are required unless this is off (`modelbay serve --no-auth`, MODELBAY_AUTH=off)
    auth: bool = field(default_factory=lambda: os.environ.get("MODELBAY_AUTH", "on").lower() not in ("off", "0", "false"))
    # an operator key that is not in the store: its value, or the ARN of a secret holding it
    bootstrap_key: str | None = field(default_factory=lambda: os.environ.get("MODELBAY_BOOTSTRAP_KEY") or None)
    bootstrap_key_secret: str | None = field(
        default_factory=lambda: os.environ.get("MODELBAY_BOOTSTRAP_KEY_SECRET") or None)
    # API Gateway usage plan that mirrors every key (per-key throttling and quota on AWS)
    usage_plan: str | None = field(default_factory=lambda: os.environ.get("MODELBAY_USAGE_PLAN") or None)
    key_cache_seconds: float = field(default_factory=lambda: float(os.environ.get("MODELBAY_KEY_CACHE_SECONDS", 30)))

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        return cls(**overrides)
