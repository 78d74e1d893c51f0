"""JSON merge patches (RFC 7396): a car's edit is one, kept in the ledger as the one patch that
does what all the car's edits did in turn."""

from __future__ import annotations

from typing import Any


def apply(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied: an object's members are merged (``None`` removes
    one), anything else replaces ``target``."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply(result.get(name), value)
    return result


def compose(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The patch that does what ``first`` and then ``second`` do, for patches of one shape (a
    member that is an object in one is an object or absent in the other, as the car edit's
    ``attributes``): ``apply(apply(t, first), second) == apply(t, compose(first, second))``."""
    result = dict(first)
    for name, value in second.items():
        before = result.get(name)
        if isinstance(value, dict) and isinstance(before, dict):
            result[name] = compose(before, value)
        else:
            result[name] = value
    return result
