""" "What car is this?": votes of the nearest neighbours at three levels (the make, the model of
any year, the exact make + model + year), each answer's evidence, and the confidences and
absence probabilities the calibration (``carembed.calibration``) makes of them.

A vote: each of a photo's nearest cars (by its score less its density, when the calibration
says so: a car in a crowded part of the space is near everything) votes for its answer with weight
``exp(score / temperature)`` (an answer counting at most ``per_answer`` of them); an answer's
share is its weights' sum over all weights, averaged over the query's photos. The answers never
contradict each other: the model is the best-voted one of the answered make, the first
candidate the best-voted one of the answered model.

An answer's evidence tells a car whose model the gallery holds from one it lacks: how close its
nearest car of that answer is (``best``), how much closer than the nearest car of any other
answer (``gap``), its share and how many of the voters agree with it (``agree``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from carembed.calibration import DEFAULT_ABSENT_PRIOR, Calibration, Level


@dataclass(frozen=True)
class Neighbour:
    class_name: str | None
    make: str | None
    model: str | None
    year: int | None
    score: float
    density: float | None = None  # the photo's density in its gallery (None: not known)


@dataclass(frozen=True)
class Candidate:
    class_name: str
    make: str | None
    model: str | None
    year: int | None
    share: float
    confidence: float


@dataclass(frozen=True)
class Answer:
    """One level's answer: its vote share, its evidence, the probability that it is right
    (absence counted when the calibration can) and that the gallery lacks it (None: not
    fitted)."""

    share: float
    evidence: tuple[float, float, float, float]
    confidence: float
    absent: float | None


@dataclass(frozen=True)
class Identification:
    candidates: list[Candidate]
    make: str | None
    model: str | None  # the model's name within the make (any year)
    levels: dict[Level, Answer]
    calibrated: bool
    prior: float

    @property
    def make_share(self) -> float:
        return self.levels["make"].share

    @property
    def make_confidence(self) -> float:
        return self.levels["make"].confidence


Key = Callable[[Neighbour], Hashable | None]


def _make_key(n: Neighbour) -> Hashable | None:
    return n.make


def _model_key(n: Neighbour) -> Hashable | None:
    return (n.make, n.model) if n.make and n.model else None


def _exact_key(n: Neighbour) -> Hashable | None:
    return n.class_name


KEYS: dict[Level, Key] = {"make": _make_key, "model": _model_key, "exact": _exact_key}


def weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax weights of cosine scores (stable for any temperature)."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    result: np.ndarray = np.exp(z - z.max(axis=-1, keepdims=True))
    return result


@dataclass(frozen=True)
class _Vote:
    """One level's vote over the query's photos: shares, and each answer's nearest car."""

    photos: list[list[tuple[Hashable, Neighbour]]]  # per photo: its voters with their keys
    shares: dict[Hashable, float]
    nearest: dict[Hashable, Neighbour]

    def ranked(self) -> list[tuple[Hashable, float]]:
        return sorted(self.shares.items(), key=lambda kv: (-kv[1], str(kv[0])))

    def evidence(self, answer: Hashable) -> tuple[float, float, float, float]:
        scores = [n.score for photo in self.photos for _, n in photo]
        if not scores:
            return (0.0, 0.0, 0.0, 0.0)
        mine = [n.score for photo in self.photos for key, n in photo if key == answer]
        others = [n.score for photo in self.photos for key, n in photo if key != answer]
        best = max(mine) if mine else min(scores)
        gap = best - (max(others) if others else min(scores))
        agree = float(
            np.mean([sum(key == answer for key, _ in p) / len(p) for p in self.photos if p])
        )
        return (best, gap, self.shares.get(answer, 0.0), agree)


def _vote(
    photos: Sequence[Sequence[Neighbour]],
    key: Key,
    depth: int,
    temperature: float,
    per_answer: int | None,
) -> _Vote:
    voters: list[list[tuple[Hashable, Neighbour]]] = []
    shares: dict[Hashable, float] = {}
    nearest: dict[Hashable, Neighbour] = {}
    for neighbours in photos:
        counted: dict[Hashable, int] = {}
        mine: list[tuple[Hashable, Neighbour]] = []
        for n in neighbours[:depth]:
            k = key(n)
            if k is None:
                continue
            counted[k] = counted.get(k, 0) + 1
            if per_answer is None or counted[k] <= per_answer:
                mine.append((k, n))
            if k not in nearest or n.score > nearest[k].score:
                nearest[k] = n
        voters.append(mine)
    voting = [p for p in voters if p]
    for photo in voting:
        w = weights(np.array([n.score for _, n in photo]), temperature)
        w /= w.sum()
        for (k, _), weight in zip(photo, w, strict=True):
            shares[k] = shares.get(k, 0.0) + float(weight) / len(voting)
    return _Vote(voters, shares, nearest)


def _nearest(photos: Sequence[Sequence[Neighbour]], depth: int) -> dict[Hashable, Neighbour]:
    """Each class's nearest car among the first ``depth`` neighbours of every photo."""
    nearest: dict[Hashable, Neighbour] = {}
    for neighbours in photos:
        for n in neighbours[:depth]:
            if n.class_name and (
                n.class_name not in nearest or n.score > nearest[n.class_name].score
            ):
                nearest[n.class_name] = n
    return nearest


def _lead(
    vote: _Vote, key: Key, within: Callable[[Neighbour], bool], wide: dict[Hashable, Neighbour]
) -> Hashable | None:
    """The best-voted answer whose cars satisfy ``within``; else the answer of the nearest such
    car among all the neighbours read (its share is 0); None when there is none."""
    for answer, _ in vote.ranked():
        if within(vote.nearest[answer]):
            return answer
    near = [n for n in wide.values() if within(n) and key(n) is not None]
    return key(max(near, key=lambda n: n.score)) if near else None


def corrected(neighbours: Sequence[Neighbour], weight: float) -> list[Neighbour]:
    """The neighbours by ``score - weight x density``, best first (a photo without a density
    counts the mean of the others'; none known: the scores as they are)."""
    if not weight:
        return list(neighbours)
    known = [n.density for n in neighbours if n.density is not None]
    if not known:
        return list(neighbours)
    typical = sum(known) / len(known)
    scored = [
        Neighbour(
            n.class_name,
            n.make,
            n.model,
            n.year,
            n.score - weight * (typical if n.density is None else n.density),
            n.density,
        )
        for n in neighbours
    ]
    return sorted(scored, key=lambda n: -n.score)


def identify(
    photos: Sequence[Sequence[Neighbour]],
    calibration: Calibration,
    prior: float = DEFAULT_ABSENT_PRIOR,
    top: int = 3,
) -> Identification:
    """What the car is, from each query photo's nearest neighbours (best first, ``fetch`` of
    them): re-ranked by their corrected scores, the first ``make_k`` vote for the make, the
    first ``k`` for the model and the exact model."""
    c = calibration
    photos = [corrected(p[: c.fetch], c.density_weight) for p in photos]
    make_vote = _vote(photos, _make_key, c.make_k, c.make_temperature, c.per_answer)
    model_vote = _vote(photos, _model_key, c.k, c.temperature, c.per_answer)
    exact_vote = _vote(photos, _exact_key, c.k, c.temperature, c.per_answer)
    wide = _nearest(photos, c.depth)  # every car read, by class
    ranked_makes = make_vote.ranked()
    make = ranked_makes[0][0] if ranked_makes else None
    model_key = _lead(model_vote, _model_key, lambda n: make is None or n.make == make, wide)
    lead: Hashable | None = None
    if model_key is not None:
        lead = _lead(exact_vote, _exact_key, lambda n: _model_key(n) == model_key, wide)
    elif make is None:
        lead = exact_vote.ranked()[0][0] if exact_vote.shares else None
    answers: dict[Level, tuple[_Vote, Hashable | None]] = {
        "make": (make_vote, make),
        "model": (model_vote, model_key),
        "exact": (exact_vote, lead),
    }
    levels: dict[Level, Answer] = {}
    floor = 0.0
    for level, (vote, answer) in answers.items():
        evidence = vote.evidence(answer) if answer is not None else (0.0, 0.0, 0.0, 0.0)
        absent = c.absent_probability(level, list(evidence), prior)
        if absent is not None:  # a make the gallery lacks takes its models with it
            absent = floor = max(floor, absent)
        right = c.mapping(level)(evidence[2])
        confidence = right * (1.0 - absent) if absent is not None else right
        levels[level] = Answer(evidence[2], evidence, confidence, absent)
    candidates: list[Candidate] = []
    if lead is not None:
        nearest = {**wide, **exact_vote.nearest}
        order = [lead, *(a for a, _ in exact_vote.ranked() if a != lead)][:top]
        exact = levels["exact"]
        scale = 1.0 - exact.absent if exact.absent is not None else 1.0
        for answer in order:
            n = nearest[answer]
            share = exact_vote.shares.get(answer, 0.0)
            confidence = c.model(share) * scale
            candidates.append(
                Candidate(n.class_name or "", n.make, n.model, n.year, share, confidence)
            )
    return Identification(
        candidates,
        str(make) if make is not None else None,
        str(model_key[1]) if isinstance(model_key, tuple) else None,
        levels,
        c.fitted,
        prior,
    )
