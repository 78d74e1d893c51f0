"""Browse cursors: where the next page starts and the filter it belongs to, signed (so a client
can neither forge one nor carry it to another filter)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict

from itsdangerous import BadData, URLSafeSerializer

from indexer.payload import CarFilter


class CursorError(ValueError):
    """A cursor this service did not give out, or one of another filter."""


def filter_digest(where: CarFilter) -> str:
    """The filter's conditions, in any order, as one hash."""
    conditions = sorted(
        json.dumps([type(c).__name__, asdict(c)], sort_keys=True) for c in where.conditions()
    )
    return hashlib.sha256(json.dumps(conditions).encode()).hexdigest()[:16]


class Cursors:
    def __init__(self, key: Callable[[], bytes]) -> None:
        """``key``: the signing key, asked for at the first cursor given or read."""
        self._key = key

    def _signer(self) -> URLSafeSerializer:
        return URLSafeSerializer(self._key(), salt="carsearch-cursor")

    def give(self, after: str, where: CarFilter) -> str:
        """The cursor of the page that starts at the id ``after`` under ``where``."""
        return self._signer().dumps({"after": after, "filter": filter_digest(where)})

    def read(self, cursor: str, where: CarFilter) -> str:
        """The id the cursor's page starts at; CursorError when it is not one given out for
        ``where``."""
        try:
            content = self._signer().loads(cursor)
        except BadData as exc:  # a bad signature, or not a cursor at all
            raise CursorError("the cursor is not one this service gave out") from exc
        if content["filter"] != filter_digest(where):
            raise CursorError("the cursor belongs to another filter: start again without one")
        return str(content["after"])
