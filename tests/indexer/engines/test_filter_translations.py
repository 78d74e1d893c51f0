"""The two translations of a car filter (``indexer.engines.edge.filters`` and
``indexer.engines.qdrant_server.filters``) select what the filter means: random filters, read
on both engines, against the filter evaluated over the payloads in Python."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.engines.base import Engine, NewPoint
from indexer.engines.edge.store import EdgeEngine
from indexer.engines.qdrant_server.store import ServerEngine
from indexer.fields import Condition, Match, MatchAny, Range
from indexer.payload import CarFilter, CarPayload
from indexer.settings import StoreSettings

ATTRIBUTES = "price:float,color:keyword,available:bool,doors:integer"
MAKES = ("Audi", "BMW", "Fiat")
COLORS = ("red", "black", "white")
CARS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"car-{i}")) for i in range(12)]


def _payloads() -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(7)
    payloads = {}
    for i in range(40):
        car = CARS[i % len(CARS)]
        attributes: dict[str, Any] = {"color": COLORS[i % 3], "doors": int(rng.integers(2, 6))}
        if i % 5:
            attributes["price"] = float(rng.integers(1, 40) * 500)
        if i % 4:
            attributes["available"] = bool(i % 2)
        payloads[str(uuid.uuid5(uuid.NAMESPACE_URL, f"photo-{i}"))] = {
            "make": MAKES[i % 3],
            "year": 2000 + i % 13,
            "car_id": car,
            "cover": i < len(CARS),
            "attributes": attributes,
        }
    return payloads


PAYLOADS = _payloads()


@pytest.fixture(scope="module", params=["edge", "server"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    folder: Path = tmp_path_factory.mktemp(request.param)
    store_settings = StoreSettings(qdrant_path=folder / "q", attributes=ATTRIBUTES)
    if request.param == "edge":
        opened: Engine = EdgeEngine(store_settings)
    else:
        from qdrant_client import QdrantClient

        opened = ServerEngine(store_settings, QdrantClient(path=str(folder / "local")))
    opened.create("cars", 4)
    rng = np.random.default_rng(0)
    opened.upsert(
        "cars",
        [
            NewPoint(pid, rng.normal(size=4).astype(np.float32), CarPayload.model_validate(p))
            for pid, p in PAYLOADS.items()
        ],
    )
    yield opened
    opened.close()


def _value(payload: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        payload = payload.get(part) if isinstance(payload, dict) else None  # type: ignore[assignment]
    return payload


def _holds(payload: dict[str, Any], condition: Condition) -> bool:
    value = _value(payload, condition.key)
    if isinstance(condition, Match):
        return value == condition.value and type(value) is type(condition.value)
    if isinstance(condition, MatchAny):
        return value in condition.values
    if value is None:
        return False
    return all(
        bound is None or test(float(value), bound)
        for bound, test in (
            (condition.gte, float.__ge__),
            (condition.lte, float.__le__),
            (condition.gt, float.__gt__),
            (condition.lt, float.__lt__),
        )
    )


def _selected(where: CarFilter) -> set[str]:
    """The oracle: the filter's meaning, over the payloads."""
    return {
        pid
        for pid, payload in PAYLOADS.items()
        if pid not in where.exclude_ids
        and all(_holds(payload, c) for c in where.conditions())
        and not any(_holds(payload, c) for c in where.exclusions())
    }


bounds = st.none() | st.integers(0, 20_000).map(float)
conditions = st.one_of(
    st.builds(Match, st.just("attributes.color"), st.sampled_from(COLORS)),
    st.builds(Match, st.just("attributes.available"), st.booleans()),
    st.builds(Match, st.just("attributes.doors"), st.integers(2, 5)),
    st.builds(
        MatchAny,
        st.just("make"),
        st.lists(st.sampled_from(MAKES), min_size=1, max_size=3, unique=True).map(tuple),
    ),
    st.builds(Range, st.just("attributes.price"), bounds, bounds, bounds, bounds),
)
filters = st.builds(
    CarFilter,
    make=st.none() | st.sampled_from(MAKES),
    year_min=st.none() | st.integers(2000, 2012),
    year_max=st.none() | st.integers(2000, 2012),
    exclude_ids=st.frozensets(st.sampled_from(sorted(PAYLOADS)), max_size=3),
    where=st.lists(conditions, max_size=3).map(tuple),
    cars=st.none() | st.frozensets(st.sampled_from(CARS), min_size=1, max_size=4),
    exclude_cars=st.frozensets(st.sampled_from(CARS), max_size=3),
    covers=st.booleans(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=filters)
def test_an_engine_selects_what_the_filter_means(engine: Engine, where: CarFilter) -> None:
    cars, following = engine.page("cars", where, 1000, None)
    assert following is None
    assert {c.id for c in cars} == _selected(where)


def test_the_oracle_is_not_trivial() -> None:
    """The generated filters' space has filters that select some and some that select none."""
    assert _selected(CarFilter()) == set(PAYLOADS)
    assert len(_selected(CarFilter(make="Audi", covers=True))) == 4
    assert not _selected(CarFilter(where=(Match("attributes.color", "green"),)))
