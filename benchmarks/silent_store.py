"""The service in front of a Qdrant that accepts connections and never answers.

    python benchmarks/silent_store.py [--rounds 5]

Starts a TCP listener on 127.0.0.1 that accepts and stays silent, and `carsearch serve
--qdrant-url` pointed at it (a subprocess, default settings). Then, round by round, times
`/healthz` (target: 200 within 1 s), a search (target: 503 within 5 s) and `/readyz`
(target: 503 every time). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

logger = logging.getLogger("silent_store")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(call: object) -> tuple[int, float]:
    start = time.perf_counter()
    status = int(call().status_code)  # type: ignore[operator]
    return status, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="carsearch-silent-"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carsearch",
            "serve",
            "--port",
            str(port),
            "--qdrant-url",
            f"http://127.0.0.1:{listener.getsockname()[1]}",
            "--data-dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (120, 30, 30)).save(buf, "JPEG")
    photo = buf.getvalue()
    url = f"http://127.0.0.1:{port}"
    health, searches, ready = [], [], []
    try:
        deadline = time.monotonic() + 180
        started = time.monotonic()
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.2)
        startup = time.monotonic() - started
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(args.rounds):
                health.append(_timed(lambda: http.get("/healthz")))
                searches.append(
                    _timed(lambda: http.post("/api/v1/search", files={"image": ("q.jpg", photo)}))
                )
                ready.append(_timed(lambda: http.get("/readyz")))
    finally:
        server.terminate()
        server.wait(timeout=120)
    figures = {
        "startup_s": round(startup, 1),
        "healthz": sorted({s for s, _ in health}),
        "healthz_max_s": round(max(t for _, t in health), 3),
        "search": sorted({s for s, _ in searches}),
        "search_max_s": round(max(t for _, t in searches), 2),
        "readyz": sorted({s for s, _ in ready}),
        "readyz_max_s": round(max(t for _, t in ready), 2),
    }
    logger.info(
        "silent store: /healthz %s in at most %.3f s; search %s in at most %.2f s; "
        "/readyz %s in at most %.2f s (service up in %.1f s)",
        figures["healthz"],
        figures["healthz_max_s"],
        figures["search"],
        figures["search_max_s"],
        figures["readyz"],
        figures["readyz_max_s"],
        startup,
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
