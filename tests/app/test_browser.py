"""The web page in a real browser: headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import AppSettings
from tests.app.live import CHROMIUM, chromium, running
from tests.conftest import scene, street
from tests.indexer.conftest import make_gallery

KEY = "page-key"
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("browser")
    settings = AppSettings(
        gallery=make_gallery(root / "gallery"),
        qdrant_path=root / "q",
        data_dir=root / "d",
        api_key=KEY,
        engine="torch",
        attributes="price:float,color:keyword,available:bool",
    )
    with running(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(playwright_api) as launched:
        yield launched


def _ready(page: Any, base_url: str) -> None:
    page.goto(base_url + "/")
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('cars indexed') && "
        "document.querySelectorAll('select[name=make] option').length > 1",
        timeout=60_000,
    )


def _names(page: Any) -> list[str]:
    return [n.text_content() for n in page.locator(".card .name").all()]


def _ids(page: Any) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.id)")  # type: ignore[no-any-return]


def _settled(page: Any) -> None:
    page.wait_for_function("document.querySelector('#message').textContent === ''")


@pytest.mark.slow
def test_search_filters_from_facets_more_like_this_bad_file_and_add_car(
    base_url: str, browser: Any, tmp_path: Path
) -> None:
    query = tmp_path / "query.jpg"
    scene(201).save(query)  # the Tesla 1.jpg picture
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    new_car = tmp_path / "new.jpg"
    scene(31337).save(new_car)
    page = browser.new_page()
    _ready(page, base_url)
    makes = page.locator("select[name=make] option").all_text_contents()
    assert makes[:4] == ["any", "Audi (3)", "BMW (3)", "Tesla (3)"]
    assert page.locator("select[name=attr_color]").count() == 1  # declared: keyword
    assert page.locator("input[name=attr_price_min]").count() == 1  # float: a range
    page.wait_for_function(  # the year range from the gallery's years
        "document.querySelector('input[name=year_min]').placeholder === '2012'"
    )
    assert page.locator("select[name=attr_available] option").all_text_contents() == [
        "any",
        "yes",
        "no",
    ]

    page.set_input_files("#file", str(query))
    page.wait_for_selector(".card")
    assert _names(page)[0] == "Tesla Model S Sedan 2012"
    assert page.locator(".card").count() == 3  # one photo per model by default
    assert page.locator(".card .group").first.text_content() == "3 cars of this model"
    identity = page.locator("#identity").text_content() or ""
    assert identity.startswith("Looks like a 2012 Tesla Model S Sedan — ")
    fit = page.evaluate("getComputedStyle(document.querySelector('.card img')).objectFit")
    assert fit == "contain"  # whole cars in the thumbnails
    page.uncheck("input[name=group_by]")
    page.wait_for_function("document.querySelectorAll('.card').length === 9")

    page.select_option("select[name=body]", "Coupe")
    page.wait_for_function(
        "[...document.querySelectorAll('.card .score')].every(s => s.textContent.includes('Coupe'))"
        " && document.querySelectorAll('.card').length === 6"
    )
    page.wait_for_function(  # the make list narrows to coupes' makes
        "[...document.querySelectorAll('select[name=make] option')].map(o => o.textContent)"
        ".join('|') === 'any|Audi (3)|BMW (3)'"
    )
    page.select_option("select[name=body]", "")
    page.wait_for_function("document.querySelectorAll('.card').length === 9")

    page.set_input_files("#file", str(bad))
    page.wait_for_function(
        "document.querySelector('#message').textContent.includes('Not a readable image')"
    )

    page.click("#add summary")
    page.fill("#add-form input[name=key]", KEY)
    page.set_input_files("#add-form input[name=images]", str(new_car))
    page.fill("#add-form input[name=make]", "Lada")
    page.fill("#add-form input[name=model]", "Niva")
    page.fill("#add-form input[name=year]", "1990")
    page.click("#add-form button[type=submit]")
    page.wait_for_function("document.querySelector('#add-message').textContent.startsWith('Added')")
    page.set_input_files("#file", str(new_car))
    page.wait_for_function("document.querySelector('.card .name').textContent === 'Lada Niva 1990'")
    page.close()


@pytest.mark.slow
def test_the_box_reaches_the_api_and_picks_the_car(
    base_url: str, browser: Any, tmp_path: Path
) -> None:
    photo = tmp_path / "street.jpg"
    photo.write_bytes(street())
    page = browser.new_page()
    page.add_init_script(  # what each search sends as its box
        "const sent = window.fetch; window.boxes = [];"
        "window.fetch = (url, init) => { if (String(url).endsWith('/api/v1/search'))"
        " window.boxes.push(init.body.get('box')); return sent(url, init); };"
    )
    _ready(page, base_url)
    page.uncheck("input[name=group_by]")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector(".card")
    _settled(page)
    # Keyboard and numbers: the left half, then the right half.
    page.fill("#box-numbers input[name=x1]", "50")
    page.dispatch_event("#box-numbers input[name=x1]", "change")
    page.wait_for_function("document.querySelector('.card .name').textContent.startsWith('Audi')")
    assert page.evaluate("window.boxes.at(-1)") == "0.0000,0.0000,0.5000,1.0000"
    page.focus("#box")
    for _ in range(25):  # arrow keys move the box to the right half
        page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('.card .name').textContent.startsWith('Tesla')")
    # A mouse drag draws a new box over the left car.
    area = page.locator("#preview").bounding_box()
    page.mouse.move(area["x"] + 4, area["y"] + 4)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.45, area["y"] + area["height"] - 4, steps=5)
    page.mouse.up()
    page.wait_for_function("document.querySelector('.card .name').textContent.startsWith('Audi')")
    page.click("#whole")
    page.wait_for_function("!document.querySelector('#box').checkVisibility()")
    _settled(page)
    assert page.evaluate("window.boxes.at(-1)") is None
    page.close()


@pytest.mark.slow
def test_refine_chips_car_view_next_page_and_a_phone(
    base_url: str, browser: Any, tmp_path: Path
) -> None:
    photo = io.BytesIO()
    scene(9090).save(photo, "JPEG", quality=90)
    attributes = {"price": 12500.0, "color": "red", "available": True}
    added = httpx.post(
        base_url + "/api/v1/cars",
        files={"image": ("a.jpg", photo.getvalue(), "image/jpeg")},
        data={"make": "Volvo", "model": "240", "attributes": json.dumps(attributes)},
        headers={"X-API-Key": KEY},
    ).json()
    query = tmp_path / "q.jpg"
    query.write_bytes(photo.getvalue())

    page = browser.new_page()
    _ready(page, base_url)
    page.uncheck("input[name=group_by]")
    page.set_input_files("#file", str(query))
    page.wait_for_function("document.querySelectorAll('.card').length >= 10")
    _settled(page)
    before = _ids(page)
    assert before[0] == added["id"]
    page.locator(".card .unlike").nth(1).click()  # less like the second car
    page.wait_for_selector("#chips:not([hidden]) .chip.negative")
    page.wait_for_function(f"!document.querySelector('.card[data-id=\"{before[1]}\"]')")
    _settled(page)
    refined = _ids(page)
    assert refined != before and before[1] not in refined
    page.click(".chip.negative")  # removing the chip restores the ranking
    page.wait_for_function(f"document.querySelector('.card[data-id=\"{before[1]}\"]')")
    _settled(page)
    assert _ids(page) == before

    page.locator(".card .open").first.click()  # the car view
    page.wait_for_selector("#car[open]")
    page.wait_for_function("document.querySelector('#car-identity').textContent !== ''")
    fields = page.locator("#car-fields").text_content() or ""
    assert "Volvo" in fields and "color" in fields and "red" in fields and "12500" in fields
    page.click("#car-edit summary")
    page.fill("#edit-form input[name=key]", KEY)
    page.fill("#edit-form input[name=year]", "1989")
    page.click("#edit-form button[type=submit]")
    page.wait_for_function("document.querySelector('#edit-message').textContent === 'Saved'")
    assert httpx.get(base_url + "/api/v1/cars/" + added["id"]).json()["year"] == 1989
    page.click("#car .close button")

    page.fill("input[name=limit]", "2")
    page.dispatch_event("input[name=limit]", "change")
    page.wait_for_function("document.querySelectorAll('.card').length === 2")
    page.click("#more")
    page.wait_for_function("document.querySelectorAll('.card').length === 4")
    assert len(set(_ids(page))) == 4

    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    serious = [v["id"] for v in found if v["impact"] in ("serious", "critical")]
    assert serious == []
    page.close()

    phone = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True)
    _ready(phone, base_url)
    assert phone.get_attribute("#camera", "capture") == "environment"
    phone.set_input_files("#file", str(query))
    phone.wait_for_selector(".card")
    _settled(phone)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    small = phone.eval_on_selector_all(
        "main button, main .button, main select, main input:not([type=checkbox])",
        "els => els.filter(e => e.checkVisibility()).map(e => e.getBoundingClientRect())"
        ".filter(r => r.height < 44).length",
    )
    assert small == 0
    found = Axe().run(phone).response["violations"]
    assert [v["id"] for v in found if v["impact"] in ("serious", "critical")] == []
    phone.close()


@pytest.mark.slow
def test_a_car_of_several_photos_is_one_card_its_view_shows_them_all_and_a_phone_sees_results_first(
    base_url: str, browser: Any, tmp_path: Path
) -> None:
    shots = []
    for seed in (6101, 6102, 6103):
        buf = io.BytesIO()
        scene(seed).save(buf, "JPEG", quality=90)
        shots.append(buf.getvalue())
    car = httpx.post(
        base_url + "/api/v1/cars",
        files=[("images", (f"{i}.jpg", s, "image/jpeg")) for i, s in enumerate(shots)],
        data={"make": "Saab", "model": "900", "views": ["front", "rear", "side"]},
        headers={"X-API-Key": KEY},
    ).json()
    query = tmp_path / "q.jpg"
    query.write_bytes(shots[1])

    page = browser.new_page()
    _ready(page, base_url)
    page.uncheck("input[name=group_by]")
    page.set_input_files("#file", str(query))
    page.wait_for_selector(f'.card[data-id="{car["id"]}"]')
    _settled(page)
    assert _ids(page).count(car["id"]) == 1  # one card for the car, not one per photo
    first = page.locator(f'.card[data-id="{car["id"]}"]')
    assert "3 photos" in (first.text_content() or "")
    first.locator(".open").click()
    page.wait_for_selector("#car[open]")
    page.wait_for_function("document.querySelectorAll('#car-photos img').length === 3")
    alts = page.eval_on_selector_all("#car-photos img", "imgs => imgs.map(i => i.alt)")
    assert any("(rear)" in a for a in alts) and all("Saab 900" in a for a in alts)
    page.wait_for_function(  # the first shows (the others load as they are swiped to)
        "document.querySelector('#car-photos img').naturalWidth > 0"
    )
    page.close()

    phone = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True)
    _ready(phone, base_url)
    assert not phone.eval_on_selector("#filter-fold", "d => d.open")
    phone.set_input_files("#file", str(query))
    phone.wait_for_selector(".card")
    _settled(phone)
    top = phone.eval_on_selector(".card", "c => c.getBoundingClientRect().top")
    assert top < phone.eval_on_selector("#filter-fold", "d => d.getBoundingClientRect().top")
    assert top < 2 * 844  # within two screens of the top, right after the photo
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.close()
