"""Branch names as git accepts them (the rules of ``git check-ref-format``)."""

from __future__ import annotations

_FORBIDDEN = set("~^:?*[\\")


def branch_problem(name: str) -> str | None:
    """Why ``name`` is not a valid branch name, or None."""
    if " " in name:
        return "contains a space"
    if any(ord(ch) < 32 or ord(ch) == 127 or not ch.isprintable() for ch in name):
        return "contains a control character"
    bad = sorted({ch for ch in name if ch in _FORBIDDEN})
    if bad:
        return "contains " + " ".join(repr(ch) for ch in bad)
    for text, problem in (("..", "contains '..'"), ("@{", "contains '@{'")):
        if text in name:
            return problem
    if name == "@":
        return "is '@'"
    if name.startswith("-"):
        return "starts with '-'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "starts or ends with '/' or contains '//'"
    if name.endswith("."):
        return "ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return "has a component starting with '.'"
        if part.endswith(".lock"):
            return "has a component ending with '.lock'"
    return None
