"""Each point's density in its collection: the mean score of its ``DENSITY_K`` nearest other
points (``carembed.calibration``), kept in its payload for the identification's votes.

A point written into a collection gets its density from the points there at that moment
(``with_density``); a full build writes every point first and then gives them all their
densities (``refresh_densities``), before the collection serves. Points written later do not
change the densities of the points already there: the next full build refreshes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from carembed.calibration import DENSITY_K
from indexer.engines.base import NewPoint, VectorStore
from indexer.payload import DENSITY, CarFilter

logger = logging.getLogger(__name__)

BATCH = 256
DENSITIES_KEY = "densities"
"""Collection metadata: every point got its density (of this many neighbours) at its build."""


def density_of(
    store: VectorStore, collection: str, vector: np.ndarray | list[float], car: str
) -> float | None:
    """The mean score of the ``DENSITY_K`` points nearest ``vector`` in ``collection``, the
    photos of its own car left out; None in a collection without other cars."""
    near = store.search(
        collection, vector, CarFilter(exclude_cars=frozenset({car})), DENSITY_K, fields=["source"]
    )
    scores = [c.score for c in near if c.score is not None]
    return round(float(np.mean(scores)), 6) if scores else None


def with_density(store: VectorStore, collection: str, points: Sequence[NewPoint]) -> list[NewPoint]:
    """``points`` with their densities among the other cars' points of ``collection``."""
    return [
        NewPoint(
            p.id,
            p.vector,
            p.payload.model_copy(
                update={DENSITY: density_of(store, collection, p.vector, p.payload.car_id or p.id)}
            ),
        )
        for p in points
    ]


def refresh_densities(store: VectorStore, collection: str) -> int:
    """Give every point of ``collection`` its density among all the others (a collection no
    other process writes to yet), searching its HNSW graph (built first); the points are
    written again, so the caller indexes the collection once more (``seal``). Returns how many
    points it read."""
    store.optimize(collection)
    ids = [pid for pid, _ in store.scroll(collection, ["source"])]
    for start in range(0, len(ids), BATCH):
        cars = store.retrieve(collection, ids[start : start + BATCH], with_vectors=True)
        store.upsert(
            collection,
            with_density(
                store,
                collection,
                [NewPoint(c.id, c.vector, c.payload) for c in cars if c.vector is not None],
            ),
        )
    logger.info("densities of the %d points of %s", len(ids), collection)
    return len(ids)
