"""What the route modules share: the services, the API key, reading an upload, decoding it,
and calls of the car index with a deadline."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import numpy as np
from fastapi import Depends, File, Form, Header, Request, UploadFile
from pydantic import Json, StringConstraints, TypeAdapter, ValidationError

from app.identification import MAX_QUERY_PHOTOS
from app.problems import Problem, unavailable
from app.registry import ServingModel
from app.services import Services
from app.settings import AppSettings
from carembed.embedder import prepare
from carembed.images import (
    ImageError,
    ImageTooLargeError,
    UnreadableImageError,
    decoded_pixels,
)
from carembed.region import Box
from indexer import Condition, IndexedCar, single_attempt

T = TypeVar("T")
P = ParamSpec("P")


# Dependencies are ``async def``: FastAPI runs plain ``def`` ones on its thread pool, a thread
# hop per request for a few attribute reads.


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise unavailable("the model is not loaded yet")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def key_problem(settings: AppSettings, given: list[str], write: bool) -> Problem | None:
    """Why the ``X-API-Key`` values ``given`` may not write (``write``) or read, or None. Writes
    need ``CARSEARCH_API_KEY``; reads need ``CARSEARCH_READ_API_KEY`` (or the write key) when
    it is set. One key header exactly: two are refused, whatever their values."""
    if write and settings.api_key is None:
        return Problem(
            403,
            "writes-disabled",
            "Writes are disabled",
            "no API key is configured on this service (CARSEARCH_API_KEY)",
        )
    if not write and settings.read_api_key is None:
        return None
    keys = [k for k in (settings.api_key, None if write else settings.read_api_key) if k]
    if len(given) == 1 and any(
        hmac.compare_digest(given[0].encode(), k.get_secret_value().encode()) for k in keys
    ):
        return None
    return Problem(403, "bad-api-key", "Missing or wrong API key", "send one X-API-Key")


# The ``x_api_key`` parameters document the header in the OpenAPI description; the check reads
# every X-API-Key header of the request.


async def require_key(
    request: Request,
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """Writes: the write key (``KeyBeforeBody`` checks it before the body is read, too)."""
    problem = key_problem(services.settings, request.headers.getlist("x-api-key"), True)
    if problem is not None:
        raise problem


async def require_read_key(
    request: Request,
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """When ``CARSEARCH_READ_API_KEY`` is set, reads need it (or the write key)."""
    problem = key_problem(services.settings, request.headers.getlist("x-api-key"), False)
    if problem is not None:
        raise problem


_STORE_DEADLINE: ContextVar[float | None] = ContextVar("carsearch_store_deadline", default=None)
"""When the request's store calls must be done by (``time.monotonic``): set by its first."""


async def store(services: Services, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A call of the car index on the store's own threads, without retries, within the
    request's one deadline: ``store_deadline_s`` from its first store call, shared by all of
    them. A store that does not answer in time is a fast 503; the index's own errors are
    answered by the exception handlers (``app.domain_errors``)."""
    deadline = _STORE_DEADLINE.get()
    if deadline is None:
        deadline = time.monotonic() + services.settings.store_deadline_s
        _STORE_DEADLINE.set(deadline)
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return await services.on_store(left, single_attempt, partial(call, *args, **kwargs))
    except TimeoutError as exc:
        raise unavailable("the vector store did not answer in time") from exc


JSON_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(Json[dict[str, Any]])


def json_field(name: str, text: str | None, shape: TypeAdapter[T]) -> T | None:
    """A form or query field that holds JSON, parsed and validated by ``shape`` (an adapter of
    pydantic's ``Json[...]``; None when not sent); a 422 that names the field otherwise."""
    if text is None or not text.strip():
        return None
    try:
        parsed = shape.validate_python(text)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        if error["type"] == "json_invalid":
            detail = f"{name} is not valid JSON ({error['msg']})"
        else:
            detail = f"{name}{where}: {error['msg']}"
        raise Problem(422, "invalid-request", f"Invalid {name}", detail) from exc
    return parsed


def conditions(services: Services, text: str | None) -> tuple[Condition, ...]:
    """The conditions of a ``filter`` field."""
    given = json_field("filter", text, JSON_OBJECT)
    return services.index.fields.parse_filter(given)


async def on_serving(
    services: Services,
    model: ServingModel,
    call: Callable[Concatenate[str, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``call(collection, *args)`` on the collection serving ``model``, within the deadline
    (retried once on a fresh lookup when a rollout dropped that collection meanwhile)."""

    def operation(name: str) -> T:
        return call(name, *args, **kwargs)

    return await store(services, services.index.on_serving, model.version, operation)


def check_id(car_id: str) -> str:
    try:
        return str(uuid.UUID(car_id))
    except ValueError as exc:
        raise Problem(404, "not-found", "No such car", "car ids are UUIDs") from exc


async def get_car(services: Services, model: ServingModel, car_id: str) -> IndexedCar:
    car = await on_serving(services, model, services.index.listings.car, car_id)
    if car is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    return car


async def one_image(request: Request) -> None:
    """A request names exactly one photo (the form is parsed once; FastAPI reuses it)."""
    form = await request.form()
    if len(form.getlist("image")) > 1:
        raise Problem(
            422, "invalid-request", "One photo per request", "send one file in the field 'image'"
        )


BOX_DESCRIPTION = (
    "only this region of the photo: x0,y0,x1,y1 as fractions of the photo as shown (EXIF "
    "orientation applied), e.g. 0.1,0.2,0.6,0.9"
)
BoxText = Annotated[str, StringConstraints(max_length=100)]
"""A region as a form field takes it (``BOX_DESCRIPTION``)."""


QueryImage = Annotated[UploadFile | None, File(description="a photo of a car (JPEG, PNG, WebP...)")]
QueryImages = Annotated[
    list[UploadFile] | None,
    File(
        description=f"instead of image: 1-{MAX_QUERY_PHOTOS} photos of one car (front, rear, "
        "side...), searched and identified together"
    ),
]
QueryBox = Annotated[BoxText | None, Form(description=BOX_DESCRIPTION + " (with image)")]
"""The form fields of a query by photo: one photo (and its region), or several of one car."""


def query_photos(
    image: UploadFile | None, images: list[UploadFile] | None, box: str | None
) -> list[UploadFile]:
    """The photos of one car a request sends: ``image``, or ``images`` (1 to
    ``MAX_QUERY_PHOTOS``, without a ``box``: a region is one photo's)."""
    if (image is None) == (images is None):
        raise Problem(
            422,
            "invalid-request",
            "One car's photos",
            f"send one file in 'image' or 1-{MAX_QUERY_PHOTOS} in 'images'",
        )
    if image is not None:
        return [image]
    photos = list(images or [])
    if not 1 <= len(photos) <= MAX_QUERY_PHOTOS:
        raise Problem(
            422, "invalid-request", "Too many photos", f"1-{MAX_QUERY_PHOTOS} photos of one car"
        )
    if box is not None and box.strip():
        raise Problem(422, "invalid-request", "A box with several photos", "box goes with image")
    return photos


def check_batch(services: Services, images: list[UploadFile]) -> None:
    """A batch request names at most ``MAX_BATCH_IMAGES`` photos."""
    limit = services.settings.max_batch_images
    if len(images) > limit:
        raise Problem(422, "invalid-request", "Too many photos", f"at most {limit} per request")


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := await upload.read(1 << 16):
        data += chunk
        if len(data) > limit:
            raise Problem(413, "too-large", "Upload too large", f"the limit is {limit} bytes")
    return bytes(data)


def region(text: str | None) -> Box | None:
    """The ``box`` field, read (422 when it is not a box inside the photo)."""
    if text is None or not text.strip():
        return None
    try:
        return Box.parse(text)
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid box", str(exc)) from exc


async def decode(
    services: Services, model: ServingModel, data: bytes, box: Box | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """The model's input array (of the region ``box`` when given) and the photo's (width,
    height) as shown (EXIF applied), decoded on the decode threads."""
    embedder = model.embedder
    return await decoding(
        services, model, data, (box, False), prepare, embedder.preprocessing, embedder.limits, box
    )


async def decoding(
    services: Services,
    model: ServingModel,
    data: bytes,
    reading: tuple[Box | None, bool],
    work: Callable[Concatenate[bytes, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``work(data, *args, **kwargs)`` on the decode threads, within the pixel budget: the
    photo's decode size is read from its header first, reduced for the model and within the
    region, unless whole (``reading``: the region, and whether it is read whole); unusable
    images become their problem answers."""
    box, whole = reading
    loop = asyncio.get_running_loop()
    try:
        draft = None if whole else model.embedder.preprocessing.draft_size
        pixels = decoded_pixels(data, draft, box)
        async with services.pixels.reserve(pixels):
            call = partial(work, data, *args, **kwargs)
            return await loop.run_in_executor(services.decode_executor, call)
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


async def embed_upload(
    services: Services, model: ServingModel, upload: UploadFile, box: Box | None = None
) -> np.ndarray:
    """The model's vector for one uploaded photo (or its region ``box``)."""
    data = await read_upload(upload, services.settings.max_upload_bytes)
    array, _ = await decode(services, model, data, box)
    return await model.batcher.embed(array)
