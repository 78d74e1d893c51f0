"""Decoding's memory, bounded by pixels across all requests: a photo is decoded when its pixels
fit in what the decodes in flight leave of the budget; it waits otherwise, and is refused (503
with Retry-After) when the pixels already waiting pass the queue's bound. A photo that alone
needs more than the whole budget is refused (422) before any pixel is decoded."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import AsyncIterator

from app.problems import Problem

logger = logging.getLogger(__name__)

TRIM_AFTER_PIXELS = 4_000_000
"""Decodes at least this large hand their freed memory back to the system afterwards."""


class PixelBudget:
    def __init__(self, total: int, queue: int) -> None:
        self.total, self.queue = total, queue
        self.in_use = 0
        self.waiting = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        """Held while ``pixels`` are decoded."""
        if pixels > self.total:
            raise Problem(
                422,
                "too-many-pixels",
                "Image has too many pixels",
                f"decoding it needs {pixels} pixels at once; the limit is {self.total}",
            )
        async with self._changed:
            if self.in_use + pixels > self.total and self.waiting + pixels > self.queue:
                raise Problem(
                    503,
                    "busy",
                    "Too many large photos at once",
                    "other large photos are being decoded; try again shortly",
                    retry_after=1,
                )
            self.waiting += pixels
            try:
                await self._changed.wait_for(lambda: self.in_use + pixels <= self.total)
            finally:
                self.waiting -= pixels
            self.in_use += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()
            if pixels >= TRIM_AFTER_PIXELS:
                trim_memory()


def trim_memory() -> None:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim``; elsewhere a
    no-op): a burst of large decodes leaves no lasting growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        logger.debug("malloc_trim is not available here")
