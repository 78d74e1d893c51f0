"""Search by photo and "more like this"."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from app.deps import (
    ServicesDep,
    check_id,
    decode,
    get_car,
    one_image,
    read_upload,
    serving_collection,
    store,
)
from app.schemas import Hit, SearchParams, SearchResponse, Timings
from app.services import Services, ServingModel
from indexer.payload import CarFilter, StoredCar

router = APIRouter(prefix="/api/v1", tags=["search"])


def _filter(params: SearchParams, exclude_id: str | None = None) -> CarFilter:
    return CarFilter(
        make=params.make,
        model=params.model,
        body=params.body,
        year_min=params.year_min,
        year_max=params.year_max,
        exclude_ids=frozenset({exclude_id} if exclude_id else ()),
    )


def _hit(car: StoredCar) -> Hit:
    return Hit(
        id=car.id,
        score=car.score or 0.0,
        image_url=f"/api/v1/cars/{car.id}/image?size=full",
        thumb_url=f"/api/v1/cars/{car.id}/image?size=thumb",
        **car.payload.car_fields(),
    )


async def _search(
    services: Services,
    model: ServingModel,
    vector: Any,
    params: SearchParams,
    exclude: str | None,
) -> list[Hit]:
    started = time.perf_counter()
    collection = await serving_collection(services, model)
    cars = await store(
        services,
        services.index.search,
        collection,
        vector,
        _filter(params, exclude),
        params.limit,
        params.offset,
        params.score_threshold,
    )
    services.metrics.stage.labels("search").observe(time.perf_counter() - started)
    return [_hit(car) for car in cars]


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
) -> SearchResponse:
    model = services.model  # this request's model, even if the service switches meanwhile
    t0 = time.perf_counter()
    data = await read_upload(image, services.settings.max_upload_bytes)
    array, _ = await decode(services, model, data)
    t1 = time.perf_counter()
    vector = await model.batcher.embed(array)
    t2 = time.perf_counter()
    hits = await _search(services, model, vector, params, None)
    t3 = time.perf_counter()
    timings = Timings(
        decode_ms=(t1 - t0) * 1e3, embed_ms=(t2 - t1) * 1e3, search_ms=(t3 - t2) * 1e3
    )
    services.metrics.stage.labels("decode").observe(t1 - t0)
    services.metrics.stage.labels("embed").observe(t2 - t1)
    return SearchResponse(hits=hits, timings=timings, model_version=model.version)


@router.get("/cars/{car_id}/similar", response_model=SearchResponse, summary="More like this car")
async def similar(
    services: ServicesDep,
    car_id: str,
    params: Annotated[SearchParams, Query()],
) -> SearchResponse:
    car_id = check_id(car_id)
    model = services.model
    point = await get_car(services, model, car_id, with_vector=True)
    t0 = time.perf_counter()
    hits = await _search(services, model, point.vector, params, car_id)
    timings = Timings(search_ms=(time.perf_counter() - t0) * 1e3)
    return SearchResponse(hits=hits, timings=timings, model_version=model.version)
