from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.index import CarIndex
from indexer.settings import StoreSettings
from tests.conftest import scene

CLASSES = ["Audi_TTS_Coupe_2012", "BMW_M3_Coupe_2012", "Tesla_Model_S_Sedan_2012"]


def make_gallery(root: Path, per_class: int = 3) -> Path:
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            scene(100 * c + i).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    return make_gallery(tmp_path / "gallery")


@pytest.fixture(scope="session")
def small_embedder() -> Embedder:
    """MobileNetV2: the fastest offline backbone, enough to tell generated pictures apart."""
    return Embedder(build_model("mobilenet_v2"), batch_size=4)


@pytest.fixture(scope="session")
def flipped_embedder() -> Embedder:
    """Another model: ``small_embedder``'s with test-time flip (other vectors, same size)."""
    model = build_model("mobilenet_v2")
    model.update_config(test_time_flip=True)
    return Embedder(model, batch_size=4)


ALIAS = "cars-test"


class OneAtATime:
    """qdrant-client's local mode (SQLite, not thread-safe) answering one call at a time, as a
    server would answer calls from several threads."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def open_index(kind: str, root: Path, alias: str = ALIAS) -> CarIndex:
    """A fresh index on the embedded engine (a folder under ``root``), or on the server
    adapter: against the server at QDRANT_URL (this alias's collections deleted first), else
    against qdrant-client's local mode (a folder under ``root``), which implements the same
    client API."""
    if kind == "edge":
        return CarIndex.open(
            StoreSettings(qdrant_path=root / "qdrant", data_dir=root / "data", alias=alias)
        )
    url = os.environ.get("QDRANT_URL")
    if not url:
        from qdrant_client import QdrantClient

        from indexer.engines.qdrant_server.store import ServerEngine

        local = root / "qdrant-local"
        settings = StoreSettings(
            qdrant_url=f"local:{local}", data_dir=root / "data", alias=alias, qdrant_retries=0
        )
        client = OneAtATime(QdrantClient(path=str(local)))
        return CarIndex(ServerEngine(settings, client), settings)  # type: ignore[arg-type]
    index = CarIndex.open(
        StoreSettings(
            qdrant_url=url,
            qdrant_api_key=os.environ.get("QDRANT_API_KEY"),
            data_dir=root / "data",
            alias=alias,
        )
    )
    state = index.state()
    index.engine.aliases.move(state, type(state)(alias))
    for name in index.engine.collections():
        if name.startswith(alias + "__"):
            index.engine.drop(name)
    return index


@pytest.fixture(params=["edge", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CarIndex]:
    car_index = open_index(request.param, tmp_path)
    yield car_index
    car_index.close()


@pytest.fixture(params=["edge", "server"])
def handles(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CarIndex, CarIndex]]:
    """The service's handle on the store and a builder's: another process's on the embedded
    store (it cannot write a collection the service holds); on a server, another client."""
    service = open_index(request.param, tmp_path)
    builder = (
        open_index("edge", tmp_path)
        if request.param == "edge"
        else CarIndex(service.engine, service.settings)
    )
    yield service, builder
    if builder is not service and request.param == "edge":
        builder.close()
    service.close()


def jpeg(seed: int) -> bytes:
    """A generated photo as JPEG bytes (what an upload sends)."""
    import io

    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()
