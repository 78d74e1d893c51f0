"""Bringing one collection up to date with the upload ledger, car by car under each car's write
lock (the covers settled last): a build's last step, and what a process does when it joins a
collection (``indexer.served``). Each car's change is made from what the ledger says while that
car's lock is held, so a write running meanwhile is never undone and a deleted car never comes
back."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from carembed.embedder import Embedder
from indexer.covers import settle_all
from indexer.density import with_density
from indexer.engines.base import NewPoint, VectorStore, in_batches
from indexer.fields import CAR_ID
from indexer.ledger import Ledger
from indexer.payload import edit_changes, reindexed
from indexer.versions import embedding_version_of

logger = logging.getLogger(__name__)


@dataclass
class Reconciled:
    """What a reconciliation changed."""

    added: int = 0
    deleted: int = 0
    edited: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (upload, reason)


def reconcile(
    store: VectorStore, collection: str, ledger: Ledger, embedder: Embedder | None
) -> Reconciled:
    """Delete the cars deleted through the API, give edited cars their edits and, when
    ``embedder`` makes this collection's vectors, add the cars added through the API that it
    lacks. Without such an embedder the adds are left to a process that has one."""
    done = Reconciled()
    cars = {pid: p[CAR_ID] for pid, p in store.scroll(collection, [CAR_ID])}
    dead = ledger.tombstones()
    for pid in sorted(set(cars) & dead):
        with ledger.writing(cars[pid]):
            if ledger.is_deleted(pid):
                store.delete(collection, [pid])
                done.deleted += 1
    edited = ledger.edited_ids()
    photos = sorted(pid for pid, car in cars.items() if car in edited and pid not in dead)
    for batch in in_batches(photos):
        for photo in store.retrieve(collection, batch):
            with ledger.writing(photo.car_id):
                edit = ledger.edit_of(photo.car_id)
                if edit and (changes := edit_changes(photo.payload, edit)):
                    store.set_payload(collection, photo.id, changes)
                    done.edited += 1
    if embedder is not None and embedder.version == embedding_version_of(collection):
        _add_missing(store, collection, ledger, embedder, set(cars) | dead, done)
    settle_all(store, collection, ledger.writing)
    if done.added or done.deleted or done.edited:
        logger.info(
            "%s brought up to date with the ledger: +%d -%d, %d edited",
            collection,
            done.added,
            done.deleted,
            done.edited,
        )
    return done


def _add_missing(
    store: VectorStore,
    collection: str,
    ledger: Ledger,
    embedder: Embedder,
    known: set[str],
    done: Reconciled,
) -> None:
    todos = [u for u in ledger.uploads() if u.id not in known]
    for batch in embedder.embed_files([u.photo for u in todos]):
        for index, reason in batch.failures:
            if todos[index].photo.is_file():  # else deleted meanwhile
                done.skipped.append((f"uploads/{todos[index].photo.name}", reason))
        for index, vector, size in zip(batch.indices, batch.vectors, batch.sizes, strict=True):
            upload = todos[index]
            with ledger.writing(upload.car_id):
                now = ledger.current(upload)
                if now is None:  # deleted meanwhile
                    continue
                payload = reindexed(now.payload, size, embedder.version)
                point = NewPoint(upload.id, vector, payload)
                store.upsert(collection, with_density(store, collection, [point]))
                done.added += 1
    for label, reason in done.skipped:
        logger.warning("upload %s not indexed: %s", label, reason)
