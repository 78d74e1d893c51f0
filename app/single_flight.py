"""Concurrent requests for the same piece of work share one run of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """``run(key, work)``: the first caller starts ``work()``; callers with the same key that
    arrive while it runs wait for the same result (or error). A caller that is cancelled
    leaves the work running for the others."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}
        self._waiting: dict[str, int] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        flight = self._running.get(key)
        if flight is None:
            flight = self._running[key] = asyncio.ensure_future(work())
            flight.add_done_callback(lambda _: self._running.pop(key, None))
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            return await asyncio.shield(flight)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]

    def waiting(self, key: str) -> int:
        """How many callers wait for the work of ``key`` now."""
        return self._waiting.get(key, 0)
