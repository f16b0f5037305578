"""Connection profiles: named (url, api key) pairs in ``$XDG_CONFIG_HOME/modelbay/profiles.json``.

The file holds API keys, so it is written owner-only and replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from modelbay.errors import BadRequest
from modelbay.layout import check_name
from modelbay.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8080"


def config_path() -> Path:
    return Settings.from_env().profiles_file


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    api_key: str | None = None

    @property
    def masked_key(self) -> str:
        if not self.api_key:
            return "-"
        return self.api_key[:4] + "…" if len(self.api_key) > 8 else "…"


@dataclass
class Profiles:
    profiles: dict[str, Profile]
    current: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Profiles:
        path = path or config_path()
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls({"local": Profile("local", DEFAULT_URL)}, "local")
        except (OSError, ValueError) as e:
            raise BadRequest(f"cannot read profiles from {path}: {e}") from None
        profiles = {n: Profile(n, p["url"], p.get("api_key")) for n, p in raw.get("profiles", {}).items()}
        return cls(profiles or {"local": Profile("local", DEFAULT_URL)}, raw.get("current"))

    def save(self, path: Path | None = None) -> Path:
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "current": self.current,
            "profiles": {n: {k: v for k, v in asdict(p).items() if k != "name"} for n, p in self.profiles.items()},
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".profiles-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=2)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def add(self, name: str, url: str, api_key: str | None) -> Profile:
        check_name(name, "profile name")
        if not url.startswith(("http://", "https://")):
            raise BadRequest("the URL must start with http:// or https://")
        p = Profile(name, url.rstrip("/"), api_key or None)
        self.profiles[name] = p
        return p

    def remove(self, name: str) -> None:
        self.profiles.pop(name, None)
        if self.current == name:
            self.current = next(iter(self.profiles), None)

    def get(self, name: str | None) -> Profile | None:
        return self.profiles.get(name) if name else None
