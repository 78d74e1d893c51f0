"""HTTP limits of ``carsearch serve``, over raw sockets against the service in its own process:
header and request-line size, a body (or a request) that never comes, the API key checked
before the body, and one key header only."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from benchmarks.service import Service
from tests.conftest import wait_until

KEY = "limits-key"
READ_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root: Path = tmp_path_factory.mktemp("limits")
    args = ["--qdrant-path", str(root / "q"), "--data-dir", str(root / "data")]
    env = {"CARSEARCH_API_KEY": KEY, "CARSEARCH_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    with Service(args, env=env) as service:
        url = urlsplit(service.url)
        yield url.hostname or "127.0.0.1", url.port or 80


def _answer(sock: socket.socket, seconds: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes (bounded), and when the first byte came."""
    sock.settimeout(seconds)
    started, first, chunks = time.monotonic(), None, []
    try:
        while chunk := sock.recv(65536):
            first = first if first is not None else time.monotonic() - started
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks), first if first is not None else float("inf")


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send until done or until the server stops reading (it refused and closed)."""
    try:
        for start in range(0, len(data), 65536):
            sock.sendall(data[start : start + 65536])
    except (BrokenPipeError, ConnectionResetError):
        pass


@pytest.mark.slow
def test_a_huge_header_is_refused_with_431_before_it_arrives_whole(
    address: tuple[str, int],
) -> None:
    with socket.create_connection(address) as sock:
        start = time.monotonic()
        _send_all(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 * 2**20))
        answer, _ = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert b"/problems/http-limit" in answer
        assert time.monotonic() - start < 10


def test_a_long_request_target_is_refused_with_414(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, _ = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 414 "), answer[:80]


def test_a_body_that_never_comes_gets_408_within_the_read_timeout(
    address: tuple[str, int],
) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"POST /api/v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
        )
        answer, first = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert READ_TIMEOUT_S * 0.9 <= first < READ_TIMEOUT_S + 5


def test_a_connection_that_sends_nothing_is_closed_within_the_read_timeout(
    address: tuple[str, int],
) -> None:
    with socket.create_connection(address) as sock:
        answer, first = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and first < READ_TIMEOUT_S + 5


def test_a_wrong_key_is_refused_before_the_body_is_sent(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"POST /api/v1/cars HTTP/1.1\r\nHost: x\r\nX-API-Key: wrong\r\nContent-Type: "
            b"multipart/form-data; boundary=b\r\nContent-Length: 5000000\r\n\r\n"
        )
        answer, first = _answer(sock, seconds=READ_TIMEOUT_S * 0.8)
        assert answer.startswith(b"HTTP/1.1 403 "), answer[:80]
        assert b"/problems/bad-api-key" in answer and first < READ_TIMEOUT_S * 0.8


def test_two_key_headers_are_refused_even_when_one_is_right(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"DELETE /api/v1/cars/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: x\r\n"
            b"X-API-Key: " + KEY.encode() + b"\r\nX-API-Key: other\r\nConnection: close\r\n\r\n"
        )
        answer, _ = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 403 "), answer[:80]


def test_a_normal_request_still_passes(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, _ = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]


def _metric(address: tuple[str, int], route: str, status: int) -> float:
    import httpx

    text = httpx.get(f"http://{address[0]}:{address[1]}/metrics", timeout=10).text
    label = f'carsearch_requests_total{{method="POST",route="{route}",status="{status}"}}'
    found = [line.split()[-1] for line in text.splitlines() if line.startswith(label)]
    return float(found[0]) if found else 0.0


def test_a_client_that_leaves_mid_body_is_counted_as_gone_not_as_a_bad_request(
    address: tuple[str, int],
) -> None:
    before = _metric(address, "/api/v1/search", 499), _metric(address, "/api/v1/search", 400)
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"POST /api/v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
        )
    wait_until(
        lambda: _metric(address, "/api/v1/search", 499) != before[0],
        10,
        "the request counted",
    )
    assert _metric(address, "/api/v1/search", 400) == before[1]
