"""Cars and their photos: read a car; add cars (one, or a batch), add and delete photos, edit
and delete cars (with the API key)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, File, Form, UploadFile

from app.adding import (
    Prepared,
    cropped,
    new_car,
    new_cars,
    prepare,
    store_car,
    store_photos,
    views_of,
)
from app.car_schemas import (
    AddedCar,
    Car,
    CarPatch,
    CarText,
    ClassNameText,
    ExternalIdText,
    Year,
)
from app.deps import (
    BOX_DESCRIPTION,
    BoxText,
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
from app.domain_errors import ANSWERED, problem_of
from app.problems import Problem
from app.registry import ServingModel
from app.schemas import BatchAddResponse, ProblemDetail
from app.services import Services
from indexer import MAX_VIEW, OnReused

router = APIRouter(prefix="/api/v1", tags=["cars"])


@router.get(
    "/cars/{car_id}",
    name="get_car",
    response_model=Car,
    summary="One car and its photos",
    dependencies=[Depends(require_read_key)],
)
async def get_one(services: ServicesDep, car_id: str) -> Car:
    return Car.of(await get_car(services, services.model, check_id(car_id)))


AddImages = Annotated[
    list[UploadFile] | None,
    File(description="the car's photos (the field 'images', repeated)"),
]
ReusedPolicy = Annotated[
    OnReused | None,
    Form(
        description="a photo another car has: flag (add and say so), reject (409, nothing "
        "written) or allow (not looked for); default CARSEARCH_REUSED_PHOTOS"
    ),
]
Views = Annotated[
    list[str] | None,
    Form(
        description=f"one view label per photo, in order (front, rear, interior...; at most "
        f"{MAX_VIEW} characters each)"
    ),
]


def car_photos(
    services: Services, image: UploadFile | None, images: list[UploadFile] | None
) -> list[UploadFile]:
    """The photos of one car sent: ``image`` or ``images`` (1 to the most a car has)."""
    most = services.index.settings.max_photos_per_car
    photos = ([image] if image is not None else []) + list(images or [])
    if not 1 <= len(photos) <= most:
        raise Problem(
            422,
            "invalid-request",
            "A car's photos",
            f"send 1-{most} photos of one car in 'images' (or one in 'image')",
        )
    return photos


async def embedded(
    services: Services, serving: ServingModel, uploads: list[UploadFile], box: str | None
) -> tuple[list[Prepared], list[np.ndarray]]:
    """One car's photos decoded (a ``box`` is a region of a single photo: the region is what
    is stored) and embedded in one forward pass."""
    region_box = region(box)
    if region_box is not None and len(uploads) > 1:
        raise Problem(422, "invalid-request", "A box with several photos", "box goes with image")
    photos = []
    for upload in uploads:
        data = await read_upload(upload, services.settings.max_upload_bytes)
        if region_box is not None:
            data = await cropped(services, serving, data, region_box)
        photos.append(await prepare(services, serving, data))
    vectors = await serving.batcher.embed_many(np.stack([p.array for p in photos]))
    return photos, list(vectors)


@router.post(
    "/cars",
    response_model=AddedCar,
    status_code=201,
    summary="Add a car with its photos (a car with the same external_id gets these fields and "
    "photos)",
    dependencies=[Depends(require_key), Depends(one_image)],
)
async def add_car(
    services: ServicesDep,
    image: Annotated[UploadFile | None, File(description="one photo (or use images)")] = None,
    images: AddImages = None,
    views: Views = None,
    on_reused: ReusedPolicy = None,
    replace_photos: Annotated[
        bool,
        Form(description="with an external_id that exists: these photos replace the car's"),
    ] = False,
    make: Annotated[CarText | None, Form()] = None,
    model: Annotated[CarText | None, Form()] = None,
    year: Annotated[Year | None, Form()] = None,
    body: Annotated[CarText | None, Form()] = None,
    class_name: Annotated[ClassNameText | None, Form()] = None,
    external_id: Annotated[
        ExternalIdText | None, Form(description="your id of the car, unique in the index")
    ] = None,
    attributes: Annotated[
        str | None,
        Form(
            max_length=20_000,
            description='a JSON object: {"price": 18500, "color": "red", "available": true}',
        ),
    ] = None,
    box: Annotated[
        BoxText | None, Form(description=BOX_DESCRIPTION + "; the region is what is stored")
    ] = None,
) -> AddedCar:
    uploads = car_photos(services, image, images)
    labels = views_of(list(views or []), len(uploads))
    fields = {"make": make, "model": model, "year": year, "body": body, "class_name": class_name}
    car = new_car(services, fields | {"external_id": external_id}, attributes)
    serving = services.model
    photos, vectors = await embedded(services, serving, uploads, box)
    return await store_car(
        services, serving, photos, vectors, car, labels, on_reused, replace_photos
    )


@router.post(
    "/cars/{car_id}/photos",
    name="add_photos",
    response_model=AddedCar,
    status_code=201,
    summary="Add photos to a car",
    dependencies=[Depends(require_key)],
)
async def add_photos(
    services: ServicesDep,
    car_id: str,
    images: Annotated[list[UploadFile], File(description="the field 'images', repeated")],
    views: Views = None,
    on_reused: ReusedPolicy = None,
) -> AddedCar:
    car_id = check_id(car_id)
    uploads = car_photos(services, None, images)
    labels = views_of(list(views or []), len(uploads))
    serving = services.model
    photos, vectors = await embedded(services, serving, uploads, None)
    return await store_photos(services, serving, car_id, photos, vectors, labels, on_reused)


@router.delete(
    "/cars/{car_id}/photos/{photo_id}",
    name="delete_photo",
    status_code=204,
    summary="Delete a photo of a car (its last photo: the car)",
    dependencies=[Depends(require_key)],
)
async def delete_photo(services: ServicesDep, car_id: str, photo_id: str) -> None:
    car_id, photo_id = check_id(car_id), check_id(photo_id)
    await store(services, services.index.cars.delete_photo, car_id, photo_id)
    await asyncio.to_thread((services.thumbs_dir / f"{photo_id}.jpg").unlink, missing_ok=True)


@router.post(
    "/cars/batch",
    name="add_cars",
    response_model=BatchAddResponse,
    summary="Add several cars, each with its photos: one result per car, in order",
    dependencies=[Depends(require_key)],
)
async def add_cars(
    services: ServicesDep,
    images: Annotated[list[UploadFile], File(description="the field 'images', repeated")],
    cars: Annotated[
        str | None,
        Form(
            max_length=1_000_000,
            description="a JSON array of cars in order, each taking the next 'photos' (default 1) "
            'of the images: [{"make": "Audi", "external_id": "a-1", "photos": 3, "views": '
            '["front", "rear", "interior"], "attributes": {"price": 9900}}]; without it, one car '
            "per photo",
        ),
    ] = None,
    on_reused: ReusedPolicy = None,
) -> BatchAddResponse:
    check_batch(services, images)
    wanted = new_cars(services, cars, len(images))
    serving = services.model
    results: list[AddedCar | ProblemDetail] = []
    start = 0
    for car in wanted:
        uploads, start = images[start : start + car.photos], start + car.photos
        try:  # a car's own problem is its answer; the others go on
            labels = views_of(car.views, len(uploads))
            checked_uploads = car_photos(services, None, uploads)
            photos, vectors = await embedded(services, serving, checked_uploads, None)
            added = await store_car(services, serving, photos, vectors, car, labels, on_reused)
            results.append(added)
        except ANSWERED as exc:
            results.append(ProblemDetail.of(problem_of(exc)))
    return BatchAddResponse(results=results)


@router.patch(
    "/cars/{car_id}",
    name="patch_car",
    response_model=Car,
    summary="Edit a car, once for all its photos (a JSON merge patch; kept across builds and "
    "model changes)",
    dependencies=[Depends(require_key)],
)
async def patch_car(
    services: ServicesDep,
    car_id: str,
    patch: Annotated[CarPatch, Body(media_type="application/merge-patch+json")],
) -> Car:
    car_id = check_id(car_id)
    changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
    for name, value in (changes.get("attributes") or {}).items():
        if value is not None:
            services.index.fields.check_attribute(name, value)
    if "attributes" in changes and changes["attributes"] is None:
        raise Problem(422, "invalid-request", "Invalid patch", "attributes is an object")
    edited = await store(services, services.index.listings.edit, car_id, changes)
    if edited is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    return Car.of(edited)


@router.delete(
    "/cars/{car_id}",
    status_code=204,
    summary="Delete a car and its photos",
    dependencies=[Depends(require_key)],
)
async def delete_car(services: ServicesDep, car_id: str) -> None:
    car_id = check_id(car_id)
    deleted = await store(services, services.index.cars.delete, car_id)
    if deleted is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    for photo in deleted.photos:
        await asyncio.to_thread((services.thumbs_dir / f"{photo.id}.jpg").unlink, missing_ok=True)
