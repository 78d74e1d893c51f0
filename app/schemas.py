"""The API's request and response models (what OpenAPI documents)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from indexer.payload import CarFields

_EXAMPLE_URL = "/api/v1/cars/0b5e2d8a-6c1f-5a43-9d53-1f0c2a7e9b44/image?size="


class Hit(CarFields):
    id: str
    score: float
    image_url: str
    thumb_url: str


class Timings(BaseModel):
    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0


class SearchResponse(BaseModel):
    hits: list[Hit]
    timings: Timings
    model_version: str

    model_config = {
        "json_schema_extra": {
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
                            "image_url": _EXAMPLE_URL + "full",
                            "thumb_url": _EXAMPLE_URL + "thumb",
                        }
                    ],
                    "timings": {"decode_ms": 6.1, "embed_ms": 41.0, "search_ms": 3.2},
                    "model_version": "efficientnetlite0-identity-3f2a9c1b7d0e",
                }
            ]
        }
    }


class Car(CarFields):
    id: str
    width: int | None = None
    height: int | None = None
    source: str | None = None
    model_version: str | None = None
    indexed_at: str | None = None
    image_url: str


class SearchParams(BaseModel):
    """Paging, score threshold and filters: form fields of a search, query of more-like-this."""

    limit: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0, le=10_000)
    score_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    make: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=100)
    body: str | None = Field(None, max_length=100)
    year_min: int | None = Field(None, ge=1800, le=2200)
    year_max: int | None = Field(None, ge=1800, le=2200)

    @model_validator(mode="after")
    def _years_in_order(self) -> SearchParams:
        low, high = self.year_min, self.year_max
        if low is not None and high is not None and low > high:
            raise ValueError("year_min is after year_max")
        return self
