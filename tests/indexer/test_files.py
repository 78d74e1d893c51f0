"""Locks across threads and processes: a request waits a bounded time, background work waits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from indexer.engines.base import StoreError, single_attempt
from indexer.files import REQUEST_LOCK_S, locked


def test_a_request_gives_up_on_a_lock_held_elsewhere_and_background_work_waits(
    tmp_path: Path,
) -> None:
    path, held, release = tmp_path / "locks" / "ab.lock", threading.Event(), threading.Event()

    def holder() -> None:
        with locked(path):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(30)

    def enter() -> None:
        with locked(path):
            pass

    started = time.monotonic()
    with pytest.raises(StoreError, match="held by another writer"):
        single_attempt(enter)
    assert REQUEST_LOCK_S <= time.monotonic() - started < REQUEST_LOCK_S + 5

    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: (enter(), waited.append(True)))
    waiter.start()
    release.set()  # the background writer gets the lock once it is let go
    waiter.join(30)
    thread.join(30)
    assert waited == [True]
