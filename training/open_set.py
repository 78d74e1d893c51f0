"""The galleries "what car is this?" is measured and calibrated against: each query photo's
nearest neighbours in a pool of labelled photos, with the query itself left out (its car model
*present*) or with its whole class, make + model or make left out (*absent* at that level), and
what the gallery then lacks at each level.

The pool may hold photos that are never queried (the classes a model trained on, which pull the
photos of new models toward themselves in a real gallery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from carembed.calibration import DENSITY_K, LEVELS, Level
from carembed.identify import Identification, Neighbour

Condition = Literal["present", "class", "model", "make"]
CONDITIONS: tuple[Condition, ...] = ("present", "class", "model", "make")
LEFT_OUT: dict[Condition, Level | None] = {
    "present": None,
    "class": "exact",
    "model": "model",
    "make": "make",
}


@dataclass(frozen=True)
class Labels:
    """What is known about each photo: its class, make, model and year."""

    classes: list[str]
    makes: list[str | None]
    models: list[str | None]
    years: list[int | None]

    def key(self, i: int, level: Level) -> tuple[object, ...]:
        if level == "make":
            return (self.makes[i],)
        if level == "model":
            return (self.makes[i], self.models[i])
        return (self.classes[i],)

    def codes(self, level: Level) -> np.ndarray:
        """Each photo's answer at ``level`` as an integer (equal answers, equal codes)."""
        keys = [repr(self.key(i, level)) for i in range(len(self.classes))]
        return np.unique(keys, return_inverse=True)[1]

    def neighbour(self, i: int, score: float, density: float | None = None) -> Neighbour:
        return Neighbour(
            self.classes[i], self.makes[i], self.models[i], self.years[i], score, density
        )

    def right(self, i: int, found: Identification) -> dict[Level, bool]:
        """Whether each level's answer is the photo's."""
        exact = found.candidates[0].class_name if found.candidates else None
        return {
            "make": found.make == self.makes[i],
            "model": (found.make, found.model) == (self.makes[i], self.models[i]),
            "exact": exact == self.classes[i],
        }


@dataclass(frozen=True)
class Pool:
    """Unit vectors with their labels; ``queries`` are the photos asked about (indices);
    ``hidden`` marks photos that are asked about but never in the gallery; ``cars`` says which
    photos are of one car (a car's photos are never in the gallery it is asked against)."""

    vectors: np.ndarray
    labels: Labels
    queries: np.ndarray
    hidden: np.ndarray | None = None
    cars: np.ndarray | None = None

    def _in_gallery(self) -> np.ndarray:
        n = len(self.vectors)
        return np.ones(n, dtype=bool) if self.hidden is None else ~self.hidden

    def _scores(self) -> np.ndarray:
        """Every photo's cosine score with every photo of the gallery (with itself and with
        hidden photos -inf)."""
        emb = np.ascontiguousarray(self.vectors, dtype=np.float32)
        scores = emb @ emb.T
        np.fill_diagonal(scores, -np.inf)
        if self.hidden is not None:
            scores[:, self.hidden] = -np.inf
        return scores

    def _gone(self, condition: Condition) -> Callable[[np.ndarray, int], np.ndarray]:
        """What sets a query's gallery scores (rows ``scores``, a copy) to -inf in place: what
        ``condition`` leaves out, and the query's car's other photos."""
        left_out = LEFT_OUT[condition]
        codes = self.labels.codes(left_out) if left_out is not None else None

        def gone(scores: np.ndarray, q: int) -> np.ndarray:
            if self.cars is not None:
                scores[..., self.cars == self.cars[q]] = -np.inf
            if codes is not None:
                scores[..., codes == codes[q]] = -np.inf
            return scores

        return gone

    def nearest(
        self, condition: Condition, depth: int, scores: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(pool indices, scores) of each query's ``depth`` nearest photos, best first, with
        the query and what ``condition`` leaves out excluded (-inf scores pad a short list)."""
        scores = self._scores() if scores is None else scores
        gone = self._gone(condition)
        depth = min(depth, len(scores) - 1)
        indices = np.empty((len(self.queries), depth), dtype=np.int64)
        best = np.empty((len(self.queries), depth), dtype=np.float32)
        for n, q in enumerate(self.queries):
            row = gone(scores[q].copy(), int(q))
            part = np.argpartition(-row, depth - 1)[:depth]
            top = part[np.argsort(-row[part], kind="stable")]
            indices[n], best[n] = top, row[top]
        return indices, best

    def neighbours(self, condition: Condition, depth: int) -> list[list[Neighbour]]:
        """Each query's ``depth`` nearest photos with their densities in the gallery it is
        asked against (``carembed.calibration.DENSITY_K``)."""
        scores = self._scores()
        indices, best = self.nearest(condition, depth, scores)
        densities = self._densities(condition, indices, scores)
        return [
            [
                self.labels.neighbour(int(j), float(s), float(d))
                for j, s, d in zip(row, srow, drow, strict=True)
                if s > -np.inf
            ]
            for row, srow, drow in zip(indices, best, densities, strict=True)
        ]

    def _densities(
        self, condition: Condition, indices: np.ndarray, scores: np.ndarray
    ) -> np.ndarray:
        """The density of each neighbour in its query's gallery: the mean score of its
        DENSITY_K nearest photos there (not itself, the query or what is left out)."""
        gone = self._gone(condition)
        result = np.empty(indices.shape, dtype=np.float64)
        for n, q in enumerate(self.queries):
            rows = scores[indices[n]]  # a copy
            rows[:, q] = -np.inf
            rows = gone(rows, int(q))
            k = min(DENSITY_K, rows.shape[1] - 1)
            top = np.partition(rows, -k, axis=1)[:, -k:]
            finite = np.isfinite(top)
            result[n] = np.where(finite, top, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        return result

    def absent(self, condition: Condition) -> dict[Level, np.ndarray]:
        """Per level, whether each query's answer is missing from the gallery it is asked
        against (its own photo left out, and what ``condition`` leaves out)."""
        left_out = LEFT_OUT[condition]
        shown = self._in_gallery()
        result: dict[Level, np.ndarray] = {}
        for level in LEVELS:
            codes = self.labels.codes(level)
            mine = codes[self.queries]
            others = np.bincount(codes[shown], minlength=len(codes))[mine] - shown[self.queries]
            if self.cars is not None and left_out is None:  # the car's other photos are out
                mates = np.bincount(self.cars[shown], minlength=int(self.cars.max()) + 1)
                others = others - (mates[self.cars[self.queries]] - shown[self.queries])
            if left_out is not None:  # photos of the answer that the left-out part takes too
                pairs = np.stack([codes, self.labels.codes(left_out)], axis=1)
                _, which, counts = np.unique(
                    pairs[shown], axis=0, return_inverse=True, return_counts=True
                )
                taken = np.zeros(len(codes), dtype=np.int64)
                taken[np.flatnonzero(shown)] = counts[which.ravel()]
                # A hidden query's own pair may have no shown photo: count those directly.
                others = others - np.where(
                    shown[self.queries],
                    taken[self.queries] - 1,
                    [self._shown_pairs(pairs, shown, int(q)) for q in self.queries],
                )
            result[level] = others <= 0
        return result

    def _shown_pairs(self, pairs: np.ndarray, shown: np.ndarray, q: int) -> int:
        return int(np.count_nonzero(shown & (pairs == pairs[q]).all(axis=1)))
