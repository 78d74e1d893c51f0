"""The server path's retries and timeouts against a local HTTP server that fails on purpose."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from indexer.engines.qdrant_server.errors import is_transient
from indexer.engines.qdrant_server.store import ServerEngine
from indexer.settings import StoreSettings

OK_BODY = json.dumps({"result": {"collections": []}, "status": "ok", "time": 0.0}).encode()


class Script:
    """What the fake server answers, call by call: a status code, or 'slow'."""

    def __init__(self) -> None:
        self.plan: list[int | str] = []
        self.calls = 0
        self.writes: list[tuple[str, dict[str, object]]] = []  # (path, JSON body) of PUTs


@pytest.fixture
def fake_qdrant() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            step = script.plan[script.calls] if script.calls < len(script.plan) else 200
            script.calls += 1
            if step == "slow":
                time.sleep(2.5)
                step = 200
            assert isinstance(step, int)
            body = OK_BODY if step == 200 else b'{"status": {"error": "nope"}}'
            self.send_response(step)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError):  # the client gave up (timeout test)
                self.wfile.write(body)

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            script.writes.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
            result = (
                {"operation_id": 1, "status": "completed"}
                if self.path.startswith("/collections/") and "/index" in self.path
                else True
            )
            body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def _client(url: str, **changes: object) -> ServerEngine:
    return ServerEngine(StoreSettings(qdrant_url=url, qdrant_backoff_s=0.01, **changes))  # type: ignore[arg-type]


def test_transient_errors_are_retried_until_success(fake_qdrant: tuple[str, Script]) -> None:
    url, script = fake_qdrant
    script.plan = [503, 502, 200]
    assert _client(url).collections() == []
    assert script.calls == 3


def test_client_errors_are_not_retried(fake_qdrant: tuple[str, Script]) -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    url, script = fake_qdrant
    script.plan = [400]
    with pytest.raises(UnexpectedResponse):
        _client(url).collections()
    assert script.calls == 1


def test_retries_are_bounded_then_the_store_is_down(fake_qdrant: tuple[str, Script]) -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    from indexer.engines.base import StoreError

    url, script = fake_qdrant
    script.plan = [503] * 10
    with pytest.raises(StoreError, match="did not answer") as info:
        _client(url, qdrant_retries=2).collections()
    assert isinstance(info.value.__cause__, UnexpectedResponse)
    assert script.calls == 3


def test_timeouts_are_transient_and_bounded(fake_qdrant: tuple[str, Script]) -> None:
    url, script = fake_qdrant
    script.plan = ["slow", "slow"]
    start = time.monotonic()
    assert _client(url, qdrant_timeout_s=1, qdrant_retries=2).collections() == []
    assert script.calls == 3 and time.monotonic() - start < 10


def test_refused_connection_becomes_a_clean_error_after_retries() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = _client(f"http://127.0.0.1:{port}", qdrant_retries=1)
    from indexer.engines.base import StoreError

    with pytest.raises(StoreError) as info:
        client.collections()
    assert info.value.__cause__ is not None and is_transient(info.value.__cause__)


def test_collection_settings_reach_the_server(fake_qdrant: tuple[str, Script]) -> None:
    url, script = fake_qdrant
    engine = _client(
        url,
        quantization="int8",
        hnsw_m=32,
        hnsw_ef_construct=200,
        on_disk=True,
        shard_number=3,
        replication_factor=2,
    )
    engine.create("cars__v__20261129T000000", 1280)
    (path, body), *indexes = script.writes
    assert path == "/collections/cars__v__20261129T000000"
    assert body["vectors"] == {"size": 1280, "distance": "Cosine", "on_disk": True}
    assert body["hnsw_config"] == {"m": 32, "ef_construct": 200}
    assert body["quantization_config"] == {"scalar": {"type": "int8", "always_ram": True}}
    assert (body["shard_number"], body["replication_factor"]) == (3, 2)
    assert {(b["field_name"], b["field_schema"]) for _, b in indexes} == {
        ("make", "keyword"),
        ("model", "keyword"),
        ("body", "keyword"),
        ("class_name", "keyword"),
        ("source", "keyword"),
        ("external_id", "keyword"),
        ("year", "integer"),
        ("car_id", "keyword"),
        ("cover", "bool"),
        ("sha256", "keyword"),
        ("phash_parts", "keyword"),
    }


def test_collection_settings_reach_the_embedded_engine(tmp_path: Path) -> None:
    from indexer.engines.edge.store import EdgeEngine

    settings = StoreSettings(
        qdrant_path=tmp_path, quantization="int8", hnsw_m=32, hnsw_ef_construct=200, hnsw_ef=64
    )
    engine = EdgeEngine(settings)
    engine.create("cars__v__20261129T000000", 8)
    from indexer.payload import CarFilter

    # The search-time settings (hnsw_ef, int8 rescoring) are accepted by the engine.
    assert engine.search("cars__v__20261129T000000", [1.0] * 8, CarFilter(), 3) == []
    engine.close()
    config = json.loads(
        (tmp_path / "collections/cars__v__20261129T000000/edge_config.json").read_text()
    )
    text = json.dumps(config)
    assert '"m": 32' in text and '"ef_construct": 200' in text and "int8" in text.lower()


def test_a_request_tries_once_and_background_work_retries(fake_qdrant: tuple[str, Script]) -> None:
    """Inside ``single_attempt`` (the service's request path) a transient failure is the
    answer at once; outside it (builds, start-up work) it is retried."""
    from indexer.engines.base import StoreError, single_attempt

    url, script = fake_qdrant
    engine = _client(url, qdrant_retries=3)
    script.plan = [503, 200]
    with pytest.raises(StoreError, match="1 tries"):
        single_attempt(engine.collections)
    assert script.calls == 1
    script.plan, script.calls = [503, 503, 200], 0
    assert engine.collections() == []
    assert script.calls == 3


def test_a_request_gives_up_on_a_slow_server_by_its_own_timeout(
    fake_qdrant: tuple[str, Script],
) -> None:
    """A request's store call uses the client whose timeout fits the request's deadline; the
    same call in background work waits for the slow answer (2.5 s)."""
    from indexer.engines.base import StoreError, single_attempt

    url, script = fake_qdrant
    engine = _client(url, qdrant_timeout_s=5, qdrant_request_timeout_s=1, qdrant_retries=0)
    script.plan = ["slow"]
    start = time.monotonic()
    with pytest.raises(StoreError, match="did not answer"):
        single_attempt(engine.collections)
    assert time.monotonic() - start < 2.4  # gave up before the answer came
    script.plan, script.calls = ["slow"], 0
    assert engine.collections() == []  # the background client waited for it


def test_the_service_keeps_a_requests_store_timeout_within_its_deadline() -> None:
    from app.settings import AppSettings

    settings = AppSettings(store_deadline_s=2.0, qdrant_request_timeout_s=9.0)
    assert settings.qdrant_request_timeout_s == 2.0
    assert AppSettings(store_deadline_s=5.0).qdrant_request_timeout_s == 3.0
