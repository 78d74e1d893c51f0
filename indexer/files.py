"""Locks across processes on the files the index keeps beside its data (alias pointers, the
upload ledger); they are written with ``carembed.atomic``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from filelock import FileLock, ReadWriteLock, Timeout

from indexer.engines.base import StoreError, retries_allowed

REQUEST_LOCK_S = 2.0
"""How long a request waits for a lock another writer holds (then 503); background work
waits as long as it takes."""


@contextlib.contextmanager
def _holding(
    path: Path, acquire: Callable[[float], object], release: Callable[[], None]
) -> Iterator[None]:
    """``acquire(timeout)`` .. ``release()``: within a request (``single_attempt``) a lock held
    longer than ``REQUEST_LOCK_S`` is a StoreError, not a parked thread."""
    timeout = -1 if retries_allowed() else REQUEST_LOCK_S
    try:
        acquire(timeout)
    except Timeout as exc:
        raise StoreError(f"{path.name} is held by another writer for over {timeout} s") from exc
    try:
        yield
    finally:
        release()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), across threads and processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, thread_local=False)
    with _holding(path, lambda t: lock.acquire(timeout=t, poll_interval=0.005), lock.release):
        yield


@contextlib.contextmanager
def shared_or_exclusive(path: Path, mode: Literal["shared", "exclusive"]) -> Iterator[None]:
    """A reader/writer lock on ``path`` (an SQLite file, created if missing), across threads
    and processes: any number of ``shared`` holders, or one ``exclusive``; waits as ``locked``
    does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = ReadWriteLock(path, is_singleton=False)
    acquire = lock.acquire_read if mode == "shared" else lock.acquire_write
    try:
        with _holding(path, lambda t: acquire(timeout=t), lock.release):
            yield
    finally:
        lock.close()
