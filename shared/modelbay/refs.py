"""The ``NAME[@version|:alias]`` reference syntax shared by the CLI and the TUI."""

from __future__ import annotations

from .layout import check_alias, check_name, check_version


def parse_ref(ref: str) -> tuple[str, str | None]:
    """'m' -> ('m', None); 'm@3' -> ('m', '3'); 'm:production' -> ('m', 'production')."""
    if "@" in ref:
        name, v = ref.split("@", 1)
        return check_name(name, "model name"), str(check_version(v))
    if ":" in ref:
        name, alias = ref.split(":", 1)
        return check_name(name, "model name"), check_alias(alias)
    return check_name(ref, "model name"), None
