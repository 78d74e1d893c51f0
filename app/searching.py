"""Searching the car index for an API answer, outside FastAPI: the filters of a request, the
cars or groups of cars (refined when asked), and the identification from the nearest
neighbours."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.car_schemas import car_image_url
from app.deps import conditions, on_serving
from app.identification import identification_of, prior_of
from app.registry import ServingModel
from app.schemas import (
    Group,
    Hit,
    SearchParams,
    SearchResponse,
    Timings,
)
from app.services import Services
from indexer import CAR_ID, DENSITY, CarFilter, Recommend, StoredCar
from indexer import Query as StoreQuery


def _filter(services: Services, params: SearchParams, exclude: set[str]) -> CarFilter:
    return CarFilter(
        make=params.make,
        model=params.model,
        body=params.body,
        year_min=params.year_min,
        year_max=params.year_max,
        exclude_cars=frozenset(exclude),
        where=conditions(services, params.filter),
    )


def _hit(photo: StoredCar, score: float | None = None) -> Hit:
    """The car of ``photo``, its best photo (its photo count is filled in later)."""
    return Hit(
        id=photo.car_id,
        score=score if score is not None else photo.score or 0.0,
        photo_id=photo.id,
        view=photo.payload.view,
        image_url=car_image_url(photo.car_id, photo.id, "full"),
        thumb_url=car_image_url(photo.car_id, photo.id, "thumb"),
        **photo.payload.car_fields(),
        **photo.payload.listing_fields(),
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


VOTE_FIELDS = ("class_name", "make", "model", "year", DENSITY, CAR_ID)
"""What the vote reads of each neighbour."""


def one_per_car(photos: list[StoredCar]) -> list[StoredCar]:
    """Each car's best photo (``photos`` best first): a car votes once."""
    best: dict[str, StoredCar] = {}
    for photo in photos:
        best.setdefault(photo.car_id, photo)
    return list(best.values())


async def voters(
    services: Services, model: ServingModel, vectors: Sequence[np.ndarray], exclude: str | None
) -> list[list[StoredCar]]:
    """Each photo's nearest cars of all (no filter, no threshold; the car ``exclude`` left
    out), each as its best photo, with the fields the identification's votes read."""
    alone = CarFilter(exclude_cars=frozenset({exclude} if exclude else ()))
    fetch, index = model.calibration.fetch, services.index
    found = await asyncio.gather(
        *(
            on_serving(services, model, index.search, v, alone, fetch, 0, None, VOTE_FIELDS)
            for v in vectors
        )
    )
    return [one_per_car(photos) for photos in found]


@dataclass(frozen=True)
class _Search:
    """One search's store reads: what it asks for (``params``), with which query (the photos'
    vectors, or a recommendation toward the photos and example cars and away from others) and
    model."""

    services: Services
    model: ServingModel
    params: SearchParams
    query: StoreQuery

    async def cars(self, where: CarFilter) -> tuple[list[StoredCar], list[StoredCar]]:
        """The page of cars for the query, each as its best photo, above the threshold; and
        the photos the engine read to find them (best first), if it did."""
        params, index = self.params, self.services.index
        found = await on_serving(
            self.services,
            self.model,
            index.search_cars,
            self.query,
            where,
            params.limit,
            params.offset,
            params.score_threshold,
        )
        return [group[0] for group in found.groups], found.nearest or []

    async def best_of(
        self, vectors: Sequence[np.ndarray], where: CarFilter
    ) -> tuple[list[StoredCar], list[StoredCar]]:
        """The page of cars best for any of ``vectors``, each scored by its best photo's best
        cosine: each vector's top ``offset + limit`` cars hold the top ``offset + limit`` of
        all."""
        params, index = self.params, self.services.index
        wanted = params.offset + params.limit
        found = await asyncio.gather(
            *(
                on_serving(
                    self.services,
                    self.model,
                    index.search_cars,
                    v,
                    where,
                    wanted,
                    0,
                    params.score_threshold,
                )
                for v in vectors
            )
        )
        best: dict[str, StoredCar] = {}
        for photo in (g[0] for grouped in found for g in grouped.groups):
            now = best.get(photo.car_id)
            if now is None or (photo.score or 0.0) > (now.score or 0.0):
                best[photo.car_id] = photo
        ranked = sorted(best.values(), key=lambda p: (-(p.score or 0.0), p.car_id))
        return ranked[params.offset : wanted], []

    async def groups(self, where: CarFilter) -> tuple[list[Group], list[StoredCar]]:
        """One group per class (a few fields read, then whole payloads for the chosen cars)
        and the nearest photos the engine read to group them, if it did."""
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


async def _counted(services: Services, model: ServingModel, hits: list[Hit]) -> None:
    """Each hit's ``photos_count`` (one store read for all)."""
    counts = await on_serving(
        services, model, services.index.listings.photo_counts, sorted({h.id for h in hits})
    )
    for hit in hits:
        hit.photos_count = counts.get(hit.id, 1)


async def answer(
    services: Services,
    model: ServingModel,
    vectors: Sequence[np.ndarray],
    params: SearchParams,
    exclude: str | None,
) -> SearchResponse:
    """Cars (or groups of cars) for the filters, refined toward ``params.positive`` and away
    from ``params.negative`` when given, and the identification of the car from its unfiltered
    nearest neighbours. ``vectors``: the photos of one car searched with: a car's score is its
    best photo's best cosine over them (grouped or refined: the recommendation's best score),
    and each query photo's neighbours vote. ``exclude``: the car whose likes are asked for."""
    started = time.perf_counter()
    examples = set(params.positive) | set(params.negative)
    where = _filter(services, params, examples | ({exclude} if exclude else set()))
    k = model.calibration.fetch
    plain = (
        where == CarFilter(exclude_cars=where.exclude_cars)
        and params.score_threshold is None
        and not examples
        and len(vectors) == 1
        and not params.offset
    )
    query: StoreQuery = vectors[0] if len(vectors) == 1 else Recommend(tuple(vectors), ())
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
    else:
        several = len(vectors) > 1 and not examples
        best, nearest_first = await (
            search.best_of(vectors, where) if several else search.cars(where)
        )
        hits = [_hit(photo) for photo in best]
    if hits:
        await _counted(services, model, hits)
    # The vote reads the nearest cars of all: the photos read for the hits serve when no filter
    # narrowed them.
    nearest = one_per_car(nearest_first[:k]) if plain else []
    if plain and len(nearest_first) >= k and nearest:
        photos = [nearest]
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
        embedding_version=model.version,
    )
