"""Peak memory of the service under small uploads that decode into huge images.

    python benchmarks/upload_memory.py [--concurrent 8] [--side 6000]

Starts `carsearch serve` (a subprocess on 127.0.0.1, empty embedded store), then sends
``--concurrent`` searches at once, each an ~80 KB PNG of side x side pixels (36 Mpx by default):
16-bit greyscale, then RGBA. Samples the server's resident memory every 5 ms and prints the
growth of its peak over the resident memory before the burst (target: <= 400 MB), and the
answers' status codes. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from service import Service, peak_rss_during

logger = logging.getLogger("upload_memory")


def _png(side: int, kind: str) -> bytes:
    """A photo-sized PNG that compresses to almost nothing: smooth, so it is tiny on the wire."""
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    if kind == "grey16":
        img = Image.fromarray((np.outer(ramp, ramp) * 64).astype(np.uint16))
    else:
        img = Image.new("RGBA", (side, side), (200, 30, 30, 128))
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


async def _burst(url: str, data: bytes, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        rs = await asyncio.gather(
            *[http.post("/api/v1/search", files={"image": ("x.png", data)}) for _ in range(n)]
        )
    return [r.status_code for r in rs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--side", type=int, default=6000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="carsearch-memory-"))
    store = ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(work / "data")]
    figures: dict[str, object] = {"concurrent": args.concurrent, "megapixels": args.side**2 / 1e6}
    with Service(store, env={"CARSEARCH_MAX_PIXELS": str(args.side * args.side + 1)}) as server:
        url = server.url
        for kind in ("grey16", "rgba"):
            data = _png(args.side, kind)
            asyncio.run(_burst(url, data, 1))  # warm-up: allocator pools, code paths
            before, peak, statuses = peak_rss_during(
                server, lambda d=data: asyncio.run(_burst(url, d, args.concurrent))
            )
            logger.info(
                "%d x %s PNG (%d KB, %.0f Mpx) at once: %.0f MB before, peak %.0f MB (+%.0f MB); "
                "answers %s",
                args.concurrent,
                kind,
                len(data) // 1024,
                args.side**2 / 1e6,
                before,
                peak,
                peak - before,
                statuses,
            )
            figures[f"{kind}_kb"] = len(data) // 1024
            figures[f"{kind}_growth_mb"] = round(peak - before, 1)
            figures[f"{kind}_statuses"] = sorted({int(s) for s in statuses})  # type: ignore[attr-defined]
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
