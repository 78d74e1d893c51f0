"""`carsearch serve` in its own process on 127.0.0.1, for the benchmarks that load it."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx


def mirrored(path: Path) -> bytes:
    """A gallery photo mirrored, as JPEG: new bytes of the same car (a car to add)."""
    from PIL import Image, ImageOps

    buf = io.BytesIO()
    with Image.open(path) as img:
        ImageOps.mirror(img.convert("RGB")).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CARSEARCH_SERVE = [sys.executable, "-m", "carsearch", "serve"]


class Service:
    """Starts ``carsearch serve ARGS`` (or another ``command`` that takes ``--port``) on a free
    loopback port and waits until ``ready_path`` answers 200 (bounded); ``stop`` ends it."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        ready_path: str = "/readyz",
        timeout_s: float = 180,
        command: list[str] = CARSEARCH_SERVE,
        log: Path | None = None,
    ) -> None:
        """``log``: the file the service's log goes to (else nowhere)."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with log.open("ab") if log is not None else open(os.devnull, "wb") as sink:
            self.process = subprocess.Popen(
                [*command, "--port", str(port), *args],
                env=os.environ | (env or {}),
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the service did not answer {ready_path} in {timeout_s} s")

    def _tree(self) -> list[int]:
        """The service's process and its descendants (workers)."""
        found, pending = [], [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            found.append(pid)
            pending.extend(int(c) for c in children)
        return found

    def rss_mb(self) -> float:
        """Resident memory of the service and its child processes (workers), in MB."""
        total = 0
        for pid in self._tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            total += next((int(x.split()[1]) for x in status if x.startswith("VmRSS:")), 0)
        return total / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the service and its workers used so far."""
        total = 0
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def peak_rss_during(service: Service, work: object) -> tuple[float, float, object]:
    """(RSS before, peak RSS while ``work()`` runs, its result)."""
    before = service.rss_mb()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, service.rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = work()  # type: ignore[operator]
    finally:
        done.set()
        sampler.join()
    return before, peak, result
