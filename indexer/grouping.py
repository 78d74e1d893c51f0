"""The best cars in groups that share a payload value (one group per class, or one per car):
what an engine without grouped search does (Qdrant Edge), reading more neighbours until the
groups are full. A group holds each car once, as its best photo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from indexer.fields import CAR_ID
from indexer.payload import StoredCar

FETCH_MAX = 1000
"""Most neighbours read to fill the groups of one search (unless that could miss cars)."""


def car_beam(key: str, fetch: int, page_beam: int) -> int | None:
    """The HNSW width of a search that reads ``fetch`` photos to group them by ``key``: for
    cars, at least ``page_beam`` (``StoreSettings.page_beam``), so that every search of one
    query up to that many photos deep reads one ranking and pages neither repeat nor skip a
    car."""
    return max(page_beam, fetch) if key == CAR_ID else None


@dataclass(frozen=True)
class Grouped:
    groups: list[list[StoredCar]]  # best group first, each best car first
    nearest: list[StoredCar] | None = None
    """The best cars of all, best first, when the engine read them to make the groups (they
    serve the identification vote without another search); None: grouped by the engine."""


def group_by(photos: list[StoredCar], key: str, size: int) -> list[list[StoredCar]]:
    """One group per value of the payload field ``key`` (``car_id``: one per car), ordered by
    its best photo, with the best photos of its best ``size`` cars (``photos`` come best
    first); photos without the field are left out."""
    groups: dict[object, dict[str, StoredCar]] = {}
    for photo in photos:
        value = photo.car_id if key == CAR_ID else getattr(photo.payload, key, None)
        if value is None:
            continue
        group = groups.setdefault(value, {})
        if len(group) < size and photo.car_id not in group:
            group[photo.car_id] = photo
    return [list(group.values()) for group in groups.values()]


def groups_by_fetching(
    search: Callable[[int], list[StoredCar]], key: str, groups: int, size: int, per_car: int = 1
) -> Grouped:
    """Up to ``groups`` groups from ``search(n)`` (the best ``n`` photos), reading four times
    more neighbours while the groups are too few, up to ``FETCH_MAX``, or up to what surely
    holds the cars of ``groups`` groups of cars (``groups`` x ``per_car`` photos)."""
    most = max(FETCH_MAX, groups * per_car) if key == CAR_ID else FETCH_MAX
    fetch = min(most, max(groups * size * 4, 64))
    while True:
        found = search(fetch)
        grouped = group_by(found, key, size)
        if len(grouped) >= groups or len(found) < fetch or fetch >= most:
            return Grouped(grouped[:groups], found)
        fetch = min(most, fetch * 4)
