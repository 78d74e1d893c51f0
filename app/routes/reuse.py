"""Photos re-used across cars: the other cars that have one car's photos, and the audit of the
whole gallery (groups of cars that share a photo)."""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.car_schemas import CarReuse, PhotoReuse, ReusedPhoto
from app.deps import ServicesDep, check_id, on_serving, require_key, require_read_key
from app.problems import Problem
from indexer import audit, reused_by_car

router = APIRouter(prefix="/api/v1", tags=["cars"])


@router.get(
    "/cars/{car_id}/reused",
    name="car_reused",
    response_model=CarReuse,
    summary="The other cars that have this car's photos (copies, not look-alikes)",
    dependencies=[Depends(require_read_key)],
)
async def car_reused(services: ServicesDep, car_id: str) -> CarReuse:
    car_id = check_id(car_id)
    model, index = services.model, services.index
    found = await on_serving(services, model, lambda c: reused_by_car(index.engine, c, car_id))
    if found is None:
        raise Problem(404, "not-found", "No such car", f"no car with id {car_id}")
    return CarReuse(
        car_id=car_id,
        photos=[
            PhotoReuse(
                photo_id=pid,
                reused=None if others is None else [ReusedPhoto.of(pid, r) for r in others],
            )
            for pid, others in found.items()
        ],
    )


class ReusedPairModel(BaseModel):
    group: int
    car_id: str
    photo_id: str
    external_id: str | None = None
    other: ReusedPhoto


class AuditResponse(BaseModel):
    """Every pair of photos of two cars that are one photo, by group of cars."""

    pairs: list[ReusedPairModel]


@router.get(
    "/reused",
    name="reused_audit",
    response_model=AuditResponse,
    summary="The audit of the whole gallery: groups of cars that share a photo (takes minutes "
    "on a large gallery; with the API key)",
    dependencies=[Depends(require_key)],
)
async def reused_audit(services: ServicesDep) -> AuditResponse:
    index, version = services.index, services.model.version
    # background work: minutes on a large gallery, retried as builds are
    pairs = await asyncio.to_thread(index.on_serving, version, partial(audit, index.engine))
    return AuditResponse(
        pairs=[
            ReusedPairModel(
                group=p.group,
                car_id=p.photo.car_id,
                photo_id=p.photo.id,
                external_id=p.photo.payload.external_id,
                other=ReusedPhoto.of(p.photo.id, p.other),
            )
            for p in pairs
        ]
    )
