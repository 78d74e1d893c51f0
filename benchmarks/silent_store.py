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
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image
from service import Service

logger = logging.getLogger("silent_store")


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
    work = Path(tempfile.mkdtemp(prefix="carsearch-silent-"))
    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (120, 30, 30)).save(buf, "JPEG")
    photo = buf.getvalue()
    health, searches, ready = [], [], []
    started = time.monotonic()
    silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
    args_ = ["--qdrant-url", silent, "--data-dir", str(work)]
    with Service(args_, ready_path="/healthz") as server:
        startup = time.monotonic() - started
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(args.rounds):
                health.append(_timed(lambda: http.get("/healthz")))
                searches.append(
                    _timed(lambda: http.post("/api/v1/search", files={"image": ("q.jpg", photo)}))
                )
                ready.append(_timed(lambda: http.get("/readyz")))
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
