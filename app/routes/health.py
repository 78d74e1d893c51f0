"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import problems
from app.deps import store
from app.domain_errors import ANSWERED, problem_of
from app.services import Services
from indexer import OlderStore

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Model loaded, store reachable, alias resolves")
async def readyz(request: Request) -> JSONResponse:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return problems.problem_response(503, "unavailable", "Model not loaded", "", 5)
    model = services.model
    body: dict[str, Any] = {
        "model_loaded": True,
        "embedding_version": model.version,
        "inference_backend": model.embedder.backend,
        "model_version": model.version,  # deprecated: embedding_version's old name
        "model_engine": model.embedder.backend,  # deprecated: inference_backend's
        "int8_check": model.int8_check,
        "indexing": services.indexing.snapshot(),
        "uptime_s": round(time.time() - services.started, 1),
    }
    try:  # one store call
        status = await store(services, services.index.status, model.version)
        body |= {"store_engine": status.engine, "live_collection": status.live}
        body["engine"] = status.engine  # deprecated: store_engine's old name
        body["gate"] = {"live": status.live_gate, "previous": status.previous_gate}
        body |= {"store_reachable": True, "collection": status.serving}
        body["points"] = status.points if status.serving is not None else 0
    except ANSWERED as exc:
        reachable = isinstance(exc, OlderStore)  # it answered: with a collection not served
        body |= {"store_reachable": reachable, "collection": None, "points": None}
        body["store_problem"] = problem_of(exc).detail
    ready = body["store_reachable"] and body["collection"] is not None
    body["ready"] = ready
    headers = None if ready else {"Retry-After": "5"}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    services: Services | None = getattr(request.app.state, "services", None)
    data = generate_latest(services.metrics.registry) if services else b""
    return Response(data, media_type=CONTENT_TYPE_LATEST)
