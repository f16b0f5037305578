"""Where modelbay keeps things on a machine: the XDG base directories, decided once.

Pure functions of an environment mapping, so that ``Settings.from_env`` is the
only reader of the process environment and tests can pass their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

APP = "modelbay"
# The only writable place on Lambda.
LAMBDA_CACHE = Path("/tmp/modelbay-cache")


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _xdg(env: Mapping[str, str], var: str, *fallback: str) -> Path:
    # The XDG spec says a relative value is invalid and must be ignored.
    value = env.get(var)
    if value and Path(value).is_absolute():
        return Path(value)
    return _home(env).joinpath(*fallback)


def config_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/modelbay``: credentials and connection profiles (secrets, 0600 files)."""
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / APP


def data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/modelbay``: the embedded store lives here by default."""
    return _xdg(env, "XDG_DATA_HOME", ".local", "share") / APP


def cache_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/modelbay``, or /tmp on Lambda: model files and built examples, safe to delete."""
    if env.get("AWS_LAMBDA_FUNCTION_NAME"):
        return LAMBDA_CACHE
    return _xdg(env, "XDG_CACHE_HOME", ".cache") / APP


def default_store(env: Mapping[str, str]) -> str:
    return str(data_dir(env) / "store")


def examples_cache(env: Mapping[str, str]) -> Path:
    return cache_dir(env) / "examples"
