"""Collection names and the alias lifecycle (``indexer.versions``), without a store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.versions import (
    AliasState,
    embedding_version_of,
    new_collection_name,
    parse_collection_name,
    stale_collections,
    unfinished_build,
    validate_alias,
)

V1, V2 = "efficientnetlite0-skip-1f07ee78fb05-f32", "efficientnetlite0-skip-1f07ee78fb05-int8"
aliases = st.from_regex(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]|_[A-Za-z0-9-]){0,20}\Z")


@given(
    aliases,
    st.sampled_from([V1, V2]),
    st.datetimes(datetime(2000, 1, 1), datetime(9999, 1, 1), timezones=st.just(UTC)),
)
def test_a_collection_name_gives_back_its_alias_and_version(
    alias: str, version: str, when: datetime
) -> None:
    name = new_collection_name(validate_alias(alias), version, when)
    parsed = parse_collection_name(name)
    assert parsed is not None and (parsed.alias, parsed.embedding_version) == (alias, version)
    assert embedding_version_of(name) == version


@pytest.mark.parametrize("alias", ["", "a__b", "_a", "a_", "a b", "x" * 101])
def test_an_alias_that_would_make_names_ambiguous_is_refused(alias: str) -> None:
    with pytest.raises(ValueError, match="alias"):
        validate_alias(alias)


def test_a_build_promotes_and_a_rollback_swaps() -> None:
    empty = AliasState("cars")
    first = empty.promoted("cars__v1__20261203T000000")
    assert (first.live, first.previous) == ("cars__v1__20261203T000000", None)
    second = first.promoted("cars__v2__20261203T010000")
    assert second.live == "cars__v2__20261203T010000" and second.previous == first.live
    assert second.promoted(second.live) == second  # the same collection again: nothing moves
    back = second.rolled_back()
    assert (back.live, back.previous) == (second.previous, second.live)
    assert back.rolled_back() == second
    with pytest.raises(LookupError):
        first.rolled_back()
    assert second.names == {"cars": second.live, "cars__previous": second.previous}


def test_the_collections_that_hold_a_version_live_first() -> None:
    live = new_collection_name("cars", V2, datetime(2026, 12, 3, tzinfo=UTC))
    previous = new_collection_name("cars", V1, datetime(2026, 12, 2, tzinfo=UTC))
    state = AliasState("cars", live, previous)
    assert state.holding(V1) == [previous] and state.holding(V2) == [live]
    assert state.holding("other-f32") == []
    assert state.live_version == V2


def test_stale_collections_and_the_build_to_resume() -> None:
    def name(version: str, day: int, alias: str = "cars") -> str:
        return new_collection_name(alias, version, datetime(2026, 12, day, tzinfo=UTC))

    live, previous = name(V1, 3), name(V1, 2)
    older, building, newer_build = name(V1, 1), name(V2, 4), name(V2, 5)
    other_alias = name(V2, 6, alias="trucks")
    names = [live, previous, older, building, newer_build, other_alias, "unrelated"]
    state = AliasState("cars", live, previous)
    assert stale_collections("cars", names, state) == [older, building, newer_build]
    assert unfinished_build("cars", V2, names, state) == newer_build
    assert unfinished_build("cars", "none-f32", names, state) is None
