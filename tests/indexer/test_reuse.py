"""Photos re-used across cars on both engines: exact and near copies found when a car is added
(flagged, or refused with nothing written), different photos of one model not flagged, a photo
too plain for a copy signal checked for exact copies only, and the audit's groups."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from carembed.embedder import Embedder
from indexer.cars import NewPhoto
from indexer.copies import signal_of
from indexer.index import CarIndex
from indexer.payload import CarFields, Listing
from indexer.reuse import PhotoReused, audit, reused_by_car
from tests.conftest import scene


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _photo(data: bytes, embedder: Embedder) -> NewPhoto:
    vector = embedder.embed([data])[0]
    return NewPhoto(data, "jpeg", Image.open(io.BytesIO(data)).size, vector, signal=signal_of(data))


def _altered(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    dx, dy = round(w * 0.08), round(h * 0.08)
    stamped = image.copy()
    ImageDraw.Draw(stamped).text((4, 4), "CALL 555-0199", fill=(255, 255, 0))
    return {
        "resized": _jpeg(image.resize((w // 2, h // 2))),
        "recompressed": _jpeg(image, 35),
        "brightened": _jpeg(ImageEnhance.Brightness(image).enhance(1.2)),
        "stamped": _jpeg(stamped),
        "mirrored": _jpeg(ImageOps.mirror(image)),
        "cropped": _jpeg(image.crop((dx, dy, w - dx, h - dy))),
    }


def test_copies_are_found_on_add_and_look_alikes_are_not(
    index: CarIndex, small_embedder: Embedder
) -> None:
    index.ensure_live(small_embedder)
    version = small_embedder.version
    original = scene(4100, size=(480, 320))
    first = index.cars.add(
        version,
        [_photo(_jpeg(original), small_embedder)],
        CarFields(make="Audi"),
        Listing(external_id="ad-1"),
    ).car
    first_photo = first.photos[0].id

    same = index.cars.add(
        version, [_photo(_jpeg(original), small_embedder)], CarFields(), Listing(external_id="x")
    )
    (exact,) = same.reused[same.car.photos[0].id] or []
    assert (exact.car_id, exact.photo_id, exact.external_id, exact.kind) == (
        first.id,
        first_photo,
        "ad-1",
        "exact",
    )
    for how, data in _altered(original).items():
        added = index.cars.add(
            version, [_photo(data, small_embedder)], CarFields(), Listing(external_id=how)
        )
        found = added.reused[added.car.photos[0].id] or []
        assert first_photo in {r.photo_id for r in found}, how
        assert {r.kind for r in found if r.photo_id == first_photo} == {"near"}, how

    # Another photo of a look-alike (another scene): not a copy.
    other = index.cars.add(
        version,
        [_photo(_jpeg(scene(4200, size=(480, 320))), small_embedder)],
        CarFields(),
        Listing(),
    )
    assert other.reused[other.car.photos[0].id] == []

    # Refused: nothing written.
    before = index.count(index.serving(version))
    uploads = len(index.ledger.uploads())
    with pytest.raises(PhotoReused, match="a photo is already the photo") as refused:
        index.cars.add(
            version,
            [_photo(_jpeg(original, 60), small_embedder)],
            CarFields(),
            Listing(external_id="thief"),
            on_reused="reject",
        )
    assert first.id in {r.car_id for r in refused.value.found}
    assert index.count(index.serving(version)) == before
    assert len(index.ledger.uploads()) == uploads
    assert index.listings.with_external_id("thief") == []
    allowed = index.cars.add(
        version,
        [_photo(_jpeg(original, 60), small_embedder)],
        CarFields(),
        Listing(external_id="allowed"),
        on_reused="allow",
    )
    assert set(allowed.reused.values()) == {None}

    # A plain photo has no copy signal: only its exact copies are looked for.
    plain = _jpeg(Image.new("RGB", (200, 120), (90, 90, 90)))
    once = index.cars.add(version, [_photo(plain, small_embedder)], CarFields(), Listing())
    assert list(once.reused.values()) == [None]

    # The audit: one group, the original and every copy (the refused one is not there).
    live = index.serving(version)
    pairs = audit(index.engine, live)
    grouped = {p.photo.car_id for p in pairs} | {p.other.car_id for p in pairs}
    copies = {first.id, same.car.id, allowed.car.id} | set(
        index.listings.with_external_id(how)[0] for how in _altered(original)
    )
    assert grouped == copies and {p.group for p in pairs} == {0}
    assert len({(p.photo.id, p.other.photo_id) for p in pairs}) == len(pairs)
    mine = reused_by_car(index.engine, live, first.id)
    assert mine is not None and {r.car_id for r in mine[first_photo] or []} == copies - {first.id}


def test_a_copy_keeps_its_signal_across_a_rebuild_with_another_model(
    index: CarIndex, small_embedder: Embedder, gallery: object
) -> None:
    from pathlib import Path

    from carembed.model import build_model

    assert isinstance(gallery, Path)
    index.ensure_live(small_embedder)
    version = small_embedder.version
    original = Image.open(gallery / "BMW_M3_Coupe_2012" / "0.jpg").convert("RGB")
    index.build(small_embedder, gallery, progress=False)
    copy = index.cars.add(
        version,
        [_photo(_jpeg(original.resize((80, 48)), 50), small_embedder)],
        CarFields(),
        Listing(),
    )
    assert copy.reused[copy.car.photos[0].id], "a gallery photo's copy is found"
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    rebuilt = index.build(other, gallery, progress=False).collection
    again = reused_by_car(index.engine, rebuilt, copy.car.id)
    assert again is not None and again[copy.car.photos[0].id]
    assert np.all(
        [p.payload.phash for p in index.engine.retrieve(rebuilt, [copy.car.photos[0].id])]
    )
