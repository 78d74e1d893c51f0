"""The identification's calibration: the vote's settings, the maps from vote share to the
probability of being right when the car's model is in the gallery, and the fit that tells how
likely the car's answer at each level is absent from the gallery.

It is fitted on held-out training classes (``training.identification``) and travels in the
model's ``config.json`` (``training["identification"]``), so a retrained model brings its own.
A model without one reports its shares uncalibrated (``calibrated: false``); a calibration
fitted before absence was measured has no ``absent`` fit and its answers say so.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from carembed.config import ModelConfig

DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.05
DEFAULT_ABSENT_PRIOR = 0.3  # the share of queries whose car's model the gallery lacks
# A gallery photo's density: the mean cosine score of its DENSITY_K nearest other photos (the
# index keeps it with the photo). Photos in crowded parts of the space (the car models a
# model trained on) score high against everything; the votes subtract it.
DENSITY_K = 20
DENSITY_FETCH = 60  # neighbours read when the votes use densities (re-ranked, then cut)

Level = Literal["make", "model", "exact"]
LEVELS: tuple[Level, ...] = ("make", "model", "exact")

# What the absence fit reads of a level's vote, in this order (``carembed.identify.Evidence``).
EVIDENCE = ("best", "gap", "share", "agree")


class Mapping(BaseModel):
    """A non-decreasing map from vote share to confidence: points to interpolate between."""

    model_config = ConfigDict(frozen=True)

    x: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    y: list[float] = Field(default_factory=lambda: [0.0, 1.0])

    def __call__(self, share: float) -> float:
        return float(np.interp(share, self.x, self.y))


class AbsenceFit(BaseModel):
    """A logistic fit of "the answer at this level is none of the gallery's" on the level's
    evidence, fitted with present and absent weighed equally: its log-odds are the evidence's
    likelihood ratio, and a prior's log-odds added to them give the probability at that
    prior."""

    model_config = ConfigDict(frozen=True)

    weights: list[float]  # one per EVIDENCE name
    intercept: float

    def log_odds(self, evidence: list[float]) -> float:
        return float(np.dot(self.weights, evidence)) + self.intercept


class Calibration(BaseModel):
    """The vote's settings and the maps fitted for them."""

    model_config = ConfigDict(frozen=True)

    k: int = DEFAULT_K  # neighbours that vote for the exact model and the model
    temperature: float = DEFAULT_TEMPERATURE
    make_k: int = DEFAULT_K  # the make has its own vote: more neighbours can agree on it
    make_temperature: float = DEFAULT_TEMPERATURE
    per_answer: int | None = None  # neighbours one answer may count (None: all of them)
    density_weight: float = 0.0  # votes read score - weight x the neighbour's density
    model: Mapping = Field(default_factory=Mapping)  # exact model (make + model + year)
    model_level: Mapping | None = None  # make + model, any year (None: the exact map)
    make: Mapping = Field(default_factory=Mapping)
    absent: dict[Level, AbsenceFit] | None = None
    fitted: bool = False
    fitted_on: str = ""  # what it was fitted on (never the evaluation classes)

    @property
    def depth(self) -> int:
        """How many nearest neighbours the votes read (by their corrected scores)."""
        return max(self.k, self.make_k)

    @property
    def fetch(self) -> int:
        """How many nearest neighbours (by cosine score) a search reads for the votes."""
        return max(self.depth, DENSITY_FETCH) if self.density_weight else self.depth

    def mapping(self, level: Level) -> Mapping:
        if level == "make":
            return self.make
        if level == "model":
            return self.model_level or self.model
        return self.model

    def absent_probability(self, level: Level, evidence: list[float], prior: float) -> float | None:
        """The probability that the answer at ``level`` is none of the gallery's, at ``prior``
        (the share of queries whose answer the gallery lacks); None without an absence fit."""
        if self.absent is None:
            return None
        if prior <= 0.0 or prior >= 1.0:
            return float(prior >= 1.0)
        z = self.absent[level].log_odds(evidence) + math.log(prior / (1.0 - prior))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def calibration_of(config: ModelConfig) -> Calibration:
    """The model's fitted calibration, or the uncalibrated defaults."""
    stored = config.training.get("identification")
    return Calibration.model_validate(stored) if stored else Calibration()
