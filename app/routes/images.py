"""A car's photos and their thumbnails (made on first request, or when the photo was added)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from app.deps import ServicesDep, check_id, get_car, require_read_key
from app.problems import Problem
from app.services import Services
from app.thumbnails import write_thumbnail
from carembed.images import ImageError, decoded_pixels
from indexer import CarPayload, StoredCar

router = APIRouter(prefix="/api/v1", tags=["cars"])


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


@router.get(
    "/cars/{car_id}/image",
    summary="A car's cover photo or its thumbnail",
    response_class=FileResponse,
    dependencies=[Depends(require_read_key)],
)
async def car_image(
    services: ServicesDep, car_id: str, size: Literal["thumb", "full"] = "thumb"
) -> FileResponse:
    car = await get_car(services, services.model, check_id(car_id))
    return await _photo_response(services, car.cover, size)


@router.get(
    "/cars/{car_id}/photos/{photo_id}/image",
    name="photo_image",
    summary="A photo of a car, or its thumbnail",
    response_class=FileResponse,
    dependencies=[Depends(require_read_key)],
)
async def photo_image(
    services: ServicesDep, car_id: str, photo_id: str, size: Literal["thumb", "full"] = "thumb"
) -> FileResponse:
    car = await get_car(services, services.model, check_id(car_id))
    photo_id = check_id(photo_id)
    photo = next((p for p in car.photos if p.id == photo_id), None)
    if photo is None:
        raise Problem(404, "not-found", "No such photo", f"the car {car.id} has no {photo_id}")
    return await _photo_response(services, photo, size)


async def _photo_response(
    services: Services, photo: StoredCar, size: Literal["thumb", "full"]
) -> FileResponse:
    path = await asyncio.to_thread(_image_file, services, photo.payload)  # file work off the loop
    if size == "full":
        return FileResponse(path)
    thumb = services.thumbs_dir / f"{photo.id}.jpg"
    if not await asyncio.to_thread(thumb.is_file):
        settings = services.settings

        async def make() -> None:  # one decode however many first requests wait for it
            side = settings.thumb_size
            # A stored photo that cannot be decoded within the budget has no thumbnail (422);
            # its full image is still served as stored.
            pixels = await asyncio.to_thread(decoded_pixels, path, (side, side))
            async with services.pixels.reserve(pixels):
                await asyncio.get_running_loop().run_in_executor(
                    services.decode_executor, write_thumbnail, path, thumb, side, settings.limits
                )

        try:
            await services.thumbnails.run(photo.id, make)
        except ImageError as exc:
            raise Problem(404, "image-unavailable", "Image not available") from exc
    return FileResponse(
        thumb, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"}
    )
