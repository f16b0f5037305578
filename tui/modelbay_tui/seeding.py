"""The demo models, built and pushed by a child process while the TUI is open.

``modelbay seed-demo --events`` writes one JSON ``SeedStatus`` per line; a thread
reads them and hands each to the app. A child rather than a thread: building
MiniLM keeps both cores busy for minutes, and quitting the TUI must not wait for
it (the child is stopped; the next ``make run`` finishes the job, cached parts
and all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from modelbay.demo import SeedStatus


class DemoSeeding:
    def __init__(self, url: str, api_key: str | None, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.api_key = api_key
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[str] | None = None
        self.last: SeedStatus | None = None
        self.returncode: int | None = None
        self._reader: threading.Thread | None = None

    def start(self, on_status: Callable[[SeedStatus], None]) -> None:
        """Start the child; ``on_status`` is called from a reader thread for each status, and once more with a
        ``skipped`` status if the child ends without finishing."""
        env = {**self.env, **({"MODELBAY_API_KEY": self.api_key} if self.api_key else {})}
        log = open(self.log_path, "a")  # noqa: SIM115 - the reader thread closes it at the child's end
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelbay", "--url", self.url, "seed-demo", "--events"],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        proc = self.proc
        assert proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(proc, proc.stdout, log, on_status), daemon=True, name="modelbay-demo-seeding"
        )
        self._reader.start()

    def _read(
        self, proc: subprocess.Popen[str], out: IO[str], log: IO[str], on_status: Callable[[SeedStatus], None]
    ) -> None:
        try:
            for line in out:
                try:
                    status = SeedStatus.from_dict(json.loads(line))
                except (ValueError, TypeError):  # not a status: keep it for whoever reads the log
                    log.write(line)
                    continue
                self.last = status
                on_status(status)
            self.returncode = proc.wait()
            if self.last is None or self.last.state != "done":
                on_status(
                    SeedStatus(
                        self.last.model if self.last else "",
                        "skipped",
                        f"demo seeding stopped (exit {self.returncode}); see {self.log_path}",
                    )
                )
        finally:
            log.close()

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.state == "done"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child if it still runs (it removes its half-built files on SIGTERM) and wait for it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
