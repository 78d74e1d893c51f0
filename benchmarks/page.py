"""The page as a person uses it: time from choosing a photo to its results shown, in headless
Chromium (Playwright), against ``carsearch serve`` with the default (shipped) model.

    python benchmarks/page.py ../shared/datasets/stanford-cars-dev [--queries 30] [--work DIR]

The service indexes the gallery first (kept in ``--work`` for later runs). Each query chooses
a photo of the gallery in the page's file input and waits until the result cards are shown
and the page says nothing more; the figure is that wall time, p50 and p95. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from service import Service

from carembed.datasets import read_dataset

logger = logging.getLogger("page")
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gallery", type=Path)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--work", type=Path, default=None, help="data and store (kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from playwright.sync_api import sync_playwright

    work = args.work or Path(tempfile.mkdtemp(prefix="carsearch-page-"))
    store = ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(work / "data")]
    records = read_dataset(args.gallery).records
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(records), args.queries + 1, replace=False)
    photos = [records[i].path for i in chosen]  # the first one warms up
    with Service([*store, "--gallery", str(args.gallery)], timeout_s=600) as service:
        started = time.monotonic()
        while httpx.get(service.url + "/readyz").json()["indexing"]["state"] != "done":
            time.sleep(1)
        logger.info("gallery indexed (%.0f s)", time.monotonic() - started)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.goto(service.url + "/")
            page.wait_for_function("document.querySelector('#status').textContent !== ''")
            times = []
            for i, photo in enumerate(photos):
                page.evaluate("document.querySelector('#results').replaceChildren()")
                start = time.perf_counter()
                page.set_input_files("#file", str(photo))
                page.wait_for_function(
                    "document.querySelector('.card') && "
                    "document.querySelector('#message').textContent === ''"
                )
                if i:
                    times.append((time.perf_counter() - start) * 1e3)
            browser.close()
        model = httpx.get(service.url + "/readyz").json()["embedding_version"]
    ms = np.asarray(times)
    figures = {
        "model": model,
        "queries": len(times),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
    }
    logger.info(
        "choose a photo -> results shown: p50 %.0f ms, p95 %.0f ms over %d photos (%s)",
        figures["p50_ms"],
        figures["p95_ms"],
        len(times),
        model,
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
