""" "What car is this?": a score-weighted vote of the nearest neighbours, and a calibration that
turns vote shares into confidences that mean what they say.

The vote: each of the ``k`` nearest cars votes for its class (and, separately, its make) with
weight ``exp(score / temperature)``; a class's share is its weights' sum over all weights. The
calibration maps a share to the probability that the answer is right; it is fitted on the
training classes (``training.identification``) and travels in the model's ``config.json``
(``training["identification"]``), so a retrained model brings its own. A model without one
reports its shares uncalibrated (``calibrated: false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from carembed.config import ModelConfig

DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.05


class Mapping(BaseModel):
    """A non-decreasing map from vote share to confidence: points to interpolate between."""

    model_config = ConfigDict(frozen=True)

    x: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    y: list[float] = Field(default_factory=lambda: [0.0, 1.0])

    def __call__(self, share: float) -> float:
        return float(np.interp(share, self.x, self.y))


class Calibration(BaseModel):
    """The vote's settings and the maps fitted for them."""

    model_config = ConfigDict(frozen=True)

    k: int = DEFAULT_K  # neighbours that vote for the exact model
    temperature: float = DEFAULT_TEMPERATURE
    make_k: int = DEFAULT_K  # the make has its own vote: more neighbours can agree on it
    make_temperature: float = DEFAULT_TEMPERATURE
    model: Mapping = Field(default_factory=Mapping)  # exact model (make + model + year)
    make: Mapping = Field(default_factory=Mapping)
    fitted: bool = False
    fitted_on: str = ""  # what it was fitted on (never the evaluation classes)

    @property
    def depth(self) -> int:
        """How many nearest neighbours the votes read."""
        return max(self.k, self.make_k)


def calibration_of(config: ModelConfig) -> Calibration:
    """The model's fitted calibration, or the uncalibrated defaults."""
    stored = config.training.get("identification")
    return Calibration.model_validate(stored) if stored else Calibration()


@dataclass(frozen=True)
class Neighbour:
    class_name: str | None
    make: str | None
    model: str | None
    year: int | None
    score: float


@dataclass(frozen=True)
class Candidate:
    class_name: str
    make: str | None
    model: str | None
    year: int | None
    share: float
    confidence: float


@dataclass(frozen=True)
class Identification:
    candidates: list[Candidate]
    make: str | None
    make_share: float
    make_confidence: float
    calibrated: bool


def weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax weights of cosine scores (stable for any temperature)."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    result: np.ndarray = np.exp(z - z.max(axis=-1, keepdims=True))
    return result


def _shares(keys: Sequence[str], scores: Sequence[float], temperature: float) -> dict[str, float]:
    """Each key's share of the softmax-weighted vote."""
    w = weights(np.array(scores), temperature)
    total = float(w.sum())
    shares: dict[str, float] = {}
    for key, weight in zip(keys, w, strict=True):
        shares[key] = shares.get(key, 0.0) + float(weight) / total
    return shares


def _best(shares: dict[str, float], top: int) -> list[tuple[str, float]]:
    return sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def identify(
    neighbours: Sequence[Neighbour], calibration: Calibration, top: int = 3
) -> Identification:
    """The votes of the nearest neighbours (best first): the first ``make_k`` for the make, the
    first ``k`` for the exact model. The answers never contradict each other: the first
    candidate is the best-voted model *of the winning make* (the others follow by share), so a
    model of another make with more votes is not the answer; when no neighbour of the winning
    make voted for a model, its nearest car of that make is, with share 0 (not sure)."""
    voters = [n for n in neighbours[: calibration.k] if n.class_name]
    if not voters:
        return Identification([], None, 0.0, 0.0, calibration.fitted)
    makers = [n for n in neighbours[: calibration.make_k] if n.make]
    by_make = _shares(
        [n.make or "" for n in makers], [n.score for n in makers], calibration.make_temperature
    )
    make, make_share = _best(by_make, 1)[0] if by_make else (None, 0.0)
    first: dict[str, Neighbour] = {}
    for n in voters:
        first.setdefault(n.class_name or "", n)
    by_class = _shares(
        [n.class_name or "" for n in voters], [n.score for n in voters], calibration.temperature
    )
    ranked = _best(by_class, len(by_class))
    if make is not None:
        lead = next((kv for kv in ranked if first[kv[0]].make == make), None)
        if lead is None:
            nearest = next((n for n in makers if n.make == make and n.class_name), None)
            if nearest is None:  # no model of that make is known: no exact answer
                return Identification(
                    [], make, make_share, calibration.make(make_share), calibration.fitted
                )
            first[nearest.class_name or ""] = nearest
            lead = (nearest.class_name or "", 0.0)
        ranked = [lead, *(kv for kv in ranked if kv != lead)]
    candidates = [
        Candidate(
            name,
            first[name].make,
            first[name].model,
            first[name].year,
            share,
            calibration.model(share),
        )
        for name, share in ranked[:top]
    ]
    return Identification(
        candidates, make, make_share, calibration.make(make_share), calibration.fitted
    )
