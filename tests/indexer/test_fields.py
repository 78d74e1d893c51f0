"""Declared attributes and filter objects (``indexer.fields``), without a store."""

from __future__ import annotations

from typing import Any

import pytest

from indexer.fields import FieldError, FieldSchema, Match, MatchAny, Range, parse_declared

SCHEMA = FieldSchema.of("price:float,color:keyword,available:bool,doors:integer")


def test_a_filter_object_becomes_conditions_on_payload_keys() -> None:
    conditions = SCHEMA.parse_filter(
        {
            "make": ["Audi", "BMW"],
            "year": {"gte": 2008},
            "price": {"gt": 5000, "lte": 20000},
            "color": "red",
            "available": True,
            "doors": [3, 5],
        }
    )
    assert conditions == (
        MatchAny("make", ("Audi", "BMW")),
        Range("year", gte=2008.0),
        Range("attributes.price", gt=5000.0, lte=20000.0),
        Match("attributes.color", "red"),
        Match("attributes.available", True),
        MatchAny("attributes.doors", (3, 5)),
    )
    assert SCHEMA.parse_filter(None) == () and SCHEMA.parse_filter({}) == ()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ([1, 2], "JSON object"),
        ({"mileage": 1}, "mileage"),  # not declared
        ({"price": 5000}, "give a range"),  # a float is matched by ranges only
        ({"color": {"gte": 1}}, "ranges are for numbers"),
        ({"year": {"from": 2000}}, "gt, gte, lt, lte"),
        ({"year": {}}, "gt, gte, lt, lte"),
        ({"year": {"gte": "2000"}}, "gt, gte, lt, lte"),
        ({"make": []}, "a list of 1 to"),
        ({"make": ["A"] * 101}, "a list of 1 to"),
        ({"available": [True]}, "a list must hold"),
        ({"doors": ["three"]}, "a list must hold"),
        ({"year": "2008"}, "integer value"),
        ({"available": 1}, "bool value"),
    ],
)
def test_a_filter_that_means_nothing_is_refused_naming_the_field(spec: Any, words: str) -> None:
    with pytest.raises(FieldError, match=words):
        SCHEMA.parse_filter(spec)


def test_declared_attributes_and_their_values() -> None:
    assert parse_declared("price:float, color:keyword") == {"price": "float", "color": "keyword"}
    with pytest.raises(ValueError):
        parse_declared("Price:float")
    with pytest.raises(ValueError):
        parse_declared("make:keyword")  # a built-in field
    assert SCHEMA.check_attributes({"price": 9900, "color": "red"}) == {
        "price": 9900,
        "color": "red",
    }
    with pytest.raises(FieldError, match="price"):
        SCHEMA.check_attributes({"price": "cheap"})
    assert SCHEMA.from_text("doors", "3") == 3 and SCHEMA.from_text("color", "red") == "red"
