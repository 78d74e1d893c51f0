"""The quality gate as a build of ``CarIndex`` runs it: which classes the two models trained on
(their ``config.json``), and the live model's vectors, read from its collection or, when
another process holds that collection (the embedded store beside a running service), embedded
again with the model stored with the index."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from carembed.embedder import Embedder
from indexer.engine import StoreError
from indexer.gate import GatePolicy, GateRefused, VectorsOf, judge
from indexer.versions import model_version_of

if TYPE_CHECKING:
    from indexer.index import CarIndex

logger = logging.getLogger(__name__)


def trained_classes(config: dict[str, Any] | None) -> set[str]:
    """The classes a model records it trained on."""
    training = (config or {}).get("training") or {}
    return {str(c) for c in training.get("class_names") or []}


class RolloutGate:
    def __init__(
        self, index: CarIndex, embedder: Embedder, gallery: Path, policy: GatePolicy
    ) -> None:
        self._index, self._embedder, self._gallery, self._policy = index, embedder, gallery, policy

    def _embedded(self, live_version: str, new: str) -> VectorsOf | None:
        model = self._index.models.load(live_version)
        if model is None:
            return None
        embedder = Embedder(model, batch_size=self._embedder.batch_size)

        def embed(ids: Sequence[str]) -> dict[str, np.ndarray]:
            files = []
            for car in self._index.get_many(new, list(ids)):
                root = (
                    self._index.ledger.uploads_dir
                    if car.payload.source == "upload"
                    else self._gallery
                )
                files.append((car.id, root / (car.payload.path or "")))
            vectors: dict[str, np.ndarray] = {}
            for batch in embedder.embed_files([f for _, f in files]):
                for i, vector in zip(batch.indices, batch.vectors, strict=True):
                    vectors[files[i][0]] = vector
            return vectors

        return embed

    def check(self, live: str, new: str) -> dict[str, Any]:
        """The verdict on moving the alias from ``live`` to ``new``, as recorded; GateRefused
        when the new model may not go live."""
        index, live_version = self._index, model_version_of(live) or ""
        trained = trained_classes(self._embedder.model.config.model_dump())
        trained |= trained_classes(index.models.config(live_version))
        vectors = None
        try:
            index.engine.count(live)
        except StoreError:
            logger.info("the live collection is held by another process: embedding its sample")
            vectors = self._embedded(live_version, new)
        verdict = judge(index.engine, live, new, trained, self._policy, vectors)
        for line in verdict.lines():
            logger.info("%s", line)
        if not verdict.passed and not self._policy.force:
            raise GateRefused(verdict)
        return verdict.record()
