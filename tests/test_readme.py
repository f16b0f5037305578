"""The README's commands, run as written and in order, from an empty HOME, against a local server holding the
demo models (as `make run` leaves it).

Left out: `make run` and `make test` (tests/test_tui_launch.py runs `make run` in a real terminal; CI runs
`make test`), `. .venv/bin/activate` (the venv's bin directory is first on PATH instead) and `modelbay tui`
(interactive: tests/test_tui.py). One change: `bench-load` runs 2 seconds instead of 60.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("modelbay.convert.pipeline")

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent


def _shared_examples() -> Path:
    from modelbay.settings import Settings

    return Settings.from_env().examples_cache


SHARED_EXAMPLES = _shared_examples()  # before a test points HOME elsewhere


def sh_blocks(after: str) -> list[str]:
    """The ```sh block that follows the line containing ``after``, as commands (continuations joined)."""
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(after) :], re.S)
    assert block, after
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


def runnable(commands: list[str]) -> list[str]:
    skip = ("make ", ". .venv/bin/activate", "modelbay tui")
    return [c.replace("--duration 60", "--duration 2") for c in commands if not c.startswith(skip)]


def test_readme_commands_run_as_written_from_an_empty_home(tmp_path, monkeypatch):
    if not (BIN / "modelbay").exists():
        pytest.skip("the modelbay console script is not installed in this venv")
    from modelbay.api.app import create_app
    from modelbay.auth import SCOPES, KeyStore, credentials
    from modelbay.client import Client
    from modelbay.demo import seed
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests.servers import running

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELBAY_", "XDG_"))}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env['PATH']}", COLUMNS="80")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME")
    store = LocalStore(tmp_path / "store")
    api = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=True), store=store)
    with running(api) as url:
        # as `modelbay serve` does on a new store: a root key, saved for this user and this URL
        credentials.save_key([url], KeyStore(store).create("default", SCOPES, name="local admin", root=True)[1])
        with Client(url) as c:
            done = seed(c, SHARED_EXAMPLES)
        assert all(v.startswith("version") for v in done.values()), done
        commands = runnable(sh_blocks("In another shell:")) + runnable(sh_blocks("## Inference"))
        assert len(commands) >= 17
        script = "set -euo pipefail\n" + "\n".join(f"echo '+ {c}' >&2\n{c}" for c in commands)
        r = subprocess.run(
            ["bash", "-c", script],
            env={**env, "MODELBAY_URL": url},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert r.returncode == 0, f"{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    out = " ".join(r.stdout.split())
    assert "registered iris version 1" in out and "registered iris version 2" in out
    assert "registered net version" in out and "aliases: staging" in out
    assert "setosa" in out and "digits v1" in out and "seven.png" in out
    assert "iris:production → 1" in out  # the rollback
    assert "Traceback" not in r.stderr
