"""Searching the car index for an API answer, outside FastAPI: the filters of a request, the
hits or groups (refined when asked), and the identification from the nearest neighbours."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.deps import conditions, on_serving
from app.identification import identification_of, prior_of
from app.registry import ServingModel
from app.schemas import (
    Group,
    Hit,
    SearchParams,
    SearchResponse,
    Timings,
    car_image_url,
)
from app.services import Services
from indexer.engine import Query as StoreQuery
from indexer.engine import Recommend
from indexer.payload import DENSITY, CarFilter, StoredCar


def _filter(services: Services, params: SearchParams, exclude: set[str]) -> CarFilter:
    return CarFilter(
        make=params.make,
        model=params.model,
        body=params.body,
        year_min=params.year_min,
        year_max=params.year_max,
        exclude_ids=frozenset(exclude),
        where=conditions(services, params.filter),
    )


def _hit(car: StoredCar, score: float | None = None) -> Hit:
    return Hit(
        id=car.id,
        score=score if score is not None else car.score or 0.0,
        image_url=car_image_url(car.id, "full"),
        thumb_url=car_image_url(car.id, "thumb"),
        **car.payload.car_fields(),
        **car.payload.listing_fields(),
    )


def api_groups(groups: list[list[StoredCar]], payloads: dict[str, StoredCar]) -> list[Group]:
    """The API's groups: the cars' whole payloads, the scores of the grouping search."""
    return [
        Group(
            score=group[0].score or 0.0,
            hits=[_hit(payloads[c.id], c.score) for c in group if c.id in payloads],
            **payloads[group[0].id].payload.car_fields(),
        )
        for group in groups
        if group[0].id in payloads
    ]


VOTE_FIELDS = ("class_name", "make", "model", "year", DENSITY)
"""What the vote reads of each neighbour."""


async def voters(
    services: Services, model: ServingModel, vectors: Sequence[Any], exclude: str | None
) -> list[list[StoredCar]]:
    """Each photo's nearest cars of all (no filter, no threshold; ``exclude`` left out), as
    many and with the fields the identification's votes read."""
    alone = CarFilter(exclude_ids=frozenset({exclude} if exclude else ()))
    fetch, index = model.calibration.fetch, services.index
    return await asyncio.gather(
        *(
            on_serving(services, model, index.search, v, alone, fetch, 0, None, VOTE_FIELDS)
            for v in vectors
        )
    )


@dataclass(frozen=True)
class _Search:
    """One search's store reads: what it asks for (``params``), with which query (the photo's
    vector, or a recommendation toward the photos and example cars and away from others) and
    model."""

    services: Services
    model: ServingModel
    params: SearchParams
    query: StoreQuery

    async def _read(
        self, query: StoreQuery, where: CarFilter, limit: int, offset: int = 0
    ) -> list[StoredCar]:
        index, threshold = self.services.index, self.params.score_threshold
        found = await on_serving(
            self.services, self.model, index.search, query, where, limit, offset, threshold
        )
        return list(found)

    async def best(self, where: CarFilter, limit: int, offset: int = 0) -> list[StoredCar]:
        """The best cars for the query, above the threshold."""
        return await self._read(self.query, where, limit, offset)

    async def best_of(self, vectors: Sequence[Any], where: CarFilter) -> list[StoredCar]:
        """The page of cars best for any of ``vectors``, each scored by its best: the top
        ``offset + limit`` of every photo hold the top ``offset + limit`` of all."""
        wanted = self.params.offset + self.params.limit
        found = await asyncio.gather(*(self._read(v, where, wanted) for v in vectors))
        best: dict[str, StoredCar] = {}
        for car in (c for cars in found for c in cars):
            if car.id not in best or (car.score or 0.0) > (best[car.id].score or 0.0):
                best[car.id] = car
        ranked = sorted(best.values(), key=lambda c: (-(c.score or 0.0), c.id))
        return ranked[self.params.offset : wanted]

    async def groups(self, where: CarFilter) -> tuple[list[Group], list[StoredCar]]:
        """One group per class (a few fields read, then whole payloads for the chosen cars)
        and the nearest cars the engine read to group them, if it did."""
        params, index = self.params, self.services.index
        grouped = await on_serving(
            self.services,
            self.model,
            index.search_groups,
            self.query,
            where,
            "class_name",
            params.offset + params.limit,
            params.group_size,
            VOTE_FIELDS,
        )
        chosen = grouped.groups[params.offset :]
        ids = [c.id for group in chosen for c in group]
        whole = await on_serving(self.services, self.model, index.get_many, ids)
        return api_groups(chosen, {c.id: c for c in whole}), grouped.nearest or []


async def answer(
    services: Services,
    model: ServingModel,
    vectors: Sequence[Any],
    params: SearchParams,
    exclude: str | None,
) -> SearchResponse:
    """Hits (or groups) for the filters, refined toward ``params.positive`` and away from
    ``params.negative`` when given, and the identification of the car from its unfiltered
    nearest neighbours. ``vectors``: the photos of one car searched with: a car's score is its
    best cosine over them (grouped or refined: the recommendation's best score), and each
    photo's neighbours vote."""
    started = time.perf_counter()
    vector = vectors[0]
    examples = set(params.positive) | set(params.negative)
    where = _filter(services, params, examples | ({exclude} if exclude else set()))
    k = model.calibration.fetch
    plain = (
        where == CarFilter(exclude_ids=where.exclude_ids)
        and params.score_threshold is None
        and not examples
        and len(vectors) == 1
    )
    query: StoreQuery = vector if len(vectors) == 1 else Recommend(tuple(vectors), ())
    if examples:
        refinement = services.index.listings.refinement
        query = await on_serving(
            services, model, refinement, list(vectors), params.positive, params.negative
        )
    search = _Search(services, model, params, query)
    groups = None
    if params.group_by == "class":
        groups, nearest_first = await search.groups(where)
        hits = [hit for group in groups for hit in group.hits]
    elif plain and not params.offset:  # one search serves the hits and the vote
        nearest_first = await search.best(where, max(params.limit, k))
        hits = [_hit(car) for car in nearest_first[: params.limit]]
    elif len(vectors) > 1 and not examples:  # each car at its best photo's cosine score
        nearest_first = []
        hits = [_hit(car) for car in await search.best_of(vectors, where)]
    else:
        nearest_first = await search.best(where, params.limit, params.offset)
        hits = [_hit(car) for car in nearest_first]
        if params.offset:
            nearest_first = []
    # The vote reads the nearest cars of all: the hits serve when no filter narrowed them.
    if plain and len(nearest_first) >= k:
        photos = [nearest_first[:k]]
    else:
        photos = await voters(services, model, vectors, exclude)
    prior = prior_of(params.absent_prior, services.settings)
    identification = identification_of(photos, model.calibration, prior)
    services.metrics.stage.labels("search").observe(time.perf_counter() - started)
    return SearchResponse(
        hits=hits,
        groups=groups,
        identification=identification,
        timings=Timings(),
        model_version=model.version,
    )
