"""The server path's retries and timeouts against a local HTTP server that fails on purpose."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from carembed.store import QdrantSettings, open_client

OK_BODY = json.dumps({"result": {"collections": []}, "status": "ok", "time": 0.0}).encode()


class Script:
    """What the fake server answers, call by call: a status code, or 'slow'."""

    def __init__(self) -> None:
        self.plan: list[int | str] = []
        self.calls = 0


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

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def _client(url: str, **changes: object):  # type: ignore[no-untyped-def]
    return open_client(QdrantSettings(qdrant_url=url, qdrant_backoff_s=0.01, **changes))  # type: ignore[arg-type]


def test_transient_errors_are_retried_until_success(fake_qdrant: tuple[str, Script]) -> None:
    url, script = fake_qdrant
    script.plan = [503, 502, 200]
    assert _client(url).get_collections().collections == []
    assert script.calls == 3


def test_client_errors_are_not_retried(fake_qdrant: tuple[str, Script]) -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    url, script = fake_qdrant
    script.plan = [400]
    with pytest.raises(UnexpectedResponse):
        _client(url).get_collections()
    assert script.calls == 1


def test_retries_are_bounded(fake_qdrant: tuple[str, Script]) -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    url, script = fake_qdrant
    script.plan = [503] * 10
    with pytest.raises(UnexpectedResponse):
        _client(url, qdrant_retries=2).get_collections()
    assert script.calls == 3


def test_timeouts_are_transient_and_bounded(fake_qdrant: tuple[str, Script]) -> None:
    url, script = fake_qdrant
    script.plan = ["slow", "slow"]
    start = time.monotonic()
    assert _client(url, qdrant_timeout_s=1, qdrant_retries=2).get_collections().collections == []
    assert script.calls == 3 and time.monotonic() - start < 10


def test_refused_connection_becomes_a_clean_error_after_retries() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = _client(f"http://127.0.0.1:{port}", qdrant_retries=1)
    with pytest.raises(Exception) as info:
        client.get_collections()
    from carembed.store import is_transient

    assert is_transient(info.value)


def test_collection_and_search_settings() -> None:
    from qdrant_client import models

    settings = QdrantSettings(
        quantization="int8",
        hnsw_m=32,
        hnsw_ef_construct=200,
        hnsw_ef=128,
        on_disk=True,
        shard_number=3,
        replication_factor=2,
    )
    params = settings.collection_params()
    assert params["hnsw_config"] == models.HnswConfigDiff(m=32, ef_construct=200)
    assert params["quantization_config"].scalar.type == models.ScalarType.INT8
    assert (params["shard_number"], params["replication_factor"], params["on_disk"]) == (3, 2, True)
    search = settings.search_params()
    assert search.hnsw_ef == 128 and search.quantization.rescore is True
    assert QdrantSettings().search_params() is None
    # Unit vectors: dot equals cosine; the embedded store's dot is the fast one.
    assert QdrantSettings().collection_params()["distance"] == "dot"
    assert QdrantSettings(qdrant_url="http://q:6333").collection_params()["distance"] == "cosine"
