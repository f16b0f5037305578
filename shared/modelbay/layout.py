"""Where everything lives in the store, and what a valid name is.

    tenants/<tenant>/models/<name>/<version>/model.onnx      Triton model repository
    tenants/<tenant>/models/<name>/<version>/manifest.json   written last: the version is visible
    tenants/<tenant>/models/<name>/<version>/<side file>     e.g. tokenizer.json
    tenants/<tenant>/models/<name>/<version>/.claim          reserves the version number
    tenants/<tenant>/models/<name>/<version>/.deleted        tombstone while a delete runs
    tenants/<tenant>/aliases/<name>/<alias>.json             alias + its whole history (CAS)
    tenants/<tenant>/uploads/<upload id>/...                 staged uploads (expire)

``tenants/<tenant>/models/`` can be handed to Triton or KServe as a model
repository as is: they read ``<name>/<version>/model.onnx`` and ignore the rest.
"""

from __future__ import annotations

import re

from .errors import InvalidName

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MODEL_FILE = "model.onnx"
MANIFEST = "manifest.json"
CLAIM = ".claim"
TOMBSTONE = ".deleted"
RESERVED_FILES = {MODEL_FILE, MANIFEST, CLAIM, TOMBSTONE}


def check_name(name: str, what: str = "name") -> str:
    """Model, alias and tenant names: lowercase letters, digits, '-', '_', '.'; 1-64 chars."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidName(
            f"invalid {what} {name!r}: use 1-64 lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, and no '..'",
            field=what,
        )
    return name


def check_file_name(name: str) -> str:
    if not isinstance(name, str) or not FILE_RE.match(name) or ".." in name or name in RESERVED_FILES:
        raise InvalidName(f"invalid side-file name {name!r}", field="file")
    return name


def check_version(version: int | str) -> int:
    try:
        v = int(version)
    except (TypeError, ValueError):
        raise InvalidName(f"invalid version {version!r}: versions are positive integers", field="version") from None
    if v < 1 or str(version).strip() != str(v):
        raise InvalidName(f"invalid version {version!r}: versions are positive integers", field="version")
    return v


class Layout:
    """Keys for one tenant. Names are validated before they become keys."""

    def __init__(self, tenant: str) -> None:
        self.tenant = check_name(tenant, "tenant")
        self.root = f"tenants/{tenant}/"

    @property
    def models(self) -> str:
        return f"{self.root}models/"

    def model(self, name: str) -> str:
        return f"{self.models}{check_name(name, 'model name')}/"

    def version(self, name: str, version: int) -> str:
        return f"{self.model(name)}{int(version)}/"

    def file(self, name: str, version: int, file: str) -> str:
        return self.version(name, version) + file

    def aliases(self, name: str) -> str:
        return f"{self.root}aliases/{check_name(name, 'model name')}/"

    def alias(self, name: str, alias: str) -> str:
        return f"{self.aliases(name)}{check_name(alias, 'alias')}.json"

    @property
    def uploads(self) -> str:
        return f"{self.root}uploads/"

    def upload(self, upload_id: str) -> str:
        return f"{self.uploads}{upload_id}/"
