"""The best cars in groups that share a payload value (one group per class): what an engine
without grouped search does (Qdrant Edge), reading more neighbours until the groups are full."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from indexer.payload import StoredCar

FETCH_MAX = 1000
"""Most neighbours read to fill the groups of one search."""


@dataclass(frozen=True)
class Grouped:
    groups: list[list[StoredCar]]  # best group first, each best car first
    nearest: list[StoredCar] | None = None
    """The best cars of all, best first, when the engine read them to make the groups (they
    serve the identification vote without another search); None: grouped by the engine."""


def group_by(cars: list[StoredCar], key: str, size: int) -> list[list[StoredCar]]:
    """One group per value of the payload field ``key``, ordered by its best car, with its
    best ``size`` cars (``cars`` come best first); cars without the field are left out."""
    groups: dict[object, list[StoredCar]] = {}
    for car in cars:
        value = getattr(car.payload, key, None)
        if value is None:
            continue
        group = groups.setdefault(value, [])
        if len(group) < size:
            group.append(car)
    return list(groups.values())


def groups_by_fetching(
    search: Callable[[int], list[StoredCar]], key: str, groups: int, size: int
) -> Grouped:
    """Up to ``groups`` groups from ``search(n)`` (the best ``n`` cars), reading four times more
    neighbours while the groups are too few, up to ``FETCH_MAX``."""
    fetch = min(FETCH_MAX, max(groups * size * 4, 64))
    while True:
        found = search(fetch)
        grouped = group_by(found, key, size)
        if len(grouped) >= groups or len(found) < fetch or fetch >= FETCH_MAX:
            return Grouped(grouped[:groups], found)
        fetch = min(FETCH_MAX, fetch * 4)
