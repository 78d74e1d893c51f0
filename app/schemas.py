"""The API's request and response models (what OpenAPI documents)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.car_schemas import (
    EXAMPLE_CAR,
    EXAMPLE_ID,
    EXAMPLE_PHOTO,
    EXAMPLE_VERSION,
    AddedCar,
    CarText,
    EmbeddedBy,
    Year,
    car_image_url,
)
from app.identification import IDENTIFICATION_EXAMPLE, AbsentPrior, Identification
from app.problems import Problem
from indexer import CarFields, Listing

MAX_EXAMPLES = 10
"""Most car ids in ``positive`` and in ``negative``."""


class Hit(CarFields, Listing):
    """A car: its score is its best photo's, the one named."""

    id: str = Field(description="the car's id")
    score: float
    photo_id: str = Field(description="the car's photo that matched best")
    view: str | None = Field(None, description="that photo's view label")
    photos_count: int = Field(1, description="how many photos the car has")
    image_url: str
    thumb_url: str


class Timings(BaseModel):
    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0


class Group(CarFields):
    """One car model (class) and its best cars."""

    class_name: str | None = None
    score: float
    hits: list[Hit]


class SearchResponse(EmbeddedBy):
    hits: list[Hit]
    timings: Timings
    identification: Identification | None = None
    groups: list[Group] | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hits": [
                        {
                            "id": "0b5e2d8a-6c1f-5a43-9d53-1f0c2a7e9b44",
                            "score": 0.91,
                            "make": "Audi",
                            "model": "TTS Coupe",
                            "year": 2012,
                            "body": "Coupe",
                            "class_name": "Audi TTS Coupe 2012",
                            "photo_id": EXAMPLE_PHOTO,
                            "view": "front",
                            "photos_count": 6,
                            "image_url": car_image_url(EXAMPLE_ID, EXAMPLE_PHOTO, "full"),
                            "thumb_url": car_image_url(EXAMPLE_ID, EXAMPLE_PHOTO, "thumb"),
                        }
                    ],
                    "timings": {"decode_ms": 6.1, "embed_ms": 41.0, "search_ms": 3.2},
                    "embedding_version": EXAMPLE_VERSION,
                    "identification": IDENTIFICATION_EXAMPLE,
                    "groups": None,
                }
            ]
        }
    )


class FacetValue(BaseModel):
    value: str | int | bool
    count: int


class FacetResponse(BaseModel):
    """How many cars (under the filter) have each value of ``field``, most first."""

    field: str
    values: list[FacetValue]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "field": "make",
                    "values": [{"value": "Audi", "count": 131}, {"value": "BMW", "count": 97}],
                }
            ]
        }
    }


class SearchParams(BaseModel):
    """Paging, score threshold and filters: form fields of a search, query of more-like-this."""

    limit: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0, le=10_000)
    score_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    make: CarText | None = None
    model: CarText | None = None
    body: CarText | None = None
    year_min: Year | None = None
    year_max: Year | None = None
    group_by: Literal["class"] | None = Field(
        None, description="class: one result per car model; limit then counts groups"
    )
    group_size: int = Field(3, ge=1, le=3, description="cars per group")
    filter: str | None = Field(
        None,
        max_length=4000,
        description='a JSON object over built-in fields and declared attributes: {"price": '
        '{"gte": 5000, "lte": 20000}, "color": ["red", "black"], "available": true} (a value '
        "matches, a list matches any of its values, an object is a range)",
    )
    positive: list[str] = Field(
        default_factory=list,
        description=f"up to {MAX_EXAMPLES} car ids: results move toward these cars",
    )
    negative: list[str] = Field(
        default_factory=list,
        description=f"up to {MAX_EXAMPLES} car ids: results move away from these cars",
    )
    absent_prior: AbsentPrior | None = None

    @field_validator("positive", "negative", mode="before")
    @classmethod
    def _car_ids(cls, value: object) -> list[str]:
        """Repeated fields, or ids separated by commas; each a car id."""
        items = [value] if isinstance(value, str) else list(value or [])  # type: ignore[call-overload]
        ids = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
        if len(ids) > MAX_EXAMPLES:
            raise ValueError(f"at most {MAX_EXAMPLES} car ids")
        for car_id in ids:
            try:
                uuid.UUID(car_id)
            except ValueError:
                raise ValueError(f"{car_id!r} is not a car id") from None
        return [str(uuid.UUID(i)) for i in ids]

    @model_validator(mode="after")
    def _years_in_order(self) -> SearchParams:
        low, high = self.year_min, self.year_max
        if low is not None and high is not None and low > high:
            raise ValueError("year_min is after year_max")
        return self


class ProblemDetail(BaseModel):
    """An RFC 9457 problem, as one entry of a batch answer."""

    type: str
    title: str
    status: int
    detail: str = ""

    @classmethod
    def of(cls, problem: Problem) -> ProblemDetail:
        return cls(
            type=f"/problems/{problem.slug}",
            title=problem.title,
            status=problem.status,
            detail=problem.detail,
        )


class BatchAddResponse(BaseModel):
    """One entry per car, in the order sent: the car added, or its problem."""

    results: list[AddedCar | ProblemDetail]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        EXAMPLE_CAR,
                        {
                            "type": "/problems/unreadable-image",
                            "title": "Not a readable image",
                            "status": 415,
                            "detail": "the upload is not an image this service can decode",
                        },
                    ]
                }
            ]
        }
    )


class BatchResponse(BaseModel):
    """One entry per photo, in the order sent: a search answer, or the photo's problem."""

    results: list[SearchResponse | ProblemDetail]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "results": [
                        {
                            "hits": [],
                            "timings": {"decode_ms": 0, "embed_ms": 0, "search_ms": 2.1},
                            "embedding_version": EXAMPLE_VERSION,
                        },
                        {
                            "type": "/problems/unreadable-image",
                            "title": "Not a readable image",
                            "status": 415,
                            "detail": "the upload is not an image this service can decode",
                        },
                    ]
                }
            ]
        }
    }


class EmbedResponse(EmbeddedBy):
    vector: list[float]
    dim: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"vector": [0.012, -0.034], "dim": 2, "embedding_version": EXAMPLE_VERSION}
            ]
        }
    )


class FieldInfo(BaseModel):
    name: str
    kind: Literal["keyword", "integer", "float", "bool"]
    attribute: bool = Field(description="a declared attribute (else a built-in field)")
    facet: bool = Field(description="GET /api/v1/facets counts its values")


class FieldsResponse(BaseModel):
    """The fields ``filter`` accepts and facets count (built-in and declared attributes)."""

    fields: list[FieldInfo]
