"""Each point's density in its collection (the mean score of its nearest others, which the
identification's votes subtract), on both engines, against exact cosine scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carembed.calibration import DENSITY_K
from carembed.embedder import Embedder
from indexer.density import DENSITIES_KEY
from indexer.index import CarIndex
from indexer.payload import CarFields
from tests.conftest import scene
from tests.indexer.conftest import jpeg


def _densities(
    index: CarIndex, collection: str
) -> tuple[dict[str, float | None], np.ndarray, list[str]]:
    ids = [pid for pid, _ in index.engine.scroll(collection, ["source"])]
    cars = index.engine.retrieve(collection, ids, with_vectors=True)
    vectors = np.array([c.vector for c in cars])
    return {c.id: c.payload.density for c in cars}, vectors, [c.id for c in cars]


def _expected(vectors: np.ndarray, i: int, among: np.ndarray) -> float:
    scores = np.sort(among @ vectors[i])[::-1][:DENSITY_K]
    return float(scores.mean())


def test_every_point_gets_its_density_among_the_others(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    live = index.build(small_embedder, gallery, progress=False).collection
    stored, vectors, ids = _densities(index, live)
    assert len(ids) == 9
    for i, pid in enumerate(ids):
        others = np.delete(vectors, i, axis=0)
        assert stored[pid] == pytest.approx(_expected(vectors, i, others), abs=1e-4)
    # A car added through the API: its density among the cars there; theirs stay.
    data = jpeg(77)
    vector = small_embedder.embed([scene(77)])[0]
    added = index.add_photo(
        small_embedder.version, data, "jpg", (160, 96), vector, CarFields(make="Kia")
    )
    after, _, _ = _densities(index, live)
    stored_vector = np.array(index.engine.retrieve(live, [added.id], with_vectors=True)[0].vector)
    assert after[added.id] == pytest.approx(
        float(np.mean(np.sort(vectors @ stored_vector)[::-1])), abs=1e-4
    )
    assert {pid: after[pid] for pid in ids} == stored
    # A gallery photo an incremental build adds: among all the others too.
    scene(999).save(gallery / "Audi_TTS_Coupe_2012" / "new.jpg")
    index.update(small_embedder, gallery, progress=False)
    final, vectors, ids = _densities(index, live)
    new = next(pid for pid in ids if final[pid] is not None and pid not in after)
    i = ids.index(new)
    assert final[new] == pytest.approx(
        _expected(vectors, i, np.delete(vectors, i, axis=0)), abs=1e-4
    )


def test_a_collection_built_before_densities_is_rebuilt_with_them(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    first = index.build(small_embedder, gallery, progress=False).collection
    # As an earlier version left it: no densities recorded.
    index.engine.set_metadata(first, index.engine.metadata(first) | {DENSITIES_KEY: None})
    again = index.build(small_embedder, gallery, progress=False)
    assert again.collection != first and again.indexed == 0  # its vectors copied, not embedded
    stored, _, _ = _densities(index, again.collection)
    assert len(stored) == 9 and None not in stored.values()
