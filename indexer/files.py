"""Locks across processes on the files the index keeps beside its data (alias pointers, the
upload ledger); they are written with ``carembed.atomic``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from filelock import FileLock, ReadWriteLock, Timeout

from indexer.engines.base import StoreError, retries_allowed

REQUEST_LOCK_S = 2.0
"""How long a request waits for a lock another writer holds (then 503); background work
waits as long as it takes."""


def _wait_s() -> float:
    return -1 if retries_allowed() else REQUEST_LOCK_S


def _held_too_long(path: Path, timeout: float) -> StoreError:
    return StoreError(f"{path.name} is held by another writer for over {timeout} s")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), across threads and processes.
    Within a request (``single_attempt``) a lock held longer than ``REQUEST_LOCK_S`` is a
    StoreError, not a parked thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = _wait_s()
    lock = FileLock(path, timeout=timeout, thread_local=False)
    try:
        lock.acquire(poll_interval=0.005)
    except Timeout as exc:
        raise _held_too_long(path, timeout) from exc
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def shared_or_exclusive(path: Path, mode: Literal["shared", "exclusive"]) -> Iterator[None]:
    """A reader/writer lock on ``path`` (an SQLite file, created if missing), across threads
    and processes: any number of ``shared`` holders, or one ``exclusive``. Waits as ``locked``
    does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = _wait_s()
    lock = ReadWriteLock(path, timeout=timeout, is_singleton=False)
    try:
        try:
            if mode == "shared":
                lock.acquire_read()
            else:
                lock.acquire_write()
        except Timeout as exc:
            raise _held_too_long(path, timeout) from exc
        try:
            yield
        finally:
            lock.release()
    finally:
        lock.close()
