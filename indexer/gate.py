"""The rollout quality gate: before a build moves the alias to a collection of another model,
the new model and the live one are scored on the same labelled photos of the gallery, from the
vectors the two collections already hold (nothing is embedded again).

The sample: photos of classes with at least 2 photos, leaving out the photos either model
trained on as its ``config.json`` records it (``training.class_names``, less the photos of
``training.held_out``: a model scored on photos it trained on looks better than it is), up to
``photos`` of them in whole classes, chosen by id (the same for both models and every run).
The scores: leave-one-out R-Precision within the sample, and identification top-1 (the nearest
other photo is of the same class). The new model is refused when its R-Precision is below the
live one's by more than ``margin``; a sample of fewer than ``MIN_PHOTOS`` photos or
``MIN_CLASSES`` classes cannot judge, and refuses too.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from carembed.metrics import retrieval_metrics
from indexer.engines.base import VectorStore, vectors_of

VectorsOf = Callable[[Sequence[str]], dict[str, np.ndarray]]
"""The vectors of these car ids under one model (read from a collection, or embedded)."""
TrainedOn = Callable[[str, str], bool]
"""Whether a model trained on the photo (car id, class name)."""

MIN_PHOTOS = 50
MIN_CLASSES = 5
GATE_KEY = "carsearch_gate"
"""Where a collection's metadata keeps the verdict that let it go live."""


@dataclass(frozen=True)
class GatePolicy:
    margin: float = 0.005
    photos: int = 2000
    force: bool = False  # move the alias whatever the verdict (recorded)


@dataclass(frozen=True)
class Scores:
    r_precision: float
    top1: float


@dataclass(frozen=True)
class Verdict:
    live: str
    new: str
    photos: int
    classes: int
    photos_left_out: int  # trained on by either model
    live_scores: Scores | None
    new_scores: Scores | None
    passed: bool
    forced: bool
    reason: str
    seconds: float  # what judging took

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The verdict for people."""
        said = [
            f"quality gate: {self.photos} photos of {self.classes} classes "
            f"({self.photos_left_out} photos left out: a model trained on them)"
        ]
        for name, scores in ((self.live, self.live_scores), (self.new, self.new_scores)):
            if scores is not None:
                said.append(
                    f"  {name}: R-Precision {scores.r_precision:.4f}, top-1 {scores.top1:.4f}"
                )
        verdict = "passed" if self.passed else "forced" if self.forced else "refused"
        said.append(f"  {verdict}: {self.reason} ({self.seconds:.1f} s)")
        return said


class GateRefused(RuntimeError):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__("\n".join(verdict.lines()))
        self.verdict = verdict


class GateError(RuntimeError):
    """The quality gate could not judge the new model (the alias stays where it is)."""


def _sample(
    engine: VectorStore, collection: str, trained_on: TrainedOn, size: int
) -> tuple[list[str], list[str], int]:
    """(ids, their classes, how many photos were left out as trained on)."""
    by_class: dict[str, list[str]] = defaultdict(list)
    left_out = 0
    for pid, payload in engine.scroll(collection, ["class_name"]):
        if payload.get("class_name"):
            label = str(payload["class_name"])
            if trained_on(pid, label):
                left_out += 1
            else:
                by_class[label].append(pid)
    kept = {c: sorted(ids) for c, ids in by_class.items() if len(ids) >= 2}
    ids = sorted((pid, c) for c, members in kept.items() for pid in members)
    if len(ids) > size:  # whole classes stay whole: R-Precision needs each class's members
        ids = _classes_up_to(kept, size)
    return [pid for pid, _ in ids], [c for _, c in ids], left_out


def _classes_up_to(kept: dict[str, list[str]], size: int) -> list[tuple[str, str]]:
    chosen: list[tuple[str, str]] = []
    for c in sorted(kept, key=lambda c: min(kept[c])):
        if len(chosen) + len(kept[c]) > size:
            continue
        chosen += [(pid, c) for pid in kept[c]]
    return sorted(chosen)


def stored_vectors(engine: VectorStore, collection: str) -> VectorsOf:
    """The vectors ``collection`` holds."""
    return partial(vectors_of, engine, collection)


def _scores(vectors_of: VectorsOf, ids: list[str], labels: list[str]) -> Scores:
    vectors = vectors_of(ids)
    present = [i for i, pid in enumerate(ids) if pid in vectors]
    matrix = np.stack([vectors[ids[i]] for i in present])
    number = {c: n for n, c in enumerate(sorted(set(labels)))}
    found = retrieval_metrics(matrix, [number[labels[i]] for i in present], ks=(1,))
    return Scores(round(found["r_precision"], 4), round(found["recall_at_1"], 4))


def judge(
    engine: VectorStore,
    live: str,
    new: str,
    trained_on: TrainedOn,
    policy: GatePolicy,
    live_vectors: VectorsOf | None = None,
) -> Verdict:
    """Score both collections' models on the sample and decide (``live_vectors``: how to get
    the live model's vectors when its collection cannot be read here)."""
    started = time.perf_counter()
    ids, labels, left_out = _sample(engine, new, trained_on, policy.photos)
    classes = len(set(labels))

    def verdict(old: Scores | None, fresh: Scores | None, passed: bool, reason: str) -> Verdict:
        took = round(time.perf_counter() - started, 2)
        return Verdict(
            live, new, len(ids), classes, left_out, old, fresh, passed, policy.force, reason, took
        )

    if len(ids) < MIN_PHOTOS or classes < MIN_CLASSES:
        reason = (
            f"too few photos to judge ({len(ids)} photos of {classes} classes; at least "
            f"{MIN_PHOTOS} of {MIN_CLASSES} are needed): --force or --no-gate to go on"
        )
        return verdict(None, None, False, reason)
    old = _scores(live_vectors or stored_vectors(engine, live), ids, labels)
    fresh = _scores(stored_vectors(engine, new), ids, labels)
    drop = old.r_precision - fresh.r_precision
    passed = drop <= policy.margin
    reason = (
        f"R-Precision {fresh.r_precision:.4f} against {old.r_precision:.4f} live "
        f"({-drop:+.4f}; the margin is {policy.margin})"
    )
    return verdict(old, fresh, passed, reason)
