"""The JSON API under ``/api/v1``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse
from PIL import Image

from app.problems import Problem, unavailable
from app.schemas import Car, Hit, SearchParams, SearchResponse, Timings
from app.services import Services, ServingModel
from carembed.embedder import prepare
from carembed.images import ImageError, ImageTooLargeError, UnreadableImageError, load_image
from indexer.engine import CollectionMissing
from indexer.index import IndexNotReady
from indexer.payload import CarFields, CarFilter, CarPayload, StoredCar, upload_payload

router = APIRouter(prefix="/api/v1")


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise unavailable("the model is not loaded yet")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _filter(params: SearchParams, exclude_id: str | None = None) -> CarFilter:
    return CarFilter(
        make=params.make,
        model=params.model,
        body=params.body,
        year_min=params.year_min,
        year_max=params.year_max,
        exclude_ids=frozenset({exclude_id} if exclude_id else ()),
    )


async def _store(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a call of the index off the event loop; a store that is down becomes a 503."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except Problem:
        raise
    except (IndexNotReady, CollectionMissing) as exc:
        raise unavailable("the index for this model is being built") from exc
    except Exception as exc:
        raise unavailable("the vector store is not reachable") from exc


async def _collection(services: Services, model: ServingModel) -> str:
    return str(await _store(services.serving_collection, model))


def _hit(car: StoredCar) -> Hit:
    return Hit(
        id=car.id,
        score=car.score or 0.0,
        image_url=f"/api/v1/cars/{car.id}/image?size=full",
        thumb_url=f"/api/v1/cars/{car.id}/image?size=thumb",
        **car.payload.car_fields(),
    )


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := await upload.read(1 << 16):
        data += chunk
        if len(data) > limit:
            raise Problem(413, "too-large", "Upload too large", f"the limit is {limit} bytes")
    return bytes(data)


async def _prepare(model: ServingModel, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    """The model's input array and the photo's (width, height) as shown (EXIF applied)."""
    embedder = model.embedder
    try:
        return await asyncio.to_thread(prepare, data, embedder.preprocessing, embedder.limits)
    except ImageTooLargeError as exc:
        raise Problem(422, "too-many-pixels", "Image has too many pixels", str(exc)) from exc
    except UnreadableImageError as exc:
        raise Problem(
            415,
            "unreadable-image",
            "Not a readable image",
            "the upload is not an image this service can decode",
        ) from exc
    except ImageError as exc:
        raise Problem(422, exc.reason, "Unusable image", str(exc)) from exc


async def _search(
    services: Services,
    model: ServingModel,
    vector: Any,
    params: SearchParams,
    exclude: str | None,
) -> list[Hit]:
    started = time.perf_counter()
    cars = await _store(
        services.index.search,
        await _collection(services, model),
        vector,
        _filter(params, exclude),
        params.limit,
        params.offset,
        params.score_threshold,
    )
    services.metrics.stage.labels("search").observe(time.perf_counter() - started)
    return [_hit(car) for car in cars]


@router.post("/search", response_model=SearchResponse, summary="Find cars like the photo")
async def search(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a photo of a car (JPEG, PNG, WebP...)")],
    params: Annotated[SearchParams, Form()],
) -> SearchResponse:
    model = services.model  # this request's model, even if the service switches meanwhile
    t0 = time.perf_counter()
    array, _ = await _prepare(model, await _read_upload(image, services.settings.max_upload_bytes))
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


async def _point(
    services: Services, model: ServingModel, car_id: str, with_vector: bool = False
) -> StoredCar:
    car: StoredCar | None = await _store(
        services.index.get, await _collection(services, model), car_id, with_vector
    )
    if car is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    return car


def _check_id(car_id: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(car_id))
    except ValueError as exc:
        raise Problem(404, "not-found", "No such car", "car ids are UUIDs") from exc


@router.get("/cars/{car_id}/similar", response_model=SearchResponse, summary="More like this car")
async def similar(
    services: ServicesDep,
    car_id: str,
    params: Annotated[SearchParams, Query()],
) -> SearchResponse:
    car_id = _check_id(car_id)
    model = services.model
    point = await _point(services, model, car_id, with_vector=True)
    t0 = time.perf_counter()
    hits = await _search(services, model, point.vector, params, car_id)
    timings = Timings(search_ms=(time.perf_counter() - t0) * 1e3)
    return SearchResponse(hits=hits, timings=timings, model_version=model.version)


def _car(car: StoredCar) -> Car:
    payload = car.payload
    return Car(
        id=car.id,
        image_url=f"/api/v1/cars/{car.id}/image?size=full",
        width=payload.width,
        height=payload.height,
        source=payload.source,
        model_version=payload.model_version,
        indexed_at=payload.indexed_at,
        **payload.car_fields(),
    )


@router.get("/cars/{car_id}", response_model=Car, summary="One car's metadata")
async def get_car(services: ServicesDep, car_id: str) -> Car:
    return _car(await _point(services, services.model, _check_id(car_id)))


def _image_file(services: Services, payload: CarPayload) -> Path:
    """The file of a car, from its stored payload; never a path a user typed."""
    if payload.source == "upload":
        root = services.uploads_dir
    elif services.settings.gallery is not None:
        root = services.settings.gallery
    else:
        raise Problem(
            404,
            "image-unavailable",
            "Image not available",
            "this service was started without the gallery folder",
        )
    root = root.resolve()
    path = (root / (payload.path or "")).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Problem(404, "image-unavailable", "Image not available")
    return path


def _thumbnail(source: Path, target: Path, size: int) -> None:
    img = load_image(source)
    img.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    img.save(tmp, "JPEG", quality=85)
    tmp.replace(target)


@router.get(
    "/cars/{car_id}/image", summary="A car's photo or thumbnail", response_class=FileResponse
)
async def car_image(
    services: ServicesDep, car_id: str, size: Literal["thumb", "full"] = "thumb"
) -> FileResponse:
    car_id = _check_id(car_id)
    path = _image_file(services, (await _point(services, services.model, car_id)).payload)
    if size == "full":
        return FileResponse(path)
    thumb = services.thumbs_dir / f"{car_id}.jpg"
    if not thumb.is_file():
        try:
            await asyncio.to_thread(_thumbnail, path, thumb, services.settings.thumb_size)
        except ImageError as exc:
            raise Problem(404, "image-unavailable", "Image not available") from exc
    return FileResponse(
        thumb, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"}
    )


def require_key(services: ServicesDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    expected = services.settings.api_key
    if expected is None:
        raise Problem(
            403,
            "writes-disabled",
            "Writes are disabled",
            "no API key is configured on this service (CARSEARCH_API_KEY)",
        )
    if x_api_key is None or not hmac.compare_digest(
        x_api_key.encode(), expected.get_secret_value().encode()
    ):
        raise Problem(403, "bad-api-key", "Missing or wrong API key", "send X-API-Key")


@router.post(
    "/cars",
    response_model=Car,
    status_code=201,
    summary="Add a car",
    dependencies=[Depends(require_key)],
)
async def add_car(
    services: ServicesDep,
    image: Annotated[UploadFile, File()],
    make: Annotated[str | None, Form(max_length=100)] = None,
    model: Annotated[str | None, Form(max_length=100)] = None,
    year: Annotated[int | None, Form(ge=1800, le=2200)] = None,
    body: Annotated[str | None, Form(max_length=100)] = None,
    class_name: Annotated[str | None, Form(max_length=200)] = None,
) -> Car:
    data = await _read_upload(image, services.settings.max_upload_bytes)
    serving = services.model
    array, size = await _prepare(serving, data)
    vector = await serving.batcher.embed(array)
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as probe:  # already decoded once: only its format
        filename = f"{sha}.{(probe.format or 'img').lower()}"
    car = CarFields(make=make, model=model, year=year, body=body, class_name=class_name)
    payload = upload_payload(car, sha, filename, size, serving.version)
    collection = await _collection(services, serving)
    added = await _store(services.index.add, collection, data, vector, payload)
    return _car(added)


@router.delete(
    "/cars/{car_id}", status_code=204, summary="Delete a car", dependencies=[Depends(require_key)]
)
async def delete_car(services: ServicesDep, car_id: str) -> None:
    car_id = _check_id(car_id)
    if await _store(services.index.delete, car_id) is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    (services.thumbs_dir / f"{car_id}.jpg").unlink(missing_ok=True)
