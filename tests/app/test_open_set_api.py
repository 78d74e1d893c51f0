""" "What car is this?" when the gallery lacks the car's model, through the running service and
its page: a model calibrated on generated car models (each model: photos of one generated
scene, retouched), a gallery of three others, and photos of a model it holds and of one it
lacks."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from app.settings import AppSettings
from carembed.artifact import ZERO_SHOT, load_or_default, save_model
from carembed.embedder import Embedder
from tests.app.live import CHROMIUM, chromium, running
from tests.conftest import scene, wait_until
from training.identification import fit_calibration
from training.open_set import Labels, Pool

GALLERY = {
    "Acme_Alpha_Coupe_2012": 11,
    "Bolt_Beta_Sedan_2012": 22,
    "Crest_Gamma_Coupe_2012": 33,
}
CALIBRATION_SCENES = range(40, 48)  # generated car models of their own makes


def retouched(seed: int, variant: int) -> Image.Image:
    """A photo of the generated car model ``seed``: its scene, cropped a little and lit
    differently (``variant``)."""
    rng = np.random.default_rng(1000 * seed + variant)
    base = scene(seed, size=(176, 108))
    x, y = int(rng.integers(0, 16)), int(rng.integers(0, 12))
    photo = base.crop((x, y, x + 160, y + 96))
    return ImageEnhance.Brightness(photo).enhance(float(rng.uniform(0.85, 1.15)))


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _calibrated_model(folder: Path) -> Path:
    """The zero-shot model with an identification calibrated on generated car models."""
    model = load_or_default(Path(ZERO_SHOT))
    photos = [(s, v) for s in CALIBRATION_SCENES for v in range(6)]
    vectors = Embedder(model).embed([retouched(s, v) for s, v in photos])
    rows = [(f"Make{s} Model{s} 2012", f"Make{s}", f"Model{s}", 2012) for s, _ in photos]
    labels = Labels(*(list(column) for column in zip(*rows, strict=True)))  # type: ignore[arg-type]
    calibration = fit_calibration(Pool(vectors, labels, np.arange(len(rows))), "generated")
    model.update_config(training={"identification": calibration.model_dump(mode="json")})
    save_model(model, folder)
    return folder


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("open-set")
    gallery = root / "gallery"
    for name, seed in GALLERY.items():
        (gallery / name).mkdir(parents=True)
        for v in range(4):
            retouched(seed, v).save(gallery / name / f"{v}.jpg", quality=90)
    settings = AppSettings(
        gallery=gallery,
        qdrant_path=root / "q",
        data_dir=root / "d",
        model_dir=_calibrated_model(root / "model"),
        engine="torch",
    )
    with running(settings) as url:
        wait_until(
            lambda: httpx.get(url + "/readyz").json().get("points") == 12,
            what="the gallery indexed",
        )
        yield url


def _identify(url: str, photo: bytes, **data: str) -> httpx.Response:
    return httpx.post(
        url + "/api/v1/identify", files={"image": ("q.jpg", photo)}, data=data, timeout=60
    )


@pytest.mark.slow
def test_absent_is_high_for_a_model_the_gallery_lacks_and_low_for_one_it_holds(
    base_url: str,
) -> None:
    held = _identify(base_url, _jpeg(retouched(22, 9))).json()
    assert held["candidates"][0]["class_name"] == "Bolt Beta Sedan 2012"
    assert held["answer"] == "exact" and held["absent_calibrated"] is True
    assert held["absent"] < 0.5 and held["model"]["model"] == "Beta Sedan"
    assert held["absent_prior"] == 0.3  # CARSEARCH_ABSENT_PRIOR's default
    lacking = _identify(base_url, _jpeg(retouched(77, 0))).json()
    assert lacking["answer"] == "absent" and lacking["absent"] > 0.5
    assert lacking["make"]["absent"] > 0.5 and lacking["candidates"][0]["confidence"] < 0.5
    # A gallery said to hold every model asked about: never absent.
    sure = _identify(base_url, _jpeg(retouched(77, 0)), absent_prior="0").json()
    assert sure["absent"] == 0.0 and sure["absent_prior"] == 0.0
    # The search answers the same identification.
    searched = httpx.post(
        base_url + "/api/v1/search",
        files={"image": ("q.jpg", _jpeg(retouched(77, 0)))},
        timeout=60,
    ).json()
    assert searched["identification"] == lacking
    for bad in ("1.5", "-0.1", "nan", "often"):
        r = _identify(base_url, _jpeg(retouched(22, 9)), absent_prior=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.slow
def test_the_page_says_not_in_this_gallery(base_url: str, tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    lacking, held = tmp_path / "lacking.jpg", tmp_path / "held.jpg"
    retouched(77, 0).save(lacking, quality=90)
    retouched(11, 9).save(held, quality=90)
    browser: Any
    with chromium(playwright_api) as browser:
        page = browser.new_page()
        page.goto(base_url + "/")
        page.wait_for_function(
            "document.querySelector('#status').textContent.includes('cars indexed')",
            timeout=60_000,
        )
        page.set_input_files("#file", str(lacking))
        page.wait_for_function("document.querySelector('#identity').textContent !== ''")
        text = page.locator("#identity").text_content() or ""
        assert text.startswith("Not in this gallery (") and "Closest: " in text
        page.set_input_files("#file", str(held))
        page.wait_for_function(
            "document.querySelector('#identity').textContent.startsWith('Looks like')"
        )
        assert "Acme Alpha Coupe" in (page.locator("#identity").text_content() or "")
        # Two photos of one car dropped together, then a third added: searched together.
        front, rear, side = (tmp_path / f"{n}.jpg" for n in ("front", "rear", "side"))
        for path, variant in ((front, 7), (rear, 8), (side, 9)):
            retouched(33, variant).save(path, quality=90)
        page.evaluate(  # the form fields of every search the page sends
            """() => { window.sent = []; const send = window.fetch;
            window.fetch = (url, options) => {
              const body = options && options.body;
              if (body instanceof FormData) window.sent.push([...body.keys()]);
              return send(url, options); }; }"""
        )
        page.set_input_files("#file", [str(front), str(rear)])
        page.wait_for_function(
            "document.querySelector('#identity').textContent.includes('Crest Gamma Coupe')"
        )
        count = page.locator("#photos-count")
        assert count.text_content() == "2 photos of this car, searched together"
        assert page.locator("#box-numbers").is_hidden()  # a region is one photo's
        page.set_input_files("#more-photos", str(side))
        page.wait_for_function(
            "document.querySelector('#photos-count').textContent.startsWith('3 photos')"
        )
        sent = page.evaluate("window.sent")
        assert [fields.count("images") for fields in sent] == [2, 3]
        assert "image" not in sent[0] and "box" not in sent[0]


def _photos(url: str, photos: list[bytes], **data: str) -> httpx.Response:
    files = [("images", (f"{i}.jpg", p)) for i, p in enumerate(photos)]
    return httpx.post(url + "/api/v1/identify", files=files, data=data, timeout=60)


@pytest.mark.slow
def test_several_photos_of_one_car_are_identified_together(base_url: str) -> None:
    front, rear = _jpeg(retouched(33, 7)), _jpeg(retouched(33, 8))
    one = _identify(base_url, front).json()
    # The same photo twice: each photo's vote is the same, so is their mean.
    assert _photos(base_url, [front, front]).json() == one
    both = _photos(base_url, [front, rear]).json()
    assert both["candidates"][0]["class_name"] == "Crest Gamma Coupe 2012"
    assert both["answer"] == "exact" and both["absent"] < 0.5
    # Photos of a car model the gallery lacks, together: absent.
    lacking = [_jpeg(retouched(77, v)) for v in range(3)]
    assert _photos(base_url, lacking).json()["answer"] == "absent"
    for files, data in (
        ([front] * 9, {}),  # more than 8
        ([front, rear], {"box": "0,0,0.5,1"}),  # a box is one photo's
    ):
        r = _photos(base_url, files, **data)
        assert r.status_code == 422 and r.headers["content-type"].startswith(
            "application/problem+json"
        )
    r = httpx.post(
        base_url + "/api/v1/identify",
        files=[("image", ("a.jpg", front)), ("images", ("b.jpg", rear))],
        timeout=60,
    )
    assert r.status_code == 422
    r = httpx.post(base_url + "/api/v1/identify", data={"absent_prior": "0.3"}, timeout=60)
    assert r.status_code == 422


@pytest.mark.slow
def test_a_search_with_several_photos_scores_each_car_by_its_best_match(base_url: str) -> None:
    front, other = _jpeg(retouched(11, 7)), _jpeg(retouched(33, 8))

    def search(files: list[tuple[str, tuple[str, bytes]]], **data: str) -> dict[str, Any]:
        fields = {"limit": "12", **data}
        r = httpx.post(base_url + "/api/v1/search", files=files, data=fields, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    alone = [search([("image", ("q.jpg", photo))]) for photo in (front, other)]
    both = search([("images", ("a.jpg", front)), ("images", ("b.jpg", other))])
    best: dict[str, float] = {}
    for answer in alone:
        for hit in answer["hits"]:
            best[hit["id"]] = max(best.get(hit["id"], -1.0), hit["score"])
    assert [h["id"] for h in both["hits"]] == sorted(best, key=lambda i: -best[i])
    assert [h["score"] for h in both["hits"]] == pytest.approx(
        sorted(best.values())[::-1], abs=1e-4
    )
    identified = _photos(base_url, [front, other]).json()
    assert both["identification"] == identified
    # Pages over the merged ranking: every car once, none skipped.
    pages = [
        search(
            [("images", ("a.jpg", front)), ("images", ("b.jpg", other))],
            limit="5",
            offset=str(offset),
        )["hits"]
        for offset in (0, 5, 10)
    ]
    assert [h["id"] for page in pages for h in page] == [h["id"] for h in both["hits"]]
    # One result per model, and refined toward a car: through the recommendation.
    photos = [("images", ("a.jpg", front)), ("images", ("b.jpg", other))]
    grouped = search(photos, group_by="class", limit="3")
    assert {g["class_name"] for g in grouped["groups"]} == {
        "Acme Alpha Coupe 2012",
        "Bolt Beta Sedan 2012",
        "Crest Gamma Coupe 2012",
    }
    refined = search(photos, positive=both["hits"][0]["id"])
    assert refined["hits"] and refined["identification"] == identified
