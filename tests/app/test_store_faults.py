"""The service when the vector store is slow, silent, absent or wrong: fast 503s, no stall of
the rest of the service, real errors not disguised, start-up work retried."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from indexer.engines.base import StoreError
from indexer.index import CarIndex
from tests.conftest import scene, wait_until


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def silent_qdrant() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.slow
def test_a_silent_store_gives_fast_503s_and_health_keeps_answering(
    silent_qdrant: str, tmp_path: Path
) -> None:
    settings = AppSettings(
        qdrant_url=silent_qdrant,
        data_dir=tmp_path / "d",
        engine="torch",
        store_deadline_s=1.0,
        # Short client timeouts: the background work given up at shutdown ends soon after,
        # so no thread is left in a call when the test process exits.
        qdrant_timeout_s=0.5,
        qdrant_retries=0,
        store_retry_s=0.2,
        shutdown_grace_s=5.0,
    )
    started = time.monotonic()
    with TestClient(create_app(settings)) as client:
        assert time.monotonic() - started < 30  # start-up waits for the model, not the store
        t0 = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - t0 < 1
        for _ in range(2):
            t0 = time.monotonic()
            r = client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(1))})
            assert r.status_code == 503 and r.headers["Retry-After"], r.text
            assert r.json()["type"] == "/problems/unavailable"
            assert time.monotonic() - t0 < 2.5
            t0 = time.monotonic()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and not ready.json()["store_reachable"]
            assert time.monotonic() - t0 < 2.5
            assert client.get("/healthz").status_code == 200


def test_store_errors_are_503_and_bugs_are_500(tmp_path: Path) -> None:
    settings = AppSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d", engine="torch")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_until(
            lambda: client.get("/readyz").json().get("ready"),
            30,
            "the service ready",
        )
        engine = client.app.state.services.index.engine  # type: ignore[attr-defined]
        real = engine.search
        try:
            for error, status in ((StoreError("down"), 503), (ValueError("a bug"), 500)):

                def fail(*args: object, error: Exception = error) -> None:
                    raise error

                engine.search = fail
                r = client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(2))})
                assert r.status_code == status, r.text
                assert "a bug" not in r.text and "Traceback" not in r.text
        finally:
            engine.search = real
        assert (
            client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(2))}).status_code == 200
        )


def test_start_up_work_is_retried_until_the_store_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = CarIndex.ensure_live
    calls: list[float] = []

    def flaky(self: CarIndex, embedder: object) -> str:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise StoreError("the Qdrant server did not answer")
        return real(self, embedder)  # type: ignore[arg-type]

    monkeypatch.setattr(CarIndex, "ensure_live", flaky)
    settings = AppSettings(
        qdrant_path=tmp_path / "q", data_dir=tmp_path / "d", engine="torch", store_retry_s=0.2
    )
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").json().get("ready"), 30, "the service ready")
    assert len(calls) == 3


def test_a_request_has_one_store_deadline_across_its_store_calls(tmp_path: Path) -> None:
    """Each store call within the deadline, their sum past it: 503 (a refined search reads the
    cars it is refined with, then searches)."""
    settings = AppSettings(
        qdrant_path=tmp_path / "q",
        data_dir=tmp_path / "d",
        engine="torch",
        store_deadline_s=1.0,
        api_key="k",
    )
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json().get("ready"),
            30,
            "the service ready",
        )
        added = client.post(
            "/api/v1/cars", files={"image": ("c.jpg", _jpeg(3))}, headers={"X-API-Key": "k"}
        )
        assert added.status_code == 201, added.text
        car = added.json()["id"]
        engine = client.app.state.services.index.engine  # type: ignore[attr-defined]
        search, retrieve = engine.search, engine.retrieve
        calls: list[str] = []

        def slow(real: Any, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                time.sleep(0.6)  # a store answering in 0.6 s, within the 1 s deadline
                return real(*args, **kwargs)

            return call

        engine.search, engine.retrieve = slow(search, "search"), slow(retrieve, "retrieve")
        try:
            r = client.post(
                "/api/v1/search", files={"image": ("q.jpg", _jpeg(4))}, data={"positive": car}
            )
        finally:
            engine.search, engine.retrieve = search, retrieve
        assert r.status_code == 503 and "in time" in r.text, r.text
        assert calls[:2] == ["retrieve", "search"]
        ok = client.post(
            "/api/v1/search", files={"image": ("q.jpg", _jpeg(4))}, data={"positive": car}
        )
        assert ok.status_code == 200  # the next request has a deadline of its own


def test_readiness_costs_one_store_call(tmp_path: Path) -> None:
    settings = AppSettings(
        qdrant_path=tmp_path / "q", data_dir=tmp_path / "d", engine="torch", model_poll_s=600
    )
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json().get("ready"),
            30,
            "the service ready",
        )
        services = client.app.state.services  # type: ignore[attr-defined]
        real, calls = services.on_store, []

        async def counted(seconds: float, call: Any, /, *args: Any, **kwargs: Any) -> Any:
            calls.append(call)
            return await real(seconds, call, *args, **kwargs)

        services.on_store = counted
        try:
            body = client.get("/readyz").json()
        finally:
            services.on_store = real
        assert body["ready"] and body["collection"] == body["live_collection"]
        assert body["points"] == 0 and len(calls) == 1
