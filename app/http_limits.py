"""Limits on what one HTTP request may hold a connection with, below the application: the size
of the request line and headers, and how long a request may go without sending a byte.

uvicorn's httptools protocol, with three checks added:
- the request head (request line + headers) over ``max_header_bytes``: 431, connection closed,
  counted while it arrives (a 32 MB header is never held whole);
- a request target over ``max_url_bytes``: 414;
- no byte of an unfinished request (head or body) for ``read_timeout_s``: 408, closed. The
  clock does not run while the application is slow to read (flow control paused reading).
Keep-alive and concurrency limits are uvicorn's own (``timeout_keep_alive``,
``limit_concurrency``); ``serve_options`` gathers them all from the settings.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import AppSettings

_REASONS = {408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 32 * 1024
    max_url_bytes = 8 * 1024
    read_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # the next bytes belong to a request head
        self._in_request = False  # a request began and has not been read whole
        self._read_timer: asyncio.TimerHandle | None = None

    # -- the clock ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm()  # the application reads slowly: not the client's silence
            return
        started = self.cycle is not None and self.cycle.response_started
        if self._in_request or self.cycle is None:
            if started:
                self.transport.close()
            else:
                self._refuse(408, f"no data for {self.read_timeout_s:g} s")

    # -- counting ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(431, f"request line and headers over {self.max_header_bytes} bytes")
            return
        if self._in_request or (self._in_head and self._head_bytes):
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_request = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_url_bytes:
            self.url = self.url[: self.max_url_bytes + 1]  # held no longer; refused at the end

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        if len(self.url) > self.max_url_bytes:
            self._refuse(414, f"request target over {self.max_url_bytes} bytes")
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_request, self._in_head = False, True
        self._disarm()

    def _refuse(self, status: int, detail: str) -> None:
        self._disarm()
        title = _REASONS[status]
        problem = {"type": "/problems/http-limit", "title": title, "status": status}
        body = json.dumps(problem | {"detail": detail}).encode()
        head = (
            f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def limited_protocol(settings: AppSettings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class with the limits of ``settings``."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "max_url_bytes": settings.max_url_bytes,
            "read_timeout_s": settings.read_timeout_s,
        },
    )


def serve_options(settings: AppSettings) -> dict[str, Any]:
    """uvicorn's options for the HTTP limits of ``settings``."""
    return {
        "http": limited_protocol(settings),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
