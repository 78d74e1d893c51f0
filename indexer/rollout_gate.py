"""The quality gate as a build of ``CarIndex`` runs it: which classes the two models trained on
(their ``config.json``), and the live model's vectors, read from its collection or, when
another process holds that collection (the embedded store beside a running service), embedded
again with the model stored with the index."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carembed.embedder import Embedder
from carembed.identity import EmbeddingVersion, parse_embedding_version
from indexer.engines.base import StoreError, VectorStore
from indexer.gate import GateError, GatePolicy, GateRefused, TrainedOn, VectorsOf, judge
from indexer.model_copies import ModelCopies
from indexer.versions import embedding_version_of

logger = logging.getLogger(__name__)


def trained_on(*configs: dict[str, Any] | None) -> TrainedOn:
    """Whether any of these models trained on a photo: its class is among the classes the
    model records, and the photo is not among those it records it held out."""
    records = [(c or {}).get("training") or {} for c in configs]
    known = [
        ({str(c) for c in t.get("class_names") or []}, {str(i) for i in t.get("held_out") or []})
        for t in records
    ]

    def trained(car_id: str, class_name: str) -> bool:
        return any(class_name in classes and car_id not in held for classes, held in known)

    return trained


@dataclass(frozen=True)
class RolloutGate:
    """The gate of one build: ``embedder`` made the new collection from ``gallery`` (and the
    uploads in ``uploads``); ``models`` holds the live model's copy."""

    store: VectorStore
    model_copies: ModelCopies
    uploads: Path
    onnx_dir: Path
    embedder: Embedder
    gallery: Path
    policy: GatePolicy

    def _embedded(self, live: EmbeddingVersion | None, new: str) -> VectorsOf | None:
        model = None if live is None else self.model_copies.load(live.model_version)
        if live is None or model is None:
            return None
        # ONNX Runtime makes int8 vectors; float32 ones come from the engine this build uses.
        on_torch = live.precision == "float32" and self.embedder.backend == "torch"
        embedder = Embedder(
            model,
            device=self.embedder.device if on_torch else "cpu",
            batch_size=self.embedder.batch_size,
            engine="torch" if on_torch else "onnx",
            onnx_dir=self.onnx_dir,
            precision=live.precision,
        )

        def embed(ids: Sequence[str]) -> dict[str, np.ndarray]:
            files = []
            for car in self.store.retrieve(new, list(ids)):
                root = self.uploads if car.payload.source == "upload" else self.gallery
                files.append((car.id, root / (car.payload.path or "")))
            vectors: dict[str, np.ndarray] = {}
            for batch in embedder.embed_files([f for _, f in files]):
                for i, vector in zip(batch.indices, batch.vectors, strict=True):
                    vectors[files[i][0]] = vector
            return vectors

        return embed

    def check(self, live: str, new: str) -> dict[str, Any]:
        """The verdict on moving the alias from ``live`` to ``new``, as recorded; GateRefused
        when the new model may not go live, GateError when the gate could not judge it."""
        try:
            return self._check(live, new)
        except GateRefused:
            raise
        except Exception as exc:  # whatever stopped it, the alias must not move
            raise GateError(
                f"the quality gate could not judge {new} against {live} "
                f"({type(exc).__name__}: {exc}); the alias stays on {live}"
            ) from exc

    def _check(self, live: str, new: str) -> dict[str, Any]:
        live_version = parse_embedding_version(embedding_version_of(live))
        trained = trained_on(
            self.embedder.model.config.model_dump(),
            None if live_version is None else self.model_copies.config(live_version.model_version),
        )
        vectors = None
        try:
            self.store.count(live)
        except StoreError:
            logger.info("the live collection is held by another process: embedding its sample")
            vectors = self._embedded(live_version, new)
        verdict = judge(self.store, live, new, trained, self.policy, vectors)
        for line in verdict.lines():
            logger.info("%s", line)
        if not verdict.passed and not self.policy.force:
            raise GateRefused(verdict)
        return verdict.record()
