"""The fields searches filter on and facets count: the built-in ones and the attributes an
operator declares (``CARSEARCH_ATTRIBUTES="price:float,color:keyword"``), their kinds, where
each lives in a payload, how attribute values are checked and how a filter object is read.

A filter object maps field names to conditions::

    {"make": "Audi", "color": ["red", "black"], "price": {"gte": 5000, "lte": 20000}}

a value matches it, a list matches any of its values, an object is a range (``gt``, ``gte``,
``lt``, ``lte``) of a number field. All conditions must hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

FieldKind = Literal["keyword", "integer", "float", "bool"]
AttributeValue = str | int | float | bool

ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_ATTRIBUTES = 50
MAX_EXTERNAL_ID = 200
MAX_TEXT = 1000
"""Longest string value of an attribute."""
MAX_ANY = 100
"""Most values in one list condition."""
ATTRIBUTES_KEY = "attributes"
"""The payload object that holds a car's attributes."""

BUILT_IN: dict[str, FieldKind] = {
    "make": "keyword",
    "model": "keyword",
    "body": "keyword",
    "class_name": "keyword",
    "source": "keyword",
    "external_id": "keyword",
    "year": "integer",
}
"""Payload fields every car has (each with a payload index)."""

CAR_ID = "car_id"
"""The payload field of the car a photo belongs to (every photo of a car has its fields)."""
COVER = "cover"
"""The payload field that marks one photo per car (the one with the smallest id): browsing and
facets read those, so they count cars, not photos."""
PHOTO_INDEXES: dict[str, FieldKind] = {
    CAR_ID: "keyword",
    COVER: "bool",
    "sha256": "keyword",
    "phash_parts": "keyword",
}
"""Payload indexes of photos that tie them to their car and find copies (``indexer.copies``);
not fields a filter object names."""

FACET_KINDS: tuple[FieldKind, ...] = ("keyword", "bool", "integer")
"""Kinds whose values facets count (integer: years, mileages; each value counted apart)."""
NOT_FACETED = ("external_id",)
"""Keyword fields that identify one car: counting their values says nothing."""

_RANGE_KEYS = ("gt", "gte", "lt", "lte")


class FieldError(ValueError):
    """A filter, an attribute or a facet request that does not fit the declared fields."""


@dataclass(frozen=True)
class Match:
    key: str  # the payload key (``attributes.<name>`` for an attribute)
    value: str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None


Condition = Match | MatchAny | Range


def parse_declared(text: str) -> dict[str, FieldKind]:
    """``"price:float,mileage:integer"`` -> {"price": "float", "mileage": "integer"}."""
    declared: dict[str, FieldKind] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, kind = part.partition(":")
        name, kind = name.strip(), kind.strip()
        if not ATTRIBUTE_NAME.fullmatch(name) or name in BUILT_IN:
            raise ValueError(f"{name!r} cannot be an attribute name (^[a-z][a-z0-9_]{{0,63}}$)")
        if kind not in get_args(FieldKind):
            raise ValueError(
                f"attribute {name!r}: kind {kind!r} is not one of {get_args(FieldKind)}"
            )
        declared[name] = kind  # type: ignore[assignment]
    return declared


INT64 = (-(2**63), 2**63 - 1)
"""The integers a payload index holds."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _is_text(value: object) -> bool:
    """A string that can be stored: UTF-8 (no lone surrogate from a JSON ``\\ud800``)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_storable(value: object, where: str = "value") -> None:
    """FieldError unless ``value`` (a payload, or part of one) can be stored as it is: texts
    in UTF-8, integers within 64 bits, finite numbers."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, where)
            check_storable(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item, where)
    elif isinstance(value, str) and not _is_text(value):
        raise FieldError(f"{where}: not valid UTF-8 text (a lone surrogate)")
    elif isinstance(value, int | float) and not isinstance(value, bool) and not _is_number(value):
        raise FieldError(f"{where}: numbers are finite, integers within 64 bits")


def _fits(kind: FieldKind, value: object) -> bool:
    if kind == "keyword":
        return _is_text(value)
    if kind == "integer":
        return _is_int(value)
    if kind == "float":
        return _is_number(value)
    return isinstance(value, bool)


@dataclass(frozen=True)
class FieldSchema:
    """The built-in fields and the declared attributes of one index."""

    declared: Mapping[str, FieldKind]

    @classmethod
    def of(cls, text: str) -> FieldSchema:
        return cls(parse_declared(text))

    def key(self, name: str) -> str:
        """Where the field lives in a payload."""
        return name if name in BUILT_IN else f"{ATTRIBUTES_KEY}.{name}"

    def kinds(self) -> dict[str, FieldKind]:
        return BUILT_IN | dict(self.declared)

    def indexes(self) -> dict[str, FieldKind]:
        """Payload key -> kind of every payload index a collection gets."""
        return {self.key(name): kind for name, kind in self.kinds().items()} | PHOTO_INDEXES

    def facet_fields(self) -> list[str]:
        return [n for n, k in self.kinds().items() if k in FACET_KINDS and n not in NOT_FACETED]

    def _kind(self, name: str) -> FieldKind:
        kind = self.kinds().get(name)
        if kind is None:
            raise FieldError(
                f"{name!r} is not a field that can be filtered; the fields are "
                f"{', '.join(self.kinds())} (attributes are declared with CARSEARCH_ATTRIBUTES)"
            )
        return kind

    def facet_key(self, name: str) -> str:
        if name not in self.facet_fields():
            raise FieldError(
                f"{name!r} cannot be counted; facets are kept for {', '.join(self.facet_fields())}"
            )
        return self.key(name)

    # -- attribute values ------------------------------------------------------------------
    def check_attributes(self, attributes: object) -> dict[str, AttributeValue]:
        """An attributes object as given through the API: names of the allowed form, values
        string / integer / float / bool, declared ones of their declared kind."""
        if not isinstance(attributes, dict):
            raise FieldError("attributes is a JSON object of names to values")
        if len(attributes) > MAX_ATTRIBUTES:
            raise FieldError(f"at most {MAX_ATTRIBUTES} attributes per car")
        for name, value in attributes.items():
            self.check_attribute(name, value)
        return dict(attributes)

    def check_attribute(self, name: str, value: object) -> None:
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise FieldError(f"attribute name {name!r} does not match ^[a-z][a-z0-9_]{{0,63}}$")
        if not (_is_text(value) or isinstance(value, bool) or _is_number(value)):
            raise FieldError(
                f"attribute {name!r}: values are UTF-8 strings, finite numbers (integers "
                "within 64 bits) or booleans"
            )
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise FieldError(f"attribute {name!r}: at most {MAX_TEXT} characters")
        kind = self.declared.get(name)
        if kind is not None and not _fits(kind, value):
            raise FieldError(f"attribute {name!r} is declared {kind}: {value!r} is not one")

    def from_text(self, name: str, text: str) -> AttributeValue:
        """A manifest column's value: of its declared kind when it reads as one, else the
        text as it is."""
        kind = self.declared.get(name)
        try:
            if kind == "integer":
                return int(text)
            if kind == "float":
                number = float(text)
                return number if math.isfinite(number) else text
            if kind == "bool" and text.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return text.strip().lower() in ("true", "1", "yes")
        except ValueError:
            pass
        return text

    # -- filters ---------------------------------------------------------------------------
    def parse_filter(self, obj: object) -> tuple[Condition, ...]:
        """The conditions of a filter object (see the module's docstring); FieldError names
        what is wrong."""
        if obj is None:
            return ()
        if not isinstance(obj, dict):
            raise FieldError("filter is a JSON object of field names to conditions")
        return tuple(self._condition(name, spec) for name, spec in obj.items())

    def _condition(self, name: str, spec: Any) -> Condition:
        kind, key = self._kind(name), self.key(name)
        if isinstance(spec, list):
            if not spec or len(spec) > MAX_ANY:
                raise FieldError(f"{name}: a list of 1 to {MAX_ANY} values")
            if kind not in ("keyword", "integer") or not all(_fits(kind, v) for v in spec):
                raise FieldError(f"{name} is {kind}: a list must hold {kind} values")
            return MatchAny(key, tuple(spec))
        if isinstance(spec, dict):
            if kind not in ("integer", "float"):
                raise FieldError(f"{name} is {kind}: ranges are for numbers")
            if not spec or set(spec) - set(_RANGE_KEYS) or not all(map(_is_number, spec.values())):
                raise FieldError(f"{name}: a range is an object of numbers under gt, gte, lt, lte")
            return Range(key, **{k: float(v) for k, v in spec.items()})
        if not _fits(kind, spec) or kind == "float":
            wanted = "a range" if kind == "float" else f"a {kind} value"
            raise FieldError(f"{name} is {kind}: give {wanted}, a list or a range")
        return Match(key, spec)
