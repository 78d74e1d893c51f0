"""The body limit stops a streamed upload (no Content-Length) as soon as it passes the limit."""

from __future__ import annotations

import asyncio
from typing import Any

from app.body_limit import BodyLimit


def _run(
    limit: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[list[dict[str, Any]], int]:
    received = 0
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        nonlocal received
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise OSError("client went away")  # what a body parser does
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return messages[pulled - 1]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": headers}
    asyncio.run(BodyLimit(inner, limit)(scope, receive, send))
    return sent, pulled


def test_streamed_body_over_the_limit_is_cut_off_with_413() -> None:
    chunk = b"x" * 65536
    sent, pulled = _run(limit=100_000, chunks=[chunk] * 100, headers=[])
    assert sent[0]["status"] == 413
    assert b"/problems/too-large" in sent[1]["body"]
    assert pulled < 10  # stopped reading long before the 6.5 MB were in


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    sent, pulled = _run(limit=1000, chunks=[b"x"], headers=[(b"content-length", b"999999")])
    assert sent[0]["status"] == 413 and pulled == 0


def test_small_bodies_pass() -> None:
    sent, _ = _run(limit=100_000, chunks=[b"abc", b"def"], headers=[])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
