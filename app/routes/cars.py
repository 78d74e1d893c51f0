"""One car: its metadata and photo; adding and deleting cars (with the API key)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse
from PIL import Image

from app.deps import (
    ServicesDep,
    check_id,
    decoding,
    get_car,
    on_serving,
    one_image,
    read_upload,
    require_key,
    require_read_key,
    store,
)
from app.problems import Problem
from app.schemas import Car, car_image_url
from app.services import Services
from carembed.embedder import load_for_model
from carembed.images import ImageError, ImageLimits, decoded_pixels, load_image_with_size
from carembed.preprocess import Preprocessing
from indexer.files import write_atomically
from indexer.payload import CarFields, CarPayload, StoredCar, upload_payload

router = APIRouter(prefix="/api/v1", tags=["cars"])


def _car(car: StoredCar) -> Car:
    payload = car.payload
    return Car(
        id=car.id,
        image_url=car_image_url(car.id, "full"),
        width=payload.width,
        height=payload.height,
        source=payload.source,
        model_version=payload.model_version,
        indexed_at=payload.indexed_at,
        **payload.car_fields(),
    )


@router.get(
    "/cars/{car_id}",
    name="get_car",
    response_model=Car,
    summary="One car's metadata",
    dependencies=[Depends(require_read_key)],
)
async def get_one(services: ServicesDep, car_id: str) -> Car:
    return _car(await get_car(services, services.model, check_id(car_id)))


def _image_file(services: Services, payload: CarPayload) -> Path:
    """The file of a car, from its stored payload; never a path a user typed."""
    if payload.source == "upload":
        root = services.uploads_dir
    elif services.gallery_root is not None:
        root = services.gallery_root
    else:
        raise Problem(
            404,
            "image-unavailable",
            "Image not available",
            "this service was started without the gallery folder",
        )
    return _inside(root, payload.path or "")


def _inside(root: Path, relative: str) -> Path:
    """``root / relative`` when it is a file inside ``root``: links inside the gallery are
    followed, a path (or a link) that leads out of it is refused."""
    root = root.resolve()
    lexical = Path(os.path.normpath(root / relative))
    path = (root / relative).resolve()
    if not lexical.is_relative_to(root) or not _links_stay_inside(root, lexical):
        raise Problem(404, "image-unavailable", "Image not available")
    if not path.is_file():
        raise Problem(404, "image-unavailable", "Image not available")
    return path


def _links_stay_inside(root: Path, path: Path) -> bool:
    """Every symbolic link on the way from ``root`` to ``path`` points inside ``root``."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink() and not current.resolve().is_relative_to(root):
            return False
    return True


def _prepare_with_thumbnail(
    data: bytes, preprocessing: Preprocessing, limits: ImageLimits, side: int
) -> tuple[np.ndarray, tuple[int, int], bytes]:
    """One decode of an added photo, the one search and indexing make (so its vector is
    theirs): the model's input, its size as shown, its thumbnail."""
    image, size = load_for_model(data, preprocessing, limits)
    return preprocessing.to_array(image), size, _jpeg_thumbnail(image, size, side)


def _jpeg_thumbnail(image: Image.Image, size: tuple[int, int], side: int) -> bytes:
    """``image`` within ``side`` x ``side`` at the aspect of the photo as shown (``size``: an
    early reduction for the model may have squashed it), never enlarged."""
    scale = min(1.0, side / max(size))
    target = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    buf = io.BytesIO()
    image.resize(target, Image.Resampling.LANCZOS).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _thumbnail(source: Path, target: Path, side: int, limits: ImageLimits) -> None:
    """The thumbnail of a stored photo, written atomically: readers see all of it or none."""
    image, size = load_image_with_size(source, limits, (side, side))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, _jpeg_thumbnail(image, size, side))


@router.get(
    "/cars/{car_id}/image",
    summary="A car's photo or thumbnail",
    response_class=FileResponse,
    dependencies=[Depends(require_read_key)],
)
async def car_image(
    services: ServicesDep, car_id: str, size: Literal["thumb", "full"] = "thumb"
) -> FileResponse:
    car_id = check_id(car_id)
    path = _image_file(services, (await get_car(services, services.model, car_id)).payload)
    if size == "full":
        return FileResponse(path)
    thumb = services.thumbs_dir / f"{car_id}.jpg"
    if not thumb.is_file():
        settings = services.settings

        async def make() -> None:  # one decode however many first requests wait for it
            side = settings.thumb_size
            # A stored photo that cannot be decoded within the budget has no thumbnail (422);
            # its full image is still served as stored.
            async with services.pixels.reserve(decoded_pixels(path, (side, side))):
                await asyncio.get_running_loop().run_in_executor(
                    services.decode_executor, _thumbnail, path, thumb, side, settings.limits
                )

        try:
            await services.thumbnails.run(car_id, make)
        except ImageError as exc:
            raise Problem(404, "image-unavailable", "Image not available") from exc
    return FileResponse(
        thumb, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.post(
    "/cars",
    response_model=Car,
    status_code=201,
    summary="Add a car",
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
) -> Car:
    data = await read_upload(image, services.settings.max_upload_bytes)
    serving = services.model
    preprocessing = serving.embedder.preprocessing
    array, size, thumbnail = await decoding(
        services,
        serving,
        data,
        _prepare_with_thumbnail,
        preprocessing,
        serving.embedder.limits,
        services.settings.thumb_size,
    )
    vector = await serving.batcher.embed(array)
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as probe:  # already decoded once: only its format
        filename = f"{sha}.{(probe.format or 'img').lower()}"
    car = CarFields(make=make, model=model, year=year, body=body, class_name=class_name)
    payload = upload_payload(car, sha, filename, size, serving.version)
    try:
        added = await on_serving(services, serving, services.index.add, data, vector, payload)
    except OSError as exc:  # the disk is full or read-only: nothing half-written stays
        raise Problem(
            507, "insufficient-storage", "Cannot store the photo", "the service's disk is full"
        ) from exc
    with contextlib.suppress(OSError):  # a thumbnail can always be made again on request
        services.thumbs_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(services.thumbs_dir / f"{added.id}.jpg", thumbnail)
    return _car(added)


@router.delete(
    "/cars/{car_id}", status_code=204, summary="Delete a car", dependencies=[Depends(require_key)]
)
async def delete_car(services: ServicesDep, car_id: str) -> None:
    car_id = check_id(car_id)
    if await store(services, services.index.delete, car_id) is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    (services.thumbs_dir / f"{car_id}.jpg").unlink(missing_ok=True)
