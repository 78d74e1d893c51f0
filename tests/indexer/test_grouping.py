"""Grouped search on both engines (the server's own grouping; Edge reads neighbours until the
groups are full), against the oracle: the whole ranking grouped by class."""

from __future__ import annotations

from pathlib import Path

import pytest

from carembed.embedder import Embedder
from indexer.grouping import group_by
from indexer.index import CarIndex
from indexer.payload import CarFilter
from tests.indexer.conftest import make_gallery


@pytest.mark.parametrize(("groups", "size"), [(2, 2), (3, 1), (10, 5)])
def test_groups_are_the_best_cars_of_each_class_best_group_first(
    index: CarIndex, tmp_path: Path, small_embedder: Embedder, groups: int, size: int
) -> None:
    gallery = make_gallery(tmp_path / "gallery", per_class=4)
    live = index.build(small_embedder, gallery, progress=False).collection
    query = small_embedder.embed([next(gallery.rglob("2.jpg"))])[0]
    everything = index.search(live, query, CarFilter(), 100, fields=["class_name"])
    expected = group_by(everything, "class_name", size)[:groups]
    grouped = index.search_groups(
        live, query, CarFilter(), "class_name", groups, size, ["make", "year"]
    )
    found = grouped.groups
    if grouped.nearest is not None:  # read to make the groups: the ranking, best first
        assert [c.id for c in grouped.nearest] == [c.id for c in everything][: len(grouped.nearest)]
    assert [[c.id for c in g] for g in found] == [[c.id for c in g] for g in expected]
    for group, oracle in zip(found, expected, strict=True):
        assert [c.score for c in group] == pytest.approx([c.score for c in oracle], abs=1e-4)
        assert len({c.payload.class_name for c in group}) == 1 and group[0].payload.make
    assert len(found) == min(groups, 3)  # three classes in the gallery


def test_groups_keep_to_the_filter(
    index: CarIndex, gallery: Path, small_embedder: Embedder
) -> None:
    live = index.build(small_embedder, gallery, progress=False).collection
    query = small_embedder.embed([next(gallery.rglob("0.jpg"))])[0]
    make = index.get_many(live, [index.search(live, query, CarFilter(), 1)[0].id])[0].payload.make
    found = index.search_groups(live, query, CarFilter(make=make), "class_name", 5, 5, []).groups
    assert found and all(c.payload.class_name for g in found for c in g)
    cars = index.get_many(live, [c.id for g in found for c in g])
    assert {c.payload.make for c in cars} == {make}
