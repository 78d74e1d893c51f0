"""The FastAPI application: ``create_app(settings)``; nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app import domain_errors, openapi, problems
from app.body_limit import BodyLimit
from app.gallery_indexing import prepare_index
from app.int8 import adopt_int8
from app.key_first import KeyBeforeBody
from app.metrics import RequestMetrics
from app.routes import browse, cars, health, images, reuse, search
from app.services import build_services, in_daemon_thread
from app.settings import AppSettings

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(settings: AppSettings | None = None) -> FastAPI:
    settings = settings or AppSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings)
        app.state.services = services
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        preparing = in_daemon_thread(loop, prepare_index, services, stop)
        follower = loop.create_task(services.registry.follow(services.on_store), name="follower")
        int8_check = loop.create_task(adopt_int8(services, preparing, stop), name="int8-check")
        try:
            yield
        finally:
            app.state.services = None
            stop.set()
            for task in (follower, int8_check):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:  # a gallery run stops at its next batch; a call to a silent store is left
                await asyncio.wait_for(asyncio.shield(preparing), settings.shutdown_grace_s)
            except TimeoutError:
                logger.warning("start-up work still waits for the store: not waiting for it")
            await services.close()

    app = FastAPI(
        title="carsearch",
        version="0.1.0",
        description="Similar-car image search: upload a photo, get the most similar cars.",
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
    )
    openapi.install(app)
    problems.install(app)
    domain_errors.install(app)
    routers = (
        search.router,
        browse.router,
        cars.router,
        reuse.router,
        images.router,
        health.router,
    )
    for router in routers:
        app.include_router(router)

    app.add_middleware(KeyBeforeBody, routers=routers, settings=settings)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(RequestMetrics)  # outside the body limit: its 413s are counted too
    if settings.cors_origins:  # outermost: its headers reach every answer, a 413 included
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
