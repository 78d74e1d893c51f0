"""Browse cursors (``indexer.cursor``), without a store."""

from __future__ import annotations

import pytest

from indexer.cursor import CursorError, Cursors
from indexer.fields import Match, MatchAny, Range
from indexer.payload import CarFilter

RED = Match("attributes.color", "red")
CHEAP = Range("attributes.price", lte=9000.0)


def test_a_cursor_gives_back_where_its_page_starts_under_its_filter_in_any_order() -> None:
    cursors = Cursors(lambda: b"k" * 32)
    cursor = cursors.give("0b5e2d8a-6c1f-5a43", CarFilter(make="Audi", where=(RED, CHEAP)))
    same = CarFilter(make="Audi", where=(CHEAP, RED))
    assert cursors.read(cursor, same) == "0b5e2d8a-6c1f-5a43"


@pytest.mark.parametrize(
    "other",
    [CarFilter(), CarFilter(make="BMW", where=(RED, CHEAP)), CarFilter(where=(RED,))],
)
def test_a_cursor_is_refused_under_another_filter(other: CarFilter) -> None:
    cursors = Cursors(lambda: b"k" * 32)
    cursor = cursors.give("a", CarFilter(make="Audi", where=(RED, CHEAP)))
    with pytest.raises(CursorError, match="another filter"):
        cursors.read(cursor, other)


def test_a_forged_or_foreign_cursor_is_refused() -> None:
    ours, theirs = Cursors(lambda: b"k" * 32), Cursors(lambda: b"x" * 32)
    where = CarFilter(where=(MatchAny("make", ("Audi",)),))
    cursor = ours.give("a", where)
    payload, _, signature = cursor.rpartition(".")
    forged = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (forged, theirs.give("a", where), "not a cursor", ""):
        with pytest.raises(CursorError, match="not one this service gave out"):
            ours.read(bad, where)


def test_the_key_is_asked_for_once_a_cursor_is_needed() -> None:
    asked: list[int] = []

    def key() -> bytes:
        asked.append(1)
        return b"k" * 32

    cursors = Cursors(key)
    assert not asked
    cursors.read(cursors.give("a", CarFilter()), CarFilter())
    assert asked
