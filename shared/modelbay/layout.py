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

# Used with fullmatch: ``$`` would also accept a trailing newline ("production\n").
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Versions are JSON numbers to clients: above 2^53 they stop being exact (and their
# decimal form outgrows a file name long before the store's own limits).
MAX_VERSION = 2**53
MODEL_FILE = "model.onnx"
MANIFEST = "manifest.json"
CLAIM = ".claim"
TOMBSTONE = ".deleted"
RESERVED_FILES = {MODEL_FILE, MANIFEST, CLAIM, TOMBSTONE}


def check_name(name: str, what: str = "name") -> str:
    """Model, alias and tenant names: lowercase letters, digits, '-', '_', '.'; 1-64 chars."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"invalid {what} {name!r}: use 1-64 lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, and no '..'",
            field=what,
        )
    return name


def check_file_name(name: str) -> str:
    if not isinstance(name, str) or not FILE_RE.fullmatch(name) or ".." in name or name in RESERVED_FILES:
        raise InvalidName(f"invalid side-file name {name!r}", field="file")
    return name


def check_alias(alias: str) -> str:
    """An alias is a name that is not all digits: a path reads ``/versions/123`` as version 123."""
    check_name(alias, "alias")
    if alias.isdigit():
        raise InvalidName(f"invalid alias {alias!r}: an alias of only digits would read as a version", field="alias")
    return alias


def check_version(version: int | str) -> int:
    """A positive integer up to 2^53, as an int or its plain decimal form."""
    bad = InvalidName(
        f"invalid version {str(version)[:40]!r}: versions are integers from 1 to {MAX_VERSION}", field="version"
    )
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise bad
    if isinstance(version, str) and not (0 < len(version) <= 16 and version.isascii() and version.isdigit()):
        raise bad  # checked before int(): a 10,000-digit string costs int() quadratic time
    v = int(version)
    if not 1 <= v <= MAX_VERSION or (isinstance(version, str) and version != str(v)):
        raise bad
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
