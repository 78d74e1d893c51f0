"""The production engine: a Qdrant server or cluster through qdrant-client, every call with a
timeout and transient failures retried with exponential backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from carembed.atomic import staged_file
from indexer.engines.base import (
    BATCH,
    CollectionMissing,
    NewPoint,
    Query,
    StoreError,
    in_batches,
    scrolled,
)
from indexer.engines.qdrant_server import filters as translated
from indexer.engines.qdrant_server.aliases import ServerAliases
from indexer.engines.qdrant_server.connection import ServerConnection
from indexer.engines.qdrant_server.model_copies import ServerModelCopies
from indexer.fields import CAR_ID
from indexer.grouping import Grouped, car_beam, group_by
from indexer.payload import CarFilter, StoredCar
from indexer.settings import StoreSettings
from indexer.store_format import stamp

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)
OPTIMIZE_WAIT_S = 600


class ServerEngine:
    name = "server"
    shared_writes = True

    def __init__(self, settings: StoreSettings, client: QdrantClient | None = None) -> None:
        """``client``: another qdrant-client (its local mode stands in for a server in the
        tests); by default ``ServerConnection``'s two for ``settings.qdrant_url``."""
        self._settings = settings
        self.connection = ServerConnection(settings, client)
        self.call = self.connection.call
        self.aliases = ServerAliases(self.connection)
        self.model_copies = ServerModelCopies(self.connection)

    @property
    def client(self) -> QdrantClient:
        return self.connection.client

    # -- collections -----------------------------------------------------------------------
    def collections(self) -> list[str]:
        return self.connection.collections()

    def create(self, name: str, dim: int, bulk: bool = False) -> None:
        """Payload indexes come first on a server: its HNSW links for filters need them."""
        from qdrant_client import models

        s = self._settings
        params: dict[str, Any] = {}
        if s.hnsw_m or s.hnsw_ef_construct:
            params["hnsw_config"] = models.HnswConfigDiff(
                m=s.hnsw_m, ef_construct=s.hnsw_ef_construct
            )
        if s.quantization == "int8":
            params["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            )
        for option in ("shard_number", "replication_factor", "write_consistency_factor"):
            if getattr(s, option) is not None:
                params[option] = getattr(s, option)
        distance = models.Distance.DOT if s.distance == "dot" else models.Distance.COSINE
        self.call(
            "create collection",
            self.client.create_collection,
            name,
            vectors_config=models.VectorParams(
                size=dim, distance=distance, on_disk=s.on_disk or None
            ),
            **params,
        )
        self.set_metadata(name, stamp())
        self._index(name, set())

    def index_fields(self, name: str) -> None:
        info = self.call(name, self.client.get_collection, name)
        self._index(name, set(info.payload_schema or {}))

    def _index(self, name: str, present: set[str]) -> None:
        from qdrant_client import models

        for field, kind in self._settings.fields().indexes().items():
            if field not in present:
                self.call(
                    "payload index",
                    self.client.create_payload_index,
                    name,
                    field,
                    field_schema=models.PayloadSchemaType(kind),
                )

    def drop(self, name: str) -> None:
        self.call("drop", self.client.delete_collection, name)

    def release(self, keep: set[str]) -> None:
        """Nothing is held: the server owns its collections."""

    # -- points ----------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[NewPoint]) -> None:
        from qdrant_client import models

        structs = [
            models.PointStruct(
                id=p.id, vector=np.asarray(p.vector).tolist(), payload=p.payload.to_payload()
            )
            for p in points
        ]
        if structs:
            self.call(name, self.client.upsert, name, points=structs, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        from qdrant_client import models

        for batch in in_batches(ids):
            self.call(
                name,
                self.client.delete,
                name,
                points_selector=models.PointIdsList(points=batch),
                wait=True,
            )

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, with_payload: bool = True
    ) -> list[StoredCar]:
        records = self.call(
            name,
            self.client.retrieve,
            name,
            ids=list(ids),
            with_payload=with_payload,
            with_vectors=with_vectors,
        )
        return [StoredCar.from_point(r.id, r.payload, vector=r.vector) for r in records]

    def scroll(
        self, name: str, fields: Sequence[str] | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        def read_page(offset: Any) -> tuple[Sequence[Any], Any]:
            return self.call(
                name,
                self.client.scroll,
                name,
                limit=BATCH,
                offset=offset,
                with_payload=True if fields is None else list(fields),
                with_vectors=False,
            )

        return scrolled(read_page)

    def set_payload(self, name: str, point: str, fields: dict[str, Any]) -> None:
        self.call(name, self.client.set_payload, name, payload=fields, points=[point], wait=True)

    def count(self, name: str) -> int:
        return int(self.call(name, self.client.count, name, exact=True).count)

    def page(
        self, name: str, where: CarFilter, limit: int, after: str | None
    ) -> tuple[list[StoredCar], str | None]:
        records, following = self.call(
            name,
            self.client.scroll,
            name,
            scroll_filter=translated.filter_of(where),
            limit=limit,
            offset=after,
            with_payload=True,
            with_vectors=False,
        )
        cars = [StoredCar.from_point(r.id, r.payload) for r in records]
        return cars, None if following is None else str(following)

    def facet(self, name: str, key: str, where: CarFilter, limit: int) -> list[tuple[Any, int]]:
        response = self.call(
            name,
            self.client.facet,
            name,
            key,
            facet_filter=translated.filter_of(where),
            limit=limit,
            exact=True,
        )
        return [(h.value, int(h.count)) for h in response.hits]

    def search(
        self,
        name: str,
        vector: Query,
        where: CarFilter,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        fields: Sequence[str] | None = None,
        beam: int | None = None,
    ) -> list[StoredCar]:
        result = self.call(
            name,
            self.client.query_points,
            name,
            query=translated.query_of(vector),
            query_filter=translated.filter_of(where),
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
            search_params=translated.search_params(self._settings, beam),
            with_payload=True if fields is None else list(fields),
        )
        return [StoredCar.from_point(p.id, p.payload, p.score) for p in result.points]

    def search_groups(
        self,
        name: str,
        vector: Query,
        where: CarFilter,
        key: str,
        groups: int,
        size: int,
        fields: Sequence[str] | None,
        score_threshold: float | None = None,
        per_car: int = 1,
    ) -> Grouped:
        """The server's own grouped search (one request, whatever the group sizes); groups of
        another field than the car read enough photos per group to hold ``size`` cars."""
        result = self.call(
            name,
            self.client.query_points_groups,
            name,
            group_by=key,
            query=translated.query_of(vector),
            query_filter=translated.filter_of(where),
            limit=groups,
            group_size=size if key == CAR_ID else size * per_car,
            score_threshold=score_threshold,
            search_params=translated.search_params(
                self._settings, car_beam(key, groups, self._settings.page_beam)
            ),
            with_payload=True if fields is None else list(dict.fromkeys([*fields, key, CAR_ID])),
        )
        photos = [
            [StoredCar.from_point(p.id, p.payload, p.score) for p in group.hits]
            for group in result.groups
        ]
        return Grouped([group_by(group, key, size)[0] for group in photos if group])

    # -- lifecycle -------------------------------------------------------------------------
    def metadata(self, name: str) -> dict[str, Any]:
        info = self.call(name, self.client.get_collection, name)
        return dict(info.config.metadata or {})

    def set_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        try:
            self.call(name, self.client.update_collection, name, metadata=metadata)
        except CollectionMissing:
            raise
        except Exception as exc:  # a server without collection metadata: shortcuts are lost
            logger.info("collection metadata not stored (%s)", type(exc).__name__)

    def optimize(self, name: str) -> None:
        """Wait (bounded) until the server's optimizers have indexed what was written; the
        collection answers searches meanwhile."""
        from qdrant_client import models

        deadline = time.monotonic() + OPTIMIZE_WAIT_S
        while time.monotonic() < deadline:
            info = self.call(name, self.client.get_collection, name)
            if info.status == models.CollectionStatus.GREEN:
                return
            time.sleep(0.5)
        logger.warning("%s is still being indexed after %d s; going on", name, OPTIMIZE_WAIT_S)

    def seal(self, name: str) -> None:
        self.optimize(name)

    def hand_over(self, name: str) -> None:
        """Nothing is held: the server owns its collections."""

    def snapshot(self, name: str, out: Path) -> Path:
        """Create a snapshot of the collection on the server and download it into ``out``."""
        import httpx

        settings = self._settings
        if settings.qdrant_url is None:
            raise StoreError("snapshots are made by a Qdrant server: give its --qdrant-url")
        try:
            description = self.call("snapshot", self.client.create_snapshot, name, wait=True)
        except NotImplementedError as exc:  # qdrant-client's local mode
            raise StoreError(f"this store makes no snapshots: {exc}") from exc
        if description is None:
            raise StoreError(f"the server did not create a snapshot of {name}")
        out.mkdir(parents=True, exist_ok=True)
        target = out / description.name
        headers = {}
        if settings.qdrant_api_key is not None:
            headers["api-key"] = settings.qdrant_api_key.get_secret_value()
        url = f"{settings.qdrant_url.rstrip('/')}/collections/{name}/snapshots/{description.name}"
        with (
            staged_file(target) as partial,
            httpx.stream(
                "GET", url, headers=headers, timeout=settings.qdrant_timeout_s
            ) as response,
        ):
            response.raise_for_status()
            with partial.open("wb") as fh:
                for chunk in response.iter_bytes(1 << 20):
                    fh.write(chunk)
        return target

    def close(self) -> None:
        self.connection.close()


def open_server(settings: StoreSettings) -> ServerEngine:
    try:
        return ServerEngine(settings)
    except Exception as exc:
        raise StoreError(f"cannot connect to the Qdrant server at {settings.qdrant_url}") from exc
