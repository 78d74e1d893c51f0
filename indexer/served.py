"""The collections that can go live behind one alias, and the promise that no acknowledged
write is lost across rollouts and rollbacks.

Those collections are the live one, the previous one (what a rollback returns to) and, on a
store that several processes write (a Qdrant server), builds under way. A process *joins* such
a collection before it reads from it: it adds it to the ones its writes reach, then brings it up
to date with the upload ledger car by car (``indexer.reconcile``). A write (add, edit, delete)
is made under its car's lock: the ledger first, then every joined collection. So a write either
finds a collection joined, or was in the ledger before that car was reconciled. A collection
this process cannot write now (the embedded store: held by a build in another process) is left,
and joined again, brought up to date, once it can be.

An add writes its vectors only into the collections of its embedding version: the others learn
of it when a process with their model reconciles them. So that every acknowledged car is always
in the live or the previous collection, writes and a build's switch of the alias exclude each
other (``writes`` is shared, ``switching`` exclusive, across processes): an add goes ahead only
while a joined collection of its vectors can go live, and a build brings its collection up to
date with the ledger, moves the alias and drops the old collections while no write runs. After
an add, the joined collections of other vectors owe it: ``join_all`` with their model joins
them again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from carembed.embedder import Embedder
from indexer import store_format
from indexer.covers import photos_of
from indexer.engines.base import CollectionHeld, CollectionMissing, Engine
from indexer.files import shared_or_exclusive
from indexer.ledger import Ledger
from indexer.payload import StoredCar
from indexer.reconcile import Reconciled, reconcile
from indexer.store_format import OlderStore
from indexer.versions import AliasState, embedding_version_of, stale_collections

logger = logging.getLogger(__name__)
T = TypeVar("T")

SERVING_TTL_S = 2.0
"""How long a process trusts its answer to "which collection serves my model"."""


class IndexNotReady(LookupError):
    """No collection holds this model's vectors (yet)."""


class ServedCollections:
    def __init__(self, engine: Engine, alias: str, ledger: Ledger) -> None:
        self.engine, self.alias, self.ledger = engine, alias, ledger
        self._joined: dict[str, bool] = {}
        """Joined collections -> whether their adds were caught up too (by this process)."""
        self._serving: dict[str, tuple[float, str]] = {}
        self._older: set[str] = set()
        """Collections found written by an older carsearch: never served."""
        self._owed: dict[str, int] = {}
        """Joined collections -> how many adds of other vectors were made since they joined."""
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def writes(self) -> Iterator[None]:
        """Held (shared) by each add, edit and delete, from its checks to its last write (call
        outside any car's lock): when this process has joined nothing yet, it first joins what
        can go live (edits and deletes only; adds come with ``join_all(embedder)``)."""
        with shared_or_exclusive(self.ledger.layout.rollout_lock, "shared"):
            if not self.joined:
                self.join_all(None)
            yield

    @contextlib.contextmanager
    def switching(self) -> Iterator[None]:
        """Held (exclusive) while a build's collection is brought up to date, the alias moved
        and the old collections dropped: no write runs meanwhile."""
        with shared_or_exclusive(self.ledger.layout.rollout_lock, "exclusive"):
            yield

    def state(self) -> AliasState:
        return self.engine.aliases.state(self.alias)

    def candidates(self, state: AliasState | None = None) -> list[str]:
        """The collections that can go live: live, previous and (on a store several processes
        write) builds under way."""
        state = state or self.state()
        names = list(state.collections)
        if self.engine.shared_writes:
            names += stale_collections(self.alias, self.engine.collections(), state)
        return names

    @property
    def joined(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._joined)

    def join(self, name: str, embedder: Embedder | None) -> Reconciled:
        """Make writes reach ``name``, give it the payload indexes of the declared fields, then
        bring it up to date with the ledger (adds only with an ``embedder`` of its vectors).
        CollectionMissing, CollectionHeld or OlderStore (written by an older carsearch): not
        joined."""
        try:
            store_format.check(name, self.engine.metadata(name))
        except OlderStore:
            with self._lock:
                self._older.add(name)
            raise
        with self._lock:
            self._joined.setdefault(name, False)
            owed = self._owed.get(name, 0)
        try:
            self.engine.index_fields(name)  # the payload indexes of this process's fields
            done = reconcile(self.engine, name, self.ledger, embedder)
        except (CollectionMissing, CollectionHeld):
            self._leave(name)
            raise
        if embedder is not None and embedder.version == embedding_version_of(name):
            with self._lock:  # caught up, unless an add of other vectors ran meanwhile
                if name in self._joined and self._owed.get(name, 0) == owed:
                    self._joined[name] = True
        return done

    def check_open(self, version: str) -> None:
        """Before an add of vectors ``version`` (within ``writes``): IndexNotReady unless a
        joined collection of those vectors can go live."""
        candidates = set(self.candidates())
        if not any(embedding_version_of(n) == version for n in self.joined & candidates):
            raise IndexNotReady(f"no collection of {version} is open for writes yet")

    def added(self, version: str) -> None:
        """After an add of vectors ``version``: the joined collections of other vectors owe it
        (``join_all`` with their model joins them again)."""
        with self._lock:
            for name in self._joined:
                if embedding_version_of(name) != version:
                    self._joined[name] = False
                    self._owed[name] = self._owed.get(name, 0) + 1

    def join_all(self, embedder: Embedder | None) -> None:
        """Join the candidates not joined yet (``embedder`` adds to those of its vectors), and
        leave the joined collections that can no longer go live."""
        state = self.state()
        candidates = self.candidates(state)
        for name in candidates:
            own = embedder if embedder and embedder.version == embedding_version_of(name) else None
            with self._lock:
                caught_up, older = self._joined.get(name), name in self._older
            if older or caught_up or (caught_up is not None and own is None):
                continue  # a collection's store format never changes: warned of once
            try:
                self.join(name, own)
            except (CollectionMissing, CollectionHeld) as exc:
                logger.debug("%s not joined yet: %s", name, exc)
            except OlderStore as exc:
                logger.warning("%s", exc)
        for name in self.joined - set(candidates):
            self._leave(name)
        self.engine.release(set(candidates) | self.joined)

    def car_photos(self, car_id: str) -> dict[str, StoredCar]:
        """The car's photos (photo id -> photo) as the joined collections and the live and
        previous ones hold them, together."""
        found: dict[str, StoredCar] = {}
        for name in dict.fromkeys([*sorted(self.joined), *self.state().collections]):
            with contextlib.suppress(CollectionMissing, CollectionHeld):
                for photo in photos_of(self.engine, name, [car_id]):
                    found.setdefault(photo.id, photo)
        return found

    def _leave(self, name: str) -> None:
        with self._lock:
            self._joined.pop(name, None)
            self._owed.pop(name, None)

    def for_each(self, write: Callable[[str], T], version: str | None = None) -> dict[str, T]:
        """``write(collection)`` on each joined collection (only those of the embedding
        ``version``, when given): call it with the car's write lock held. A collection gone or
        held by another process meanwhile is left (and joined again later)."""
        done: dict[str, T] = {}
        for name in sorted(self.joined):
            if version is not None and embedding_version_of(name) != version:
                continue
            try:
                done[name] = write(name)
            except (CollectionMissing, CollectionHeld) as exc:
                logger.info("%s left: %s", name, exc)
                self._leave(name)
        return done

    def serving(self, version: str) -> str:
        """The collection to read these vectors from: the live one, or the previous one (during
        a rollout, or until this process has joined the new live one). Looked up at most every
        ``SERVING_TTL_S``; IndexNotReady when none holds them, OlderStore when the one that does
        was written by an older carsearch."""
        now = time.monotonic()
        cached = self._serving.get(version)
        if cached is not None and now - cached[0] < SERVING_TTL_S:
            return cached[1]
        state = self.state()
        holding = state.holding(version)
        if not holding:
            raise IndexNotReady(f"no collection holds vectors of {version}")
        joined = self.joined
        name = next((n for n in holding if n in joined), holding[0])
        if name in self._older:
            raise OlderStore(name)
        with self._lock:
            if cached is not None and cached[1] != name:
                logger.info("vectors %s now served from %s", version, name)
            self._serving[version] = (now, name)
        return name

    def forget_serving(self) -> None:
        """Look the serving collection up again at the next read (after an alias move)."""
        with self._lock:
            self._serving.clear()

    def on_serving(self, version: str, operation: Callable[[str], T]) -> T:
        """``operation(collection)`` on the collection serving these vectors; when that one went
        away meanwhile (a build dropped it), look again and retry once."""
        try:
            return operation(self.serving(version))
        except CollectionMissing:
            self.forget_serving()
            return operation(self.serving(version))
