"""What the car index needs from a store, in three parts: a vector store (collections, points,
search, facets), an alias registry (which collection each alias names, moved by
compare-and-swap) and a model-copy store (the model folders that made the vectors). Two engines
provide all three, each in its own package: Qdrant Edge in-process (``indexer.engines.edge``,
the embedded default) and a Qdrant server through qdrant-client
(``indexer.engines.qdrant_server``). Neither knows payload fields or alias rules: those live in
``indexer.payload`` and ``indexer.versions``; what a build does is planned in
``indexer.build_plan``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from indexer.grouping import Grouped
from indexer.payload import CarFilter, CarPayload, StoredCar
from indexer.versions import AliasState

T = TypeVar("T")

_SINGLE_ATTEMPT: ContextVar[bool] = ContextVar("carsearch_single_attempt", default=False)


def single_attempt(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` with every store call in it tried once: what a request that has a
    deadline uses (a store that fails answers 503 at once, and no thread keeps retrying after
    the request gave up). Background work (builds, start-up indexing) retries."""
    token = _SINGLE_ATTEMPT.set(True)
    try:
        return call(*args)
    finally:
        _SINGLE_ATTEMPT.reset(token)


def retries_allowed() -> bool:
    """False inside ``single_attempt``."""
    return not _SINGLE_ATTEMPT.get()


class StoreError(RuntimeError):
    """The store cannot be used: held by another process, unreachable, of an old format."""


class CollectionHeld(StoreError):
    """Another process holds this collection (the embedded store: a build writing it, or a
    service serving it); this one can write it once that process lets it go."""


def check_alias(expected: AliasState, found: AliasState) -> None:
    """The compare of an alias move's compare-and-swap: StoreError when the alias is not
    where the move expected it (another process moved it)."""
    if found != expected:
        raise StoreError(
            f"the alias {expected.alias!r} was moved by another process meanwhile "
            f"(now {found.live}); run the command again"
        )


BATCH = 1024
"""Points per request when an engine reads or deletes many."""


def in_batches(ids: Sequence[str]) -> Iterator[list[Any]]:
    """``ids`` in lists of at most ``BATCH``."""
    for start in range(0, len(ids), BATCH):
        yield list(ids[start : start + BATCH])


def scrolled(
    read_page: Callable[[Any], tuple[Sequence[Any], Any]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record of a scroll as (id, payload): ``read_page(offset)`` reads ``BATCH`` records
    from ``offset`` (None: the start) and says where the next page starts (None: the end)."""
    offset = None
    while True:
        records, offset = read_page(offset)
        for record in records:
            yield str(record.id), dict(record.payload or {})
        if offset is None:
            return


class CollectionMissing(LookupError):
    """The collection does not exist (deleted by a newer build, or never built)."""


@dataclass(frozen=True)
class Recommend:
    """Cars near the ``positives`` and far from the ``negatives`` (unit vectors): Qdrant's
    recommend query with the best-score strategy on both engines (a car's score is its
    similarity to the nearest positive when that beats the nearest negative, else negative)."""

    positives: tuple[np.ndarray, ...]
    negatives: tuple[np.ndarray, ...] = ()


Query = Sequence[float] | np.ndarray | Recommend
"""What a search looks for: the cars nearest a vector, or a recommendation."""


@dataclass(frozen=True)
class NewPoint:
    id: str
    vector: np.ndarray | list[float]  # unit length
    payload: CarPayload


class AliasRegistry(Protocol):
    def state(self, alias: str) -> AliasState:
        """The collections ``alias`` and its previous alias name now."""

    def move(self, before: AliasState, after: AliasState) -> None:
        """Point the aliases of ``after`` at its collections in one atomic step, as a
        compare-and-swap: StoreError (nothing moved, or the move reported lost) when they are
        not at ``before``, moved by another process."""


class ModelCopyStore(Protocol):
    def has(self, version: str) -> bool:
        """Whether the model of this embedding version is stored whole."""

    def put(self, version: str, files: dict[str, bytes]) -> None:
        """Keep a servable model folder's files under its version."""

    def get(self, version: str, names: Collection[str] | None = None) -> dict[str, bytes] | None:
        """The stored model's files (``names``: only these), or None when it is not whole."""

    def versions(self) -> list[str]:
        """The versions of the models stored whole, sorted."""


class VectorStore(Protocol):
    name: str
    shared_writes: bool
    """Whether several processes can write one collection at once (a server: yes; the
    embedded store: a collection is written by the one process that holds it)."""

    def collections(self) -> list[str]: ...

    def create(self, name: str, dim: int, bulk: bool = False) -> None:
        """A collection for ``dim``-d unit vectors with the payload indexes of the settings'
        fields (``bulk``: an engine may build them at ``seal`` instead, after the bulk of the
        writes), its metadata stamped with the store format (``indexer.store_format``)."""

    def index_fields(self, name: str) -> None:
        """Add the payload indexes the collection lacks (attributes declared since it was
        made)."""

    def drop(self, name: str) -> None: ...

    def upsert(self, name: str, points: Sequence[NewPoint]) -> None:
        """Write and wait until the points are searchable."""

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, with_payload: bool = True
    ) -> list[StoredCar]: ...

    def scroll(
        self, name: str, fields: Sequence[str] | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and the named payload fields (None: the whole payload)."""

    def set_payload(self, name: str, point: str, fields: dict[str, Any]) -> None:
        """Change these payload fields of one point (the others stay)."""

    def count(self, name: str) -> int: ...

    def page(
        self, name: str, where: CarFilter, limit: int, after: str | None
    ) -> tuple[list[StoredCar], str | None]:
        """Up to ``limit`` cars matching ``where`` in id order, from the id ``after`` on
        (inclusive); and the id the next page starts at, or None at the end."""

    def facet(self, name: str, key: str, where: CarFilter, limit: int) -> list[tuple[Any, int]]:
        """The most frequent values of the payload key ``key`` among the cars matching
        ``where``, with their exact counts, most frequent first."""

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
        """The best points for ``vector`` (nearest it, or a recommendation), best first, with
        their payloads (``fields``: only these); ``beam``: the HNSW search's width at least
        (searches of one width return prefixes of one ranking)."""

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
        """Up to ``groups`` groups of the best points that share the value of the payload field
        ``key``, the best group first, each with the best photos of its best ``size`` cars
        (payload: ``fields``, ``key`` and the car id); ``per_car``: the most photos a car
        has (an engine reads enough photos to find the cars)."""

    def metadata(self, name: str) -> dict[str, Any]:
        """What a build recorded about the collection ({} when nothing)."""

    def set_metadata(self, name: str, metadata: dict[str, Any]) -> None: ...

    def optimize(self, name: str) -> None:
        """Index what was written (HNSW, quantization); searches go on meanwhile."""

    def seal(self, name: str) -> None:
        """Before a collection goes live: build its search index (``optimize``) and hand it
        over."""

    def hand_over(self, name: str) -> None:
        """Make what was written durable and let the collection go: another process may open
        it next."""

    def release(self, keep: set[str]) -> None:
        """Let go of collections other than ``keep`` (they may be deleted by another process)."""

    def snapshot(self, name: str, out: Path) -> Path:
        """A snapshot of the collection, written into the folder ``out``; StoreError where the
        engine makes none."""

    def close(self) -> None: ...


class Engine(VectorStore, Protocol):
    """A store engine: a vector store with its alias registry and model-copy store."""

    @property
    def aliases(self) -> AliasRegistry: ...

    @property
    def model_copies(self) -> ModelCopyStore: ...


def vectors_of(store: VectorStore, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The vectors of these points (id -> float32 vector; missing ones left out), read
    ``BATCH`` at a time without payloads."""
    vectors: dict[str, np.ndarray] = {}
    for batch in in_batches(ids):
        for point in store.retrieve(collection, batch, with_vectors=True, with_payload=False):
            if point.vector is not None:
                vectors[point.id] = np.asarray(point.vector, np.float32)
    return vectors
