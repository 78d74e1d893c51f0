"""The FastAPI application: ``create_app(settings)``; nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import api, problems
from app.body_limit import BodyLimit
from app.services import (
    Services,
    build_services,
    follow_live_model,
    start_gallery_indexing,
)
from app.settings import AppSettings
from indexer.index import IndexNotReady

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(settings: AppSettings | None = None) -> FastAPI:
    settings = settings or AppSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings)
        app.state.services = services
        indexing = await start_gallery_indexing(services)
        follower = asyncio.get_running_loop().create_task(
            follow_live_model(services), name="model-follower"
        )
        try:
            yield
        finally:
            app.state.services = None
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            if indexing is not None and not indexing.done():
                logger.info("waiting for the gallery indexer to finish its batch")
            if indexing is not None:
                with contextlib.suppress(Exception):
                    await indexing
            await services.close()

    app = FastAPI(
        title="carsearch",
        version="0.1.0",
        description="Similar-car image search: upload a photo, get the most similar cars.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(api.router)

    @app.middleware("http")
    async def record_metrics(request: Request, call_next: Any) -> Response:
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None:
            return await call_next(request)  # type: ignore[no-any-return]
        metrics = services.metrics
        metrics.in_flight.inc()
        metrics.active += 1
        started = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.in_flight.dec()
            metrics.active -= 1
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.requests.labels(path, request.method, str(status)).inc()
            metrics.latency.labels(path, request.method).observe(time.perf_counter() - started)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Model loaded, store reachable, alias resolves")
    async def readyz(request: Request) -> JSONResponse:
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None:
            return problems.problem_response(503, "unavailable", "Model not loaded", "", 5)
        body: dict[str, Any] = {
            "model_loaded": True,
            "model_version": services.model.version,
            "indexing": services.indexing.snapshot(),
        }
        try:
            status = await asyncio.to_thread(services.index.status)
            body |= {"engine": status.engine, "live_collection": status.live}
            body["store_reachable"] = True
            try:
                collection: str | None = await asyncio.to_thread(services.serving_collection)
            except IndexNotReady:
                collection = None  # no collection of this model version (yet)
            body["collection"] = collection
            body["points"] = (
                await asyncio.to_thread(services.index.count, collection) if collection else 0
            )
        except Exception:
            body |= {"store_reachable": False, "collection": None, "points": None}
        ready = body["store_reachable"] and body["collection"] is not None
        body["ready"] = ready
        headers = None if ready else {"Retry-After": "5"}
        return JSONResponse(body, status_code=200 if ready else 503, headers=headers)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        services: Services | None = getattr(request.app.state, "services", None)
        data = generate_latest(services.metrics.registry) if services else b""
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
