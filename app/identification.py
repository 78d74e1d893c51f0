""" "What car is this?" in the API: the answer's schema (three levels, each with its confidence
and the probability that the gallery lacks it) and its making from the nearest cars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from pydantic.config import JsonDict

from app.settings import AppSettings
from carembed.calibration import Calibration
from carembed.identify import Identification as Found
from carembed.identify import Neighbour, identify
from indexer import StoredCar

AbsentPrior = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        description="the share of queries whose car model the gallery lacks (unset: the "
        "service's CARSEARCH_ABSENT_PRIOR); 0: the gallery holds every model asked about",
    ),
]

Verdict = Literal["exact", "model", "make", "absent"]

MAX_QUERY_PHOTOS = 8
"""Most photos of one car an identification reads together."""

IDENTIFICATION_EXAMPLE: JsonDict = {
    "candidates": [
        {
            "make": "Audi",
            "model": "TTS Coupe",
            "year": 2012,
            "class_name": "Audi TTS Coupe 2012",
            "confidence": 0.82,
            "share": 0.77,
        }
    ],
    "make": {"make": "Audi", "confidence": 0.93, "absent": 0.01},
    "model": {"make": "Audi", "model": "TTS Coupe", "confidence": 0.85, "absent": 0.04},
    "absent": 0.09,
    "absent_calibrated": True,
    "absent_prior": 0.3,
    "answer": "exact",
    "calibrated": True,
}


class Candidate(BaseModel):
    make: str | None = None
    model: str | None = None
    year: int | None = None
    class_name: str
    confidence: float = Field(
        description="calibrated probability that the car is this (make + model + year), the "
        "chance that the gallery lacks it counted"
    )
    share: float = Field(description="the answer's share of the neighbours' vote")


class MakeAnswer(BaseModel):
    make: str | None = None
    confidence: float = 0.0
    absent: float | None = Field(
        None, description="probability that the car's make is none of the gallery's"
    )


class ModelAnswer(BaseModel):
    """The make and model, any year."""

    make: str | None = None
    model: str | None = None
    confidence: float = Field(0.0, description="probability that the car is this model")
    absent: float | None = Field(
        None, description="probability that the car's make + model is none of the gallery's"
    )


class Identification(BaseModel):
    """What car this probably is, at three levels: up to 3 exact candidates (make + model +
    year), the model of any year and the make; each with the probability that the gallery
    lacks the car's answer at that level (``absent``, null when the model's calibration
    predates it: ``absent_calibrated`` false)."""

    candidates: list[Candidate]
    make: MakeAnswer
    model: ModelAnswer = Field(default_factory=ModelAnswer)
    absent: float | None = Field(
        None, description="probability that the car's exact model is none of the gallery's"
    )
    absent_calibrated: bool = False
    absent_prior: float = 0.0
    answer: Verdict = Field(
        "exact",
        description="the finest level the gallery likely holds: exact (the first candidate), "
        "model (its year is not in the gallery), make, or absent (not in this gallery)",
    )
    calibrated: bool = Field(description="false: the model has no fitted calibration")

    model_config = {"json_schema_extra": {"examples": [IDENTIFICATION_EXAMPLE]}}


def _verdict(found: Found) -> Verdict:
    """The finest level answered whose absence is not the likelier."""
    answered = {
        "exact": bool(found.candidates),
        "model": bool(found.model),
        "make": bool(found.make),
    }
    for level in ("exact", "model", "make"):
        absent = found.levels[level].absent
        if answered[level] and (absent is None or absent < 0.5):
            return level
    return "absent"


def prior_of(requested: float | None, settings: AppSettings) -> float:
    """The request's absent prior, or the service's."""
    return settings.absent_prior if requested is None else requested


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def identification_of(
    photos: Sequence[Sequence[StoredCar]], calibration: Calibration, prior: float
) -> Identification:
    """The identification from each query photo's nearest cars (best first)."""
    found = identify(
        [
            [
                Neighbour(
                    c.payload.class_name,
                    c.payload.make,
                    c.payload.model,
                    c.payload.year,
                    c.score or 0.0,
                    c.payload.density,
                )
                for c in cars
            ]
            for cars in photos
        ],
        calibration,
        prior,
    )
    levels = found.levels
    return Identification(
        candidates=[
            Candidate(
                make=c.make,
                model=c.model,
                year=c.year,
                class_name=c.class_name,
                confidence=round(c.confidence, 4),
                share=round(c.share, 4),
            )
            for c in found.candidates
        ],
        make=MakeAnswer(
            make=found.make,
            confidence=round(levels["make"].confidence, 4),
            absent=_round(levels["make"].absent),
        ),
        model=ModelAnswer(
            make=found.make if found.model else None,
            model=found.model,
            confidence=round(levels["model"].confidence, 4) if found.model else 0.0,
            absent=_round(levels["model"].absent),
        ),
        absent=_round(levels["exact"].absent),
        absent_calibrated=calibration.absent is not None,
        absent_prior=prior,
        answer=_verdict(found),
        calibrated=found.calibrated,
    )
