"""Finding re-used photos in a collection (the rule is ``indexer.copies``): for one photo being
added (three lookups: its bytes, its hash's parts, its nearest photos of other cars), and for
the whole collection (the audit: groups of cars that share a photo)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from indexer.copies import (
    NEAR_BITS,
    NEIGHBOURS,
    PHASH,
    PHASH_CENTRE,
    PHASH_MIRROR,
    PHASH_PARTS,
    SAME_BITS,
    CopySignal,
    Kind,
    verdict,
)
from indexer.covers import photos_of
from indexer.engines.base import VectorStore, vectors_of
from indexer.fields import CAR_ID, Match, MatchAny
from indexer.payload import CarFilter, StoredCar

logger = logging.getLogger(__name__)

READ = (CAR_ID, "external_id", "sha256", PHASH, PHASH_MIRROR, PHASH_CENTRE)
"""What a lookup reads of the photos it finds."""
CANDIDATES = 100
"""Most photos read by one lookup of the same bytes or hash parts."""


@dataclass(frozen=True)
class Reused:
    """Another car's photo that a photo re-uses."""

    car_id: str
    photo_id: str
    external_id: str | None
    kind: Kind
    similarity: float


class PhotoReused(ValueError):
    """A photo re-uses another car's (``CARSEARCH_REUSED_PHOTOS=reject``): nothing written."""

    def __init__(self, found: list[Reused]) -> None:
        first = found[0]
        super().__init__(
            f"a photo is already the photo {first.photo_id} of the car {first.car_id}"
            + (f" (external id {first.external_id})" if first.external_id else "")
            + f" ({first.kind} copy)"
        )
        self.found = found


def _borderline(signal: CopySignal, photo: StoredCar) -> bool:
    """Whether a candidate's hashes are near enough that the embeddings decide."""
    other = CopySignal.stored(photo.payload)
    return other is not None and SAME_BITS < signal.bits_to(other) <= NEAR_BITS


def find_reused(
    store: VectorStore,
    collection: str,
    car_id: str,
    sha: str,
    signal: CopySignal | None,
    vector: np.ndarray | list[float] | None,
) -> list[Reused] | None:
    """The photos of cars other than ``car_id`` that a photo (its sha256, copy signal and
    vector) re-uses, best first; None when the photo has no copy signal and no exact copy
    (only exact copies of it could be looked for)."""
    found: dict[str, StoredCar] = {}
    cosines: dict[str, float] = {}

    def take(photos: list[StoredCar]) -> None:  # its own car's photos are no re-use
        for photo in photos:
            if photo.car_id != car_id:
                found.setdefault(photo.id, photo)

    take(store.page(collection, CarFilter(where=(Match("sha256", sha),)), CANDIDATES, None)[0])
    if signal is not None:
        near = CarFilter(where=(MatchAny(PHASH_PARTS, tuple(signal.parts())),))
        take(store.page(collection, near, CANDIDATES, None)[0])
        if vector is not None:
            query = np.asarray(vector, np.float32)
            # Unfiltered (a filter slows the graph search): the car's own photos dropped after.
            closest = store.search(
                collection, query, CarFilter(), 2 * NEIGHBOURS, fields=list(READ)
            )
            take(closest)
            cosines |= {p.id: p.score or 0.0 for p in closest}
            unscored = [
                pid for pid in found if pid not in cosines and _borderline(signal, found[pid])
            ]
            for pid, stored in vectors_of(store, collection, unscored).items():
                cosines[pid] = float(query @ stored)
    reused = []
    for photo in found.values():
        p = photo.payload
        kind = verdict(sha, signal, p.sha256, CopySignal.stored(p), cosines.get(photo.id))
        if kind is not None:
            reused.append(Reused(photo.car_id, photo.id, p.external_id, kind[0], kind[1]))
    if not reused and signal is None:
        return None
    return sorted(reused, key=lambda r: (r.kind != "exact", -r.similarity, r.photo_id))


@dataclass(frozen=True)
class ReusedPair:
    """Two photos of two cars that are one photo, for the audit's report."""

    group: int
    photo: StoredCar
    other: Reused


def _pairs(
    store: VectorStore, collection: str, photos: dict[str, StoredCar], progress: bool
) -> Iterator[tuple[str, Reused]]:
    """Every (photo id, the other car's photo it re-uses) among photos with the same bytes or a
    hash part in common (grouped in memory: no lookup per photo); the embeddings are read only
    for the pairs whose hashes leave it to them."""
    from tqdm import tqdm

    signals = {pid: CopySignal.stored(p.payload) for pid, p in photos.items()}
    buckets: dict[str, list[str]] = defaultdict(list)
    for pid, photo in photos.items():
        for key in [f"sha:{photo.payload.sha256}", *(photo.payload.phash_parts or [])]:
            buckets[key].append(pid)
    close: dict[tuple[str, str], int] = {}
    for key, members in tqdm(buckets.items(), desc="hashes", disable=not progress):
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                pair = (min(a, b), max(a, b))
                if pair in close or photos[a].car_id == photos[b].car_id:
                    continue
                sa, sb = signals[pair[0]], signals[pair[1]]
                if key.startswith("sha:"):
                    close[pair] = 0
                elif sa is not None and sb is not None and (bits := sa.bits_to(sb)) <= NEAR_BITS:
                    close[pair] = bits
    borderline = sorted({pid for pair, bits in close.items() if bits > SAME_BITS for pid in pair})
    vectors = vectors_of(store, collection, borderline)
    for (a, b), _ in sorted(close.items()):
        pa, pb = photos[a].payload, photos[b].payload
        cosine = float(vectors[a] @ vectors[b]) if a in vectors and b in vectors else None
        kind = verdict(pa.sha256 or "", signals[a], pb.sha256, signals[b], cosine)
        if kind is not None:
            yield a, Reused(photos[b].car_id, b, pb.external_id, kind[0], kind[1])


def audit(store: VectorStore, collection: str, progress: bool = False) -> list[ReusedPair]:
    """The groups of cars that share a photo in ``collection``: each pair of photos of two
    cars that are one photo, once, with the group (cars linked by shared photos) it belongs
    to. Pairs are found among photos with the same bytes or a hash part in common: every copy
    within 3 bits, most within ``NEAR_BITS`` (an add's check also reads the nearest photos)."""
    photos = {
        pid: StoredCar.from_point(pid, payload)
        for pid, payload in store.scroll(collection, [*READ, PHASH_PARTS])
    }
    parent: dict[str, str] = {}

    def root(car: str) -> str:
        while parent.get(car, car) != car:
            car = parent[car]
        return car

    pairs = list(_pairs(store, collection, photos, progress))
    for pid, other in pairs:
        mine, theirs = root(photos[pid].car_id), root(other.car_id)
        if mine != theirs:
            parent[mine] = theirs
    groups: dict[str, int] = defaultdict(lambda: len(groups))
    found = [
        ReusedPair(groups[root(photos[pid].car_id)], photos[pid], other)
        for pid, other in sorted(pairs, key=lambda p: (root(photos[p[0]].car_id), p[0]))
    ]
    logger.info("%d pairs of re-used photos in %d groups of cars", len(found), len(groups))
    return found


def reused_by_car(
    store: VectorStore, collection: str, car_id: str
) -> dict[str, list[Reused] | None] | None:
    """Each photo of the car -> the other cars' photos it is (None: it has no copy signal);
    None when there is no such car."""
    photos = photos_of(store, collection, [car_id])
    if not photos:
        return None
    vectors = vectors_of(store, collection, [p.id for p in photos])
    return {
        photo.id: find_reused(
            store,
            collection,
            car_id,
            photo.payload.sha256 or "",
            CopySignal.stored(photo.payload),
            vectors.get(photo.id),
        )
        for photo in photos
    }
