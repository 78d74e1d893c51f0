"""Search by photo and "more like this"."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from app.deps import (
    BOX_DESCRIPTION,
    ServicesDep,
    check_id,
    conditions,
    decode,
    embed_upload,
    get_car,
    on_serving,
    one_image,
    read_upload,
    region,
    require_read_key,
)
from app.problems import Problem
from app.schemas import (
    BatchResponse,
    Candidate,
    EmbedResponse,
    Group,
    Hit,
    Identification,
    MakeAnswer,
    ProblemDetail,
    SearchParams,
    SearchResponse,
    Timings,
    car_image_url,
)
from app.services import Services, ServingModel
from carembed.identify import Calibration, Neighbour, identify
from indexer.engine import Query as StoreQuery
from indexer.payload import CarFilter, StoredCar

router = APIRouter(prefix="/api/v1", tags=["search"], dependencies=[Depends(require_read_key)])


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


def _identification(cars: list[StoredCar], calibration: Calibration) -> Identification:
    found = identify(
        [
            Neighbour(
                c.payload.class_name,
                c.payload.make,
                c.payload.model,
                c.payload.year,
                c.score or 0.0,
            )
            for c in cars
        ],
        calibration,
    )
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
        make=MakeAnswer(make=found.make, confidence=round(found.make_confidence, 4)),
        calibrated=found.calibrated,
    )


def group_by_class(cars: list[StoredCar], size: int) -> list[list[StoredCar]]:
    """One group per class, ordered by its best score, with its best ``size`` cars (``cars``
    best first, with ``class_name`` in their payload)."""
    groups: dict[str, list[StoredCar]] = {}
    for car in cars:
        group = groups.setdefault(car.payload.class_name or car.id, [])
        if len(group) < size:
            group.append(car)
    return list(groups.values())


def _groups(groups: list[list[StoredCar]], payloads: dict[str, StoredCar]) -> list[Group]:
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


VOTE_FIELDS = ("class_name", "make", "model", "year")
"""What the vote reads of each neighbour."""

GROUP_FETCH_MAX = 1000
"""Most neighbours read to fill the groups of one page (the engines have no grouping here)."""


async def _answer(
    services: Services,
    model: ServingModel,
    vector: Any,
    params: SearchParams,
    exclude: str | None,
) -> SearchResponse:
    """Hits (or groups) for the filters, refined toward ``params.positive`` and away from
    ``params.negative`` when given, and the identification of ``vector`` from its unfiltered
    nearest neighbours."""
    started = time.perf_counter()
    examples = set(params.positive) | set(params.negative)
    where = _filter(services, params, examples | ({exclude} if exclude else set()))
    k = model.calibration.depth
    plain = (
        where == CarFilter(exclude_ids=where.exclude_ids)
        and params.score_threshold is None
        and not examples
    )
    query: StoreQuery = vector
    if examples:
        query = await on_serving(
            services,
            model,
            services.index.listings.refinement,
            [vector],
            params.positive,
            params.negative,
        )

    async def best(
        where: CarFilter,
        limit: int,
        offset: int = 0,
        fields: Sequence[str] | None = None,
        query: StoreQuery = query,
        threshold: float | None = params.score_threshold,
    ) -> list[StoredCar]:
        return list(
            await on_serving(
                services,
                model,
                services.index.search,
                query,
                where,
                limit,
                offset,
                threshold,
                fields,
            )
        )

    groups = None
    if params.group_by == "class":
        wanted = params.offset + params.limit
        fetch = min(GROUP_FETCH_MAX, max(wanted * params.group_size * 4, 64))
        while True:  # a few fields only: whole payloads are read for the chosen cars alone
            found = await best(where, fetch, fields=VOTE_FIELDS)
            grouped = group_by_class(found, params.group_size)
            if len(grouped) >= wanted or len(found) < fetch or fetch >= GROUP_FETCH_MAX:
                break
            fetch = min(GROUP_FETCH_MAX, fetch * 4)
        chosen = grouped[params.offset : wanted]
        ids = [c.id for group in chosen for c in group]
        whole = await on_serving(services, model, services.index.get_many, ids)
        groups = _groups(chosen, {c.id: c for c in whole})
        hits = [hit for group in groups for hit in group.hits]
        nearest_first = found
    elif plain and not params.offset:  # one search serves the hits and the vote
        nearest_first = await best(where, max(params.limit, k))
        hits = [_hit(car) for car in nearest_first[: params.limit]]
    else:
        nearest_first = await best(where, params.limit, params.offset)
        hits = [_hit(car) for car in nearest_first]
        if params.offset:
            nearest_first = []
    # The vote reads the nearest cars of all: the hits serve when no filter narrowed them.
    voters = nearest_first if plain and len(nearest_first) >= k else None
    if voters is None:
        alone = CarFilter(exclude_ids=frozenset({exclude} if exclude else ()))
        voters = await best(alone, k, fields=VOTE_FIELDS, query=vector, threshold=None)
    identification = _identification(voters[:k], model.calibration)
    services.metrics.stage.labels("search").observe(time.perf_counter() - started)
    return SearchResponse(
        hits=hits,
        groups=groups,
        identification=identification,
        timings=Timings(),
        model_version=model.version,
    )


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Find cars like the photo",
    dependencies=[Depends(one_image)],
)
async def search(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a photo of a car (JPEG, PNG, WebP...)")],
    params: Annotated[SearchParams, Form()],
    box: Annotated[str | None, Form(max_length=100, description=BOX_DESCRIPTION)] = None,
) -> SearchResponse:
    model = services.model  # this request's model, even if the service switches meanwhile
    t0 = time.perf_counter()
    region_box = region(box)
    data = await read_upload(image, services.settings.max_upload_bytes)
    array, _ = await decode(services, model, data, region_box)
    t1 = time.perf_counter()
    vector = await model.batcher.embed(array)
    t2 = time.perf_counter()
    response = await _answer(services, model, vector, params, None)
    t3 = time.perf_counter()
    response.timings = Timings(
        decode_ms=(t1 - t0) * 1e3, embed_ms=(t2 - t1) * 1e3, search_ms=(t3 - t2) * 1e3
    )
    services.metrics.stage.labels("decode").observe(t1 - t0)
    services.metrics.stage.labels("embed").observe(t2 - t1)
    return response


@router.get(
    "/cars/{car_id}/similar",
    name="similar_cars",
    response_model=SearchResponse,
    summary="More like this car",
)
async def similar(
    services: ServicesDep,
    car_id: str,
    params: Annotated[SearchParams, Query()],
) -> SearchResponse:
    car_id = check_id(car_id)
    model = services.model
    point = await get_car(services, model, car_id, with_vector=True)
    t0 = time.perf_counter()
    response = await _answer(services, model, point.vector, params, car_id)
    response.timings = Timings(search_ms=(time.perf_counter() - t0) * 1e3)
    return response


@router.post(
    "/identify",
    name="identify",
    response_model=Identification,
    summary="What car is this? (candidates with calibrated confidence, and the make)",
    dependencies=[Depends(one_image)],
)
async def identify_car(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a photo of a car")],
    box: Annotated[str | None, Form(max_length=100, description=BOX_DESCRIPTION)] = None,
) -> Identification:
    model = services.model
    vector = await embed_upload(services, model, image, region(box))
    cars = await on_serving(
        services, model, services.index.search, vector, CarFilter(), model.calibration.depth
    )
    return _identification(cars, model.calibration)


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="The model's vector for a photo (unit length), to store or compare yourself",
    dependencies=[Depends(one_image)],
)
async def embed(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a photo of a car")],
    box: Annotated[str | None, Form(max_length=100, description=BOX_DESCRIPTION)] = None,
) -> EmbedResponse:
    model = services.model
    vector = await embed_upload(services, model, image, region(box))
    return EmbedResponse(
        vector=[float(v) for v in vector], dim=len(vector), model_version=model.version
    )


@router.post(
    "/search/batch",
    response_model=BatchResponse,
    summary="Several photos in one request: one answer per photo, in order",
)
async def search_batch(
    services: ServicesDep,
    images: Annotated[list[UploadFile], File(description="the field 'images', repeated")],
    params: Annotated[SearchParams, Form()],
) -> BatchResponse:
    limit = services.settings.max_batch_images
    if len(images) > limit:
        raise Problem(422, "invalid-request", "Too many photos", f"at most {limit} per request")
    model = services.model
    results: list[SearchResponse | ProblemDetail | None] = [None] * len(images)
    decoded: list[tuple[int, np.ndarray, float]] = []  # (position, array, decode seconds)
    for i, upload in enumerate(images):
        t0 = time.perf_counter()
        try:
            data = await read_upload(upload, services.settings.max_upload_bytes)
            array = (await decode(services, model, data))[0]
            decoded.append((i, array, time.perf_counter() - t0))
        except Problem as problem:  # this photo's own answer; the others go on
            results[i] = ProblemDetail.of(problem)
    if decoded:
        t1 = time.perf_counter()
        vectors = await model.batcher.embed_many(np.stack([a for _, a, _ in decoded]))
        embed_s = time.perf_counter() - t1  # one forward pass shared by the photos
        for (i, _, decode_s), vector in zip(decoded, vectors, strict=True):
            t2 = time.perf_counter()
            answer = await _answer(services, model, vector, params, None)
            answer.timings = Timings(
                decode_ms=decode_s * 1e3,
                embed_ms=embed_s * 1e3,
                search_ms=(time.perf_counter() - t2) * 1e3,
            )
            results[i] = answer
    return BatchResponse(results=[r for r in results if r is not None])
