"""One car: read it; add cars (one, or a batch), edit and delete them (with the API key)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, File, Form, UploadFile

from app.adding import Prepared, cropped, new_car, new_cars, prepare, store_car
from app.deps import (
    BOX_DESCRIPTION,
    ServicesDep,
    check_batch,
    check_id,
    get_car,
    one_image,
    read_upload,
    region,
    require_key,
    require_read_key,
    store,
)
from app.problems import Problem
from app.schemas import BatchAddResponse, Car, CarPatch, ProblemDetail
from indexer.fields import FieldError

router = APIRouter(prefix="/api/v1", tags=["cars"])


@router.get(
    "/cars/{car_id}",
    name="get_car",
    response_model=Car,
    summary="One car's metadata",
    dependencies=[Depends(require_read_key)],
)
async def get_one(services: ServicesDep, car_id: str) -> Car:
    return Car.of(await get_car(services, services.model, check_id(car_id)))


@router.post(
    "/cars",
    response_model=Car,
    status_code=201,
    summary="Add a car (a car with the same external_id is replaced)",
    dependencies=[Depends(require_key), Depends(one_image)],
)
async def add_car(
    services: ServicesDep,
    image: Annotated[UploadFile, File()],
    make: Annotated[str | None, Form(max_length=100)] = None,
    model: Annotated[str | None, Form(max_length=100)] = None,
    year: Annotated[int | None, Form(ge=1800, le=2200)] = None,
    body: Annotated[str | None, Form(max_length=100)] = None,
    class_name: Annotated[str | None, Form(max_length=200)] = None,
    external_id: Annotated[
        str | None, Form(max_length=200, description="your id of the car, unique in the index")
    ] = None,
    attributes: Annotated[
        str | None,
        Form(
            max_length=20_000,
            description='a JSON object: {"price": 18500, "color": "red", "available": true}',
        ),
    ] = None,
    box: Annotated[
        str | None,
        Form(max_length=100, description=BOX_DESCRIPTION + "; the region is what is stored"),
    ] = None,
) -> Car:
    fields = {"make": make, "model": model, "year": year, "body": body, "class_name": class_name}
    car = new_car(services, fields | {"external_id": external_id}, attributes)
    region_box = region(box)
    serving = services.model
    data = await read_upload(image, services.settings.max_upload_bytes)
    if region_box is not None:
        data = await cropped(services, serving, data, region_box)
    photo = await prepare(services, serving, data)
    vector = await serving.batcher.embed(photo.array)
    return await store_car(services, serving, photo, vector, car)


@router.post(
    "/cars/batch",
    name="add_cars",
    response_model=BatchAddResponse,
    summary="Add several cars: one result per photo, in order",
    dependencies=[Depends(require_key)],
)
async def add_cars(
    services: ServicesDep,
    images: Annotated[list[UploadFile], File(description="the field 'images', repeated")],
    cars: Annotated[
        str | None,
        Form(
            max_length=1_000_000,
            description="a JSON array, one object of car fields per photo in the same order: "
            '[{"make": "Audi", "external_id": "a-1", "attributes": {"price": 9900}}]',
        ),
    ] = None,
) -> BatchAddResponse:
    check_batch(services, images)
    wanted = new_cars(services, cars, len(images))
    serving = services.model
    results: list[Car | ProblemDetail | None] = [None] * len(images)
    prepared: list[tuple[int, Prepared]] = []
    for i, upload in enumerate(images):
        try:
            data = await read_upload(upload, services.settings.max_upload_bytes)
            prepared.append((i, await prepare(services, serving, data)))
        except Problem as problem:  # this photo's own answer; the others go on
            results[i] = ProblemDetail.of(problem)
    if prepared:
        arrays = np.stack([photo.array for _, photo in prepared])
        vectors = await serving.batcher.embed_many(arrays)  # forward passes shared
        for (i, photo), vector in zip(prepared, vectors, strict=True):
            try:
                results[i] = await store_car(services, serving, photo, vector, wanted[i])
            except Problem as problem:
                results[i] = ProblemDetail.of(problem)
    return BatchAddResponse(results=[r for r in results if r is not None])


@router.patch(
    "/cars/{car_id}",
    name="patch_car",
    response_model=Car,
    summary="Edit a car (a JSON merge patch; kept across builds and model changes)",
    dependencies=[Depends(require_key)],
)
async def patch_car(
    services: ServicesDep,
    car_id: str,
    patch: Annotated[CarPatch, Body(media_type="application/merge-patch+json")],
) -> Car:
    car_id = check_id(car_id)
    changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
    try:
        for name, value in (changes.get("attributes") or {}).items():
            if value is not None:
                services.index.fields.check_attribute(name, value)
    except FieldError as exc:
        raise Problem(422, "invalid-request", "Invalid attributes", str(exc)) from exc
    if "attributes" in changes and changes["attributes"] is None:
        raise Problem(422, "invalid-request", "Invalid patch", "attributes is an object")
    edited = await store(services, services.index.listings.edit, car_id, changes)
    if edited is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    return Car.of(edited)


@router.delete(
    "/cars/{car_id}", status_code=204, summary="Delete a car", dependencies=[Depends(require_key)]
)
async def delete_car(services: ServicesDep, car_id: str) -> None:
    car_id = check_id(car_id)
    if await store(services, services.index.delete, car_id) is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    await asyncio.to_thread((services.thumbs_dir / f"{car_id}.jpg").unlink, missing_ok=True)
