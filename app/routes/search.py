"""Search by photo and "more like this" (the routes; the searching is ``app.searching``)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from app.deps import (
    BOX_DESCRIPTION,
    BoxText,
    QueryBox,
    QueryImage,
    QueryImages,
    ServicesDep,
    check_batch,
    check_id,
    decode,
    embed_upload,
    on_serving,
    one_image,
    query_photos,
    read_upload,
    region,
    require_read_key,
)
from app.domain_errors import ANSWERED, problem_of
from app.identification import (
    AbsentPrior,
    Identification,
    identification_of,
    prior_of,
)
from app.problems import Problem
from app.schemas import (
    BatchResponse,
    EmbedResponse,
    ProblemDetail,
    SearchParams,
    SearchResponse,
    Timings,
)
from app.searching import answer, voters

router = APIRouter(prefix="/api/v1", tags=["search"], dependencies=[Depends(require_read_key)])


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Find cars like the photo (or like several photos of one car)",
    dependencies=[Depends(one_image)],
)
async def search(
    services: ServicesDep,
    params: Annotated[SearchParams, Form()],
    image: QueryImage = None,
    images: QueryImages = None,
    box: QueryBox = None,
) -> SearchResponse:
    uploads = query_photos(image, images, box)
    model = services.model  # this request's model, even if the service switches meanwhile
    t0 = time.perf_counter()
    region_box = region(box)
    limit = services.settings.max_upload_bytes
    arrays = [
        (await decode(services, model, await read_upload(u, limit), region_box))[0] for u in uploads
    ]
    t1 = time.perf_counter()
    vectors = await asyncio.gather(*(model.batcher.embed(a) for a in arrays))
    t2 = time.perf_counter()
    response = await answer(services, model, vectors, params, None)
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
    summary="More like this car (all its photos)",
)
async def similar(
    services: ServicesDep,
    car_id: str,
    params: Annotated[SearchParams, Query()],
) -> SearchResponse:
    car_id = check_id(car_id)
    model = services.model
    vectors = await on_serving(services, model, services.index.photo_vectors, car_id)
    if not vectors:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    t0 = time.perf_counter()
    response = await answer(services, model, vectors, params, car_id)
    response.timings = Timings(search_ms=(time.perf_counter() - t0) * 1e3)
    return response


@router.post(
    "/identify",
    name="identify",
    response_model=Identification,
    summary="What car is this? (at three levels, each with its confidence and absence)",
    dependencies=[Depends(one_image)],
)
async def identify_car(
    services: ServicesDep,
    image: QueryImage = None,
    images: QueryImages = None,
    box: QueryBox = None,
    absent_prior: Annotated[AbsentPrior | None, Form()] = None,
) -> Identification:
    uploads = query_photos(image, images, box)
    model = services.model
    vectors = await asyncio.gather(
        *(embed_upload(services, model, upload, region(box)) for upload in uploads)
    )
    photos = await voters(services, model, vectors, None)
    prior = prior_of(absent_prior, services.settings)
    return identification_of(photos, model.calibration, prior)


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="The model's vector for a photo (unit length), to store or compare yourself",
    dependencies=[Depends(one_image)],
)
async def embed(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a photo of a car")],
    box: Annotated[BoxText | None, Form(description=BOX_DESCRIPTION)] = None,
) -> EmbedResponse:
    model = services.model
    vector = await embed_upload(services, model, image, region(box))
    return EmbedResponse(
        vector=[float(v) for v in vector], dim=len(vector), embedding_version=model.version
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
    check_batch(services, images)
    model = services.model
    results: list[SearchResponse | ProblemDetail | None] = [None] * len(images)
    decoded: list[tuple[int, np.ndarray, float]] = []  # (position, array, decode seconds)
    for i, upload in enumerate(images):
        t0 = time.perf_counter()
        try:
            data = await read_upload(upload, services.settings.max_upload_bytes)
            array = (await decode(services, model, data))[0]
            decoded.append((i, array, time.perf_counter() - t0))
        except ANSWERED as exc:  # this photo's own answer; the others go on
            results[i] = ProblemDetail.of(problem_of(exc))
    if decoded:
        t1 = time.perf_counter()
        vectors = await model.batcher.embed_many(np.stack([a for _, a, _ in decoded]))
        embed_s = time.perf_counter() - t1  # one forward pass shared by the photos
        for (i, _, decode_s), vector in zip(decoded, vectors, strict=True):
            t2 = time.perf_counter()
            found = await answer(services, model, [vector], params, None)
            found.timings = Timings(
                decode_ms=decode_s * 1e3,
                embed_ms=embed_s * 1e3,
                search_ms=(time.perf_counter() - t2) * 1e3,
            )
            results[i] = found
    return BatchResponse(results=[r for r in results if r is not None])
