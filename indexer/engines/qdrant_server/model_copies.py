"""The model copies a Qdrant server keeps for the index: points of a small collection
(``carsearch_models``), each file in base64 chunks, a manifest point written last (a model
with it is whole). Made over the engine's
``ServerConnection``."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection

from indexer.engines.base import CollectionMissing
from indexer.engines.qdrant_server.connection import ServerConnection

MODELS_COLLECTION = "carsearch_models"
MODEL_CHUNK = 2 << 20  # bytes of a model file per point
_MODELS_NAMESPACE = uuid.UUID("9d2f0c1e-7b8a-4c5d-9e6f-1a2b3c4d5e6f")


class ServerModelCopies:
    def __init__(self, connection: ServerConnection) -> None:
        self._server = connection

    def _chunk_id(self, version: str, name: str, index: int) -> str:
        return str(uuid.uuid5(_MODELS_NAMESPACE, f"{version}/{name}/{index}"))

    def _manifest(self, version: str) -> dict[str, int] | None:
        """The model's files and their chunk counts, or None when it is not stored."""
        try:
            found = self._server.call(
                MODELS_COLLECTION,
                self._server.client.retrieve,
                MODELS_COLLECTION,
                ids=[self._chunk_id(version, "", 0)],
                with_payload=True,
            )
        except CollectionMissing:
            return None
        return dict(dict(found[0].payload or {})["files"]) if found else None

    def has(self, version: str) -> bool:
        return self._manifest(version) is not None

    def put(self, version: str, files: dict[str, bytes]) -> None:
        from qdrant_client import models

        if MODELS_COLLECTION not in self._server.collections():
            self._server.call(
                "models",
                self._server.client.create_collection,
                MODELS_COLLECTION,
                vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT),
            )
        sizes = {}
        for name, data in files.items():
            chunks = [data[i : i + MODEL_CHUNK] for i in range(0, len(data), MODEL_CHUNK)] or [b""]
            sizes[name] = len(chunks)
            for index, chunk in enumerate(chunks):
                point = models.PointStruct(
                    id=self._chunk_id(version, name, index),
                    vector=[1.0],
                    payload={"version": version, "data": base64.b64encode(chunk).decode()},
                )
                self._server.call(
                    "models",
                    self._server.client.upsert,
                    MODELS_COLLECTION,
                    points=[point],
                    wait=True,
                )
        manifest = models.PointStruct(  # written last: a model with it is whole
            id=self._chunk_id(version, "", 0), vector=[1.0], payload={"files": sizes}
        )
        self._server.call(
            "models", self._server.client.upsert, MODELS_COLLECTION, points=[manifest], wait=True
        )

    def versions(self) -> list[str]:
        """Every chunk names its model's version; the versions whose manifest is there."""
        if MODELS_COLLECTION not in self._server.collections():
            return []
        versions: set[str] = set()
        offset = None
        while True:
            records, offset = self._server.call(
                "models",
                self._server.client.scroll,
                MODELS_COLLECTION,
                limit=256,
                offset=offset,
                with_payload=["version"],
                with_vectors=False,
            )
            versions.update(str(v) for r in records if (v := (r.payload or {}).get("version")))
            if offset is None:
                return sorted(v for v in versions if self.has(v))

    def get(self, version: str, names: Collection[str] | None = None) -> dict[str, bytes] | None:
        manifest = self._manifest(version)
        if manifest is None:
            return None
        files = {}
        for name, count in manifest.items():
            if names is not None and name not in names:
                continue
            ids = [self._chunk_id(version, name, i) for i in range(count)]
            records = self._server.call(
                "models",
                self._server.client.retrieve,
                MODELS_COLLECTION,
                ids=ids,
                with_payload=True,
            )
            by_id = {str(r.id): base64.b64decode((r.payload or {})["data"]) for r in records}
            files[name] = b"".join(by_id[i] for i in ids)
        return files
