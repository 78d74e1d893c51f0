"""The model copies a Qdrant server keeps for the index: points of a small collection
(``carsearch_models``), each file in base64 chunks, a manifest point written last (a model
with it is whole). A part of ``ServerEngine``, which provides ``call`` and the client."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.engine import CollectionMissing

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

T = TypeVar("T")
MODELS_COLLECTION = "carsearch_models"
MODEL_CHUNK = 2 << 20  # bytes of a model file per point
_MODELS_NAMESPACE = uuid.UUID("9d2f0c1e-7b8a-4c5d-9e6f-1a2b3c4d5e6f")


class ServerModelCopies:
    client: QdrantClient

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError

    def collections(self) -> list[str]:
        raise NotImplementedError

    def _chunk_id(self, version: str, name: str, index: int) -> str:
        return str(uuid.uuid5(_MODELS_NAMESPACE, f"{version}/{name}/{index}"))

    def _manifest(self, version: str) -> dict[str, int] | None:
        """The model's files and their chunk counts, or None when it is not stored."""
        try:
            found = self.call(
                MODELS_COLLECTION,
                self.client.retrieve,
                MODELS_COLLECTION,
                ids=[self._chunk_id(version, "", 0)],
                with_payload=True,
            )
        except CollectionMissing:
            return None
        return dict(dict(found[0].payload or {})["files"]) if found else None

    def has_model(self, version: str) -> bool:
        return self._manifest(version) is not None

    def put_model(self, version: str, files: dict[str, bytes]) -> None:
        from qdrant_client import models

        if MODELS_COLLECTION not in self.collections():
            self.call(
                "models",
                self.client.create_collection,
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
                self.call(
                    "models", self.client.upsert, MODELS_COLLECTION, points=[point], wait=True
                )
        manifest = models.PointStruct(  # written last: a model with it is whole
            id=self._chunk_id(version, "", 0), vector=[1.0], payload={"files": sizes}
        )
        self.call("models", self.client.upsert, MODELS_COLLECTION, points=[manifest], wait=True)

    def model_versions(self) -> list[str]:
        """Every chunk names its model's version; the versions whose manifest is there."""
        if MODELS_COLLECTION not in self.collections():
            return []
        versions: set[str] = set()
        offset = None
        while True:
            records, offset = self.call(
                "models",
                self.client.scroll,
                MODELS_COLLECTION,
                limit=256,
                offset=offset,
                with_payload=["version"],
                with_vectors=False,
            )
            versions.update(str(v) for r in records if (v := (r.payload or {}).get("version")))
            if offset is None:
                return sorted(v for v in versions if self.has_model(v))

    def get_model(
        self, version: str, names: Collection[str] | None = None
    ) -> dict[str, bytes] | None:
        manifest = self._manifest(version)
        if manifest is None:
            return None
        files = {}
        for name, count in manifest.items():
            if names is not None and name not in names:
                continue
            ids = [self._chunk_id(version, name, i) for i in range(count)]
            records = self.call(
                "models", self.client.retrieve, MODELS_COLLECTION, ids=ids, with_payload=True
            )
            by_id = {str(r.id): base64.b64decode((r.payload or {})["data"]) for r in records}
            files[name] = b"".join(by_id[i] for i in ids)
        return files
