"""The web page in a real browser: headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import scene
from tests.indexer.conftest import make_gallery

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    root = tmp_path_factory.mktemp("browser")
    settings = AppSettings(
        gallery=make_gallery(root / "gallery"),
        qdrant_path=root / "q",
        data_dir=root / "d",
        api_key="page-key",
        engine="torch",
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the service did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_search_more_like_this_bad_file_and_add_car(base_url: str, tmp_path: Path) -> None:
    query = tmp_path / "query.jpg"
    scene(201).save(query)  # the Tesla 1.jpg picture
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    new_car = tmp_path / "new.jpg"
    scene(31337).save(new_car)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(base_url + "/")
            page.wait_for_function(
                "document.querySelector('#status').textContent.includes('9 cars indexed')",
                timeout=60_000,
            )
            page.set_input_files("#file", str(query))
            page.wait_for_selector(".card")
            first = page.locator(".card .name").first.text_content()
            assert first == "Tesla Model S Sedan 2012"
            # One photo per model by default, and what the car probably is, above them.
            assert page.locator(".card").count() == 3
            assert page.locator(".card .group").first.text_content() == "3 photos of this model"
            identity = page.locator("#identity").text_content() or ""
            assert identity.startswith("Looks like a 2012 Tesla Model S Sedan — ")
            assert identity.split("— ")[1].split(" %")[0].isdigit()
            fit = page.evaluate("getComputedStyle(document.querySelector('.card img')).objectFit")
            assert fit == "contain"  # whole cars in the thumbnails
            page.screenshot(path=str(tmp_path / "grouped.png"), full_page=True)
            page.uncheck("input[name=group_by]")
            page.wait_for_function("document.querySelectorAll('.card').length === 9")
            page.screenshot(path=str(tmp_path / "results.png"), full_page=True)

            page.select_option("select[name=body]", "Coupe")
            page.wait_for_function(
                "[...document.querySelectorAll('.card .score')]"
                ".every(s => s.textContent.includes('Coupe'))"
            )
            assert page.locator(".card").count() == 6

            page.select_option("select[name=body]", "")
            page.wait_for_function("document.querySelectorAll('.card').length === 9")
            page.locator(".card button").first.click()  # more like this
            page.wait_for_function("document.querySelectorAll('.card').length === 8")

            page.set_input_files("#file", str(bad))
            page.wait_for_function(
                "document.querySelector('#message').textContent.includes('Not a readable image')"
            )

            page.click("#add summary")
            page.fill("#add-form input[name=key]", "page-key")
            page.set_input_files("#add-form input[name=image]", str(new_car))
            page.fill("#add-form input[name=make]", "Lada")
            page.fill("#add-form input[name=model]", "Niva")
            page.fill("#add-form input[name=year]", "1990")
            page.click("#add-form button[type=submit]")
            page.wait_for_function(
                "document.querySelector('#add-message').textContent.startsWith('Added')"
            )
            page.set_input_files("#file", str(new_car))
            page.wait_for_function(
                "document.querySelector('.card .name').textContent === 'Lada Niva 1990'"
            )
        finally:
            browser.close()
