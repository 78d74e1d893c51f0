"""Every acknowledged write reaches every collection that can go live: writers add, edit and
delete cars while another handle on the same store (another process, on the embedded store)
builds with the same model, with another model and rolls back; a service stand-in follows the
alias as ``app.registry`` does. Oracle: the writes that were acknowledged."""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carembed.embedder import Embedder
from indexer.engines.base import CollectionHeld, CollectionMissing
from indexer.index import CarIndex
from indexer.payload import CarFields, point_id
from indexer.served import IndexNotReady
from indexer.versions import embedding_version_of
from tests.conftest import scene, wait_until
from tests.indexer.conftest import jpeg, make_gallery

DELETED = "deleted"


@dataclass
class Follower:
    """What a service does with the alias (``app.registry``): join what can go live and, when
    the live collection holds another model's vectors, join it with that model and switch."""

    index: CarIndex
    embedders: dict[str, Embedder]
    current: Embedder
    lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self) -> None:
        with self.lock:
            served = self.index.served
            try:
                served.join_all(self.current)
                state = self.index.state()
                version = state.live_version
                if state.live and version and version != self.current.version:
                    model = self.embedders[version]
                    served.join(state.live, model)
                    self.current = model
                    served.forget_serving()
                    served.join(state.live, model)
            except (CollectionMissing, CollectionHeld):
                pass  # a build dropped or holds it: the next round


@dataclass
class Writer:
    """Adds, edits and deletes its own cars; remembers each acknowledged write."""

    index: CarIndex
    follower: Follower
    vectors: dict[str, dict[int, np.ndarray]]
    seeds: list[int]
    rng: random.Random
    oracle: dict[str, Any] = field(default_factory=dict)
    ops: int = 0

    def step(self) -> None:
        alive = [car for car, state in self.oracle.items() if state != DELETED]
        roll = self.rng.random()
        if self.seeds and (not alive or roll < 0.4):
            self._add(self.seeds.pop())
        elif alive and roll < 0.85:
            car = self.rng.choice(alive)
            patch = {"year": self.rng.randrange(1990, 2030), "attributes": {"n": self.ops}}
            assert self.index.listings.edit(car, patch) is not None
            self.oracle[car] = patch
        elif len(alive) > 5:
            car = self.rng.choice(alive)
            assert self.index.delete(car) is not None
            self.oracle[car] = DELETED
            assert self._read(car, self.follower.current.version) is None
        self.ops += 1

    def _read(self, car: str, version: str) -> object:
        """The car as read with the vectors of ``version``; when no collection holds those any
        more (the alias moved on meanwhile), as read with the model the service follows then."""
        for _ in range(3):
            try:
                return self.index.on_serving(version, lambda n: self.index.get(n, car))
            except IndexNotReady:
                self.follower.follow()
                version = self.follower.current.version
        return self.index.on_serving(version, lambda n: self.index.get(n, car))

    def _add(self, seed: int) -> None:
        data = jpeg(seed)
        sha = hashlib.sha256(data).hexdigest()
        for _ in range(100):  # as a client does on 503: again, with the model served then
            version = self.follower.current.version  # the model the service serves now
            vector = self.vectors[version][seed]
            try:
                car = self.index.add_photo(
                    version, data, "jpeg", (160, 96), vector, CarFields(make="Lada")
                ).id
                break
            except IndexNotReady:  # no collection of those vectors can go live any more
                self.follower.follow()
        else:
            raise AssertionError(f"adds of {seed} refused 100 times")
        assert car == point_id(sha)
        self.oracle[car] = {}
        assert self._read(car, version) is not None, "an acknowledged add is not readable at once"


def _check(index: CarIndex, collection: str, oracle: dict[str, Any], adds: bool) -> None:
    """``collection`` holds no deleted car, every edit, and (``adds``) every added car."""
    cars = {c.id: c for c in index.get_many(collection, list(oracle))}
    for car, state in oracle.items():
        if state == DELETED:
            assert car not in cars, f"deleted car {car} is back in {collection}"
            continue
        if car not in cars:
            assert not adds, f"added car {car} is missing from {collection}"
            continue
        if state:
            stored = cars[car].payload
            assert stored.year == state["year"], f"{car} in {collection}: an older edit"
            assert stored.attributes == state["attributes"]


@pytest.mark.slow
def test_no_acknowledged_write_is_lost_across_builds_switches_and_rollbacks(
    handles: tuple[CarIndex, CarIndex],
    tmp_path: Path,
    small_embedder: Embedder,
    flipped_embedder: Embedder,
) -> None:
    service, builder = handles
    gallery = make_gallery(tmp_path / "gallery")
    models = {e.version: e for e in (small_embedder, flipped_embedder)}
    seeds = list(range(5000, 5120))
    photos = [jpeg(s) for s in seeds]
    vectors = {v: dict(zip(seeds, e.embed(photos), strict=True)) for v, e in models.items()}
    a, b = models.values()

    builder.build(a, gallery, progress=False)
    follower = Follower(service, models, a)
    follower.follow()
    writers = [Writer(service, follower, vectors, seeds[i::2], random.Random(i)) for i in range(2)]
    stop, failures = threading.Event(), []

    def run(writer: Writer) -> None:
        try:
            while not stop.is_set() and writer.ops < 5000:
                writer.step()
        except BaseException as exc:
            failures.append(exc)
            raise

    def run_follower() -> None:
        while not stop.wait(0.01):
            follower.follow()

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    threads.append(threading.Thread(target=run_follower))
    for thread in threads:
        thread.start()

    def writes_go_on(extra: int = 6) -> None:
        target = sum(w.ops for w in writers) + extra
        wait_until(lambda: failures or sum(w.ops for w in writers) >= target, what="writes")

    try:
        for step, (action, model) in enumerate(
            [("build", a), ("rollback", None), ("build", b), ("rollback", None), ("build", a)]
        ):
            writes_go_on()
            if action == "build":
                assert model is not None
                scene(9000 + step).save(gallery / "Audi_TTS_Coupe_2012" / f"new{step}.jpg")
                builder.build(model, gallery, progress=False)
            else:
                builder.rollback()
            writes_go_on()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures
    oracle = {car: state for w in writers for car, state in w.oracle.items()}
    assert len(oracle) > 40 and DELETED in oracle.values()

    for _ in range(2):  # as it is, then after a rollback to the previous collection
        follower.follow()
        state = service.state()
        assert state.live is not None and state.previous is not None
        assert follower.current.version == state.live_version
        _check(service, state.live, oracle, adds=True)
        _check(
            service,
            state.previous,
            oracle,
            adds=embedding_version_of(state.previous) == state.live_version,
        )
        builder.rollback()
