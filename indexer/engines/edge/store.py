"""The embedded engine: Qdrant Edge (Qdrant's own segments, HNSW, payload indexes and WAL) in
this process.

Edge has no collections and no aliases, so the store folder holds them itself (the alias file:
``indexer.engines.edge.aliases``; the model copies: ``indexer.engines.edge.model_copies``)::

    <qdrant_path>/collections/<name>/     one Edge shard per collection version
    <qdrant_path>/collections/<name>/carsearch.json   what its build recorded

A process holds the shards it opens (Edge locks each shard's WAL), not the folder: a build in
another process writes its own new shard and moves ``aliases.json`` (written to a temporary
file, fsynced, renamed) when the shard is complete and closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from carembed.atomic import write_atomically
from indexer.engines.base import (
    BATCH,
    CollectionHeld,
    CollectionMissing,
    NewPoint,
    Query,
    StoreError,
    in_batches,
    scrolled,
)
from indexer.engines.edge import filters as translated
from indexer.engines.edge.aliases import EdgeAliases
from indexer.engines.edge.model_copies import EdgeModelCopies
from indexer.fields import CAR_ID
from indexer.grouping import Grouped, car_beam, groups_by_fetching
from indexer.payload import CarFilter, StoredCar
from indexer.settings import StoreSettings
from indexer.store_format import stamp

logger = logging.getLogger(__name__)

METADATA_FILE = "carsearch.json"
_DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}


def _check_not_local_mode(root: Path) -> None:
    """qdrant-client's local mode (carsearch before Qdrant Edge) left meta.json + collection/."""
    if (root / "meta.json").is_file() or (root / "collection").is_dir():
        raise StoreError(
            f"{root} was written by qdrant-client's local mode (carsearch before Qdrant Edge), "
            "which this version no longer reads. Move it away, then rebuild the index: "
            f"`mv {root} {root}.old && carsearch index --gallery PATH` (cars added through "
            "the API are in data/uploads/: add them again)."
        )


class EdgeEngine:
    name = "edge"
    shared_writes = False

    def __init__(self, settings: StoreSettings) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self._settings = settings
        self.root = settings.qdrant_path
        _check_not_local_mode(self.root)
        self.aliases = EdgeAliases(self.root)
        self.model_copies = EdgeModelCopies(self.root)
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Any] = {}
        self._users: dict[int, int] = {}  # id(shard) -> operations running on it
        self._closing: dict[int, Any] = {}  # let go while in use: closed by the last user
        self._dropping: set[str] = set()  # being dropped by this process: missing already
        self._lock = threading.Lock()

    # -- collections -----------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.root / "collections" / name

    def collections(self) -> list[str]:
        folders = (self.root / "collections").iterdir()
        return sorted(p.name for p in folders if p.is_dir() and not p.name.startswith("."))

    def _config(self, dim: int) -> Any:
        qe, s = self._qe, self._settings
        distance = qe.Distance.Dot if s.distance == "dot" else qe.Distance.Cosine
        hnsw = _DEFAULT_HNSW | {
            k: v for k, v in (("m", s.hnsw_m), ("ef_construct", s.hnsw_ef_construct)) if v
        }
        quantization = (
            qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True)
            if s.quantization == "int8"
            else None
        )
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=distance, on_disk=s.on_disk),
            hnsw_config=qe.HnswIndexConfig(**hnsw),
            quantization_config=quantization,
        )

    def create(self, name: str, dim: int, bulk: bool = False) -> None:
        """``bulk``: the payload indexes are built at ``seal``, before HNSW (writes are faster
        without them)."""
        shard = self._qe.EdgeShard.create(str(self._path(name)), self._config(dim))
        if not bulk:
            self._index_payload(shard)
        self.set_metadata(name, stamp())
        with self._lock:  # from here on another thread may let it go (``release``)
            self._shards[name] = shard

    def _index_payload(self, shard: Any) -> None:
        types = self._qe.PayloadSchemaType
        kinds = {
            "keyword": types.Keyword,
            "integer": types.Integer,
            "float": types.Float,
            "bool": types.Bool,
        }
        wanted = self._settings.fields().indexes()
        for field in sorted(set(wanted) - set(shard.info().payload_schema)):
            shard.update(self._qe.UpdateOperation.create_field_index(field, kinds[wanted[field]]))

    def index_fields(self, name: str) -> None:
        with self._shard(name) as shard:
            self._index_payload(shard)

    @contextlib.contextmanager
    def _shard(self, name: str) -> Iterator[Any]:
        """The open shard of ``name`` for the duration of one operation: a shard let go
        meanwhile (an alias moved, the collection dropped) is closed by its last user."""
        with self._lock:
            if name in self._dropping:
                raise CollectionMissing(f"the collection {name} is being deleted")
            shard = self._shards.get(name)
            if shard is None:
                shard = self._shards[name] = self._load(name)
            self._users[id(shard)] = self._users.get(id(shard), 0) + 1
        try:
            yield shard
        finally:
            with self._lock:
                left = self._users.pop(id(shard)) - 1
                if left:
                    self._users[id(shard)] = left
                last = not left and self._closing.pop(id(shard), None) is not None
            if last:
                shard.close()

    def _load(self, name: str) -> Any:
        path = self._path(name)
        if not (path / "edge_config.json").is_file():
            raise CollectionMissing(f"no collection {name} in {self.root}")
        try:
            return self._qe.EdgeShard.load(str(path))
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise CollectionHeld(
                    f"the collection {name} of the embedded store {self.root} is open in "
                    "another process (a running `carsearch serve`?). Builds write a new "
                    "collection and can run beside the service; changing the live one "
                    "in place (--incremental) must go through that process, or stop it first."
                ) from exc
            raise StoreError(f"the collection {name} cannot be opened: {exc}") from exc

    def _let_go(self, names: list[str]) -> None:
        """Close these collections' shards now, or when their last running operation ends."""
        now = []
        with self._lock:
            for name in names:
                shard = self._shards.pop(name, None)
                if shard is None:
                    continue
                if self._users.get(id(shard)):
                    self._closing[id(shard)] = shard
                else:
                    now.append(shard)
        for shard in now:
            shard.close()

    def drop(self, name: str) -> None:
        """Delete the collection; CollectionHeld (nothing deleted) while another process holds
        it. Its folder is moved away while this process holds its lock, so no other process
        can open it half deleted; meanwhile it is missing to this process's other threads."""
        with self._lock:
            self._dropping.add(name)
        try:
            self._let_go([name])
            path = self._path(name)
            if not path.is_dir():
                return
            shard = self._load(name) if (path / "edge_config.json").is_file() else None
            trash = path.with_name(f".dropped-{name}-{uuid.uuid4().hex}")
            try:
                os.replace(path, trash)
            finally:
                if shard is not None:
                    shard.close()
        finally:
            with self._lock:
                self._dropping.discard(name)
        shutil.rmtree(trash, ignore_errors=True)

    def release(self, keep: set[str]) -> None:
        with self._lock:
            gone = [name for name in self._shards if name not in keep]
        self._let_go(gone)

    # -- points ----------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[NewPoint]) -> None:
        qe = self._qe
        batch = [
            qe.Point(p.id, np.asarray(p.vector, np.float32), p.payload.to_payload()) for p in points
        ]
        if batch:
            with self._shard(name) as shard:
                shard.update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._shard(name) as shard:
            for batch in in_batches(ids):
                shard.update(self._qe.UpdateOperation.delete_points(batch))

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, with_payload: bool = True
    ) -> list[StoredCar]:
        with self._shard(name) as shard:
            records = shard.retrieve(list(ids), with_payload=with_payload, with_vector=with_vectors)
        return [StoredCar.from_point(r.id, r.payload, vector=r.vector) for r in records]

    def scroll(
        self, name: str, fields: Sequence[str] | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        with_payload = True if fields is None else list(fields)

        def read_page(offset: Any) -> tuple[Sequence[Any], Any]:
            request = self._qe.ScrollRequest(
                offset=offset, limit=BATCH, with_payload=with_payload, with_vector=False
            )
            with self._shard(name) as shard:
                return shard.scroll(request)  # type: ignore[no-any-return]

        return scrolled(read_page)

    def set_payload(self, name: str, point: str, fields: dict[str, Any]) -> None:
        with self._shard(name) as shard:
            shard.update(self._qe.UpdateOperation.set_payload([point], fields))

    def count(self, name: str) -> int:
        with self._shard(name) as shard:
            return int(shard.count(self._qe.CountRequest(exact=True)))

    def page(
        self, name: str, where: CarFilter, limit: int, after: str | None
    ) -> tuple[list[StoredCar], str | None]:
        request = self._qe.ScrollRequest(
            offset=after,
            limit=limit,
            filter=translated.filter_of(self._qe, where),
            with_payload=True,
        )
        with self._shard(name) as shard:
            records, following = shard.scroll(request)
        cars = [StoredCar.from_point(r.id, r.payload) for r in records]
        return cars, None if following is None else str(following)

    def facet(self, name: str, key: str, where: CarFilter, limit: int) -> list[tuple[Any, int]]:
        request = self._qe.FacetRequest(
            key, limit=limit, exact=True, filter=translated.filter_of(self._qe, where)
        )
        with self._shard(name) as shard:
            hits = shard.facet(request).hits
        return [(h.value, int(h.count)) for h in hits]

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
        qe = self._qe
        request = qe.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=translated.query_of(self._qe, vector),
            filter=translated.filter_of(self._qe, where),
            score_threshold=score_threshold,
            params=translated.search_params(self._qe, self._settings, beam),
            with_payload=True if fields is None else list(fields),
        )
        with self._shard(name) as shard:
            points = shard.query(request)
        return [StoredCar.from_point(p.id, p.payload, p.score) for p in points]

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
        """Edge has no grouped search: neighbours are read until the groups are full."""
        wanted = None if fields is None else list(dict.fromkeys([*fields, key, CAR_ID]))
        return groups_by_fetching(
            lambda n: self.search(
                name,
                vector,
                where,
                n,
                0,
                score_threshold,
                wanted,
                car_beam(key, n, self._settings.page_beam),
            ),
            key,
            groups,
            size,
            per_car,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def metadata(self, name: str) -> dict[str, Any]:
        path = self._path(name) / METADATA_FILE
        return dict(json.loads(path.read_bytes())) if path.is_file() else {}

    def set_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        if not self._path(name).is_dir():
            raise CollectionMissing(f"no collection {name} in {self.root}")
        write_atomically(self._path(name) / METADATA_FILE, json.dumps(metadata).encode())

    def optimize(self, name: str) -> None:
        with self._shard(name) as shard:
            self._index_payload(shard)
            shard.optimize()
            shard.flush()

    def seal(self, name: str) -> None:
        self.optimize(name)
        self.hand_over(name)

    def hand_over(self, name: str) -> None:
        """Flush and close the shard: another process (the service) opens it once the alias
        names it."""
        with self._shard(name) as shard:
            shard.flush()
        self._let_go([name])

    def snapshot(self, name: str, out: Path) -> Path:
        raise StoreError(
            "snapshots are made by a Qdrant server; the embedded store is a folder of shards: "
            f"copy {self.root} (aliases.json and the collections it names) while no build runs"
        )

    def close(self) -> None:
        self.release(set())
        with self._lock:
            shards = list(self._closing.values())
            self._closing.clear()
        for shard in shards:  # the process is ending: nothing else runs on them
            shard.close()
