"""JSON merge patches: RFC 7396's own examples, and composition as a property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import merge_patch
from indexer.payload import CarPayload, edit_changes, edited

RFC_EXAMPLES = [  # RFC 7396, appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_apply_follows_the_rfc_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch.apply(target, patch) == expected


scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["red", "blue", ""])
attributes = st.dictionaries(st.sampled_from(["price", "color", "km"]), scalars, max_size=3)
car_edits = st.fixed_dictionaries(
    {},
    optional={
        "make": st.none() | st.sampled_from(["BMW", "Audi"]),
        "year": st.none() | st.integers(1990, 2012),
        "external_id": st.none() | st.sampled_from(["a-1", "b-2"]),
        "attributes": attributes,
    },
)
stored = st.fixed_dictionaries(
    {},
    optional={
        "make": st.sampled_from(["BMW", "Audi"]),
        "year": st.integers(1990, 2012),
        "attributes": st.dictionaries(st.sampled_from(["price", "color", "km"]), scalars),
    },
)


@given(stored, car_edits, car_edits, car_edits)
def test_composed_edits_do_what_the_edits_did_in_turn(
    target: dict[str, Any], a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]
) -> None:
    in_turn = merge_patch.apply(merge_patch.apply(merge_patch.apply(target, a), b), c)
    ledger = merge_patch.compose(merge_patch.compose(a, b), c)  # as the ledger keeps edits
    assert merge_patch.apply(target, ledger) == in_turn
    assert merge_patch.compose(a, merge_patch.compose(b, c)) == ledger


@given(car_edits)
def test_an_edit_applied_twice_changes_nothing_more(patch: dict[str, Any]) -> None:
    once = merge_patch.apply({"make": "BMW", "attributes": {"price": 1}}, patch)
    assert merge_patch.apply(once, patch) == once


def test_an_edit_of_a_payload_clears_fields_removes_attributes_and_renames_the_class() -> None:
    payload = CarPayload.model_validate(
        {
            "make": "BMW",
            "model": "M3",
            "year": 2010,
            "class_name": "BMW M3 2010",
            "attributes": {"price": 9900, "color": "red"},
            "sha256": "0" * 64,
        }
    )
    edit = {"year": None, "attributes": {"color": None, "km": 12}}
    assert edit_changes(payload, edit) == {
        "year": None,
        "class_name": "BMW M3",
        "attributes": {"price": 9900, "km": 12},
    }
    assert edited(payload.to_payload(), {}) == payload.to_payload()
    assert edit_changes(payload, {"make": "BMW"}) == {}
