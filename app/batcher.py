"""Dynamic micro-batching: concurrent requests share one forward pass.

Each request hands in one preprocessed image; a single worker task takes the first waiting
image, collects more for at most ``max_wait_ms`` (up to ``max_batch``), runs one forward pass
in a worker thread (the event loop stays free), and answers every request of the batch.
Images that arrive while a forward pass runs form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_Item = tuple[np.ndarray, "asyncio.Future[np.ndarray]"]


class MicroBatcher:
    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_wait_ms: float,
        observe: Callable[[int], None] | None = None,
        others_in_flight: Callable[[], bool] | None = None,
    ) -> None:
        self._forward = forward
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._observe = observe
        self._others = others_in_flight
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def embed(self, array: np.ndarray) -> np.ndarray:
        """One preprocessed image (3, S, S) -> its unit vector."""

        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((array, future))
        return await future

    async def embed_many(self, arrays: np.ndarray) -> np.ndarray:
        """Several preprocessed images (N, 3, S, S) of one request -> (N, D), one forward pass,
        on the same thread as the micro-batches."""
        loop = asyncio.get_running_loop()
        if self._observe is not None:
            self._observe(len(arrays))
        return await loop.run_in_executor(self._executor, self._forward, arrays)

    async def _collect(self) -> list[_Item]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        # Alone in the service: nobody to wait for, answer at once.
        alone = self._others is not None and not self._others()
        deadline = loop.time() + (0.0 if alone else self._max_wait)
        while len(batch) < self._max_batch:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())
                else:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, TimeoutError):
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [item for item in await self._collect() if not item[1].cancelled()]
            if not batch:
                continue
            if self._observe is not None:
                self._observe(len(batch))
            try:
                arrays = np.stack([array for array, _ in batch])
                vectors = await loop.run_in_executor(self._executor, self._forward, arrays)
            except Exception as exc:  # every waiting request learns of the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
