"""A client generated from the service's OpenAPI description with openapi-python-client (as
another service would make one) sends photos and gets typed answers, against a running service."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import AppSettings
from benchmarks.service import Service
from tests.conftest import wait_until
from tests.indexer.conftest import make_gallery

KEY = "client-key"


@pytest.mark.slow
def test_a_generated_client_searches_adds_a_car_of_photos_lists_edits_counts_refines_deletes(
    tmp_path: Path,
) -> None:
    spec = create_app(AppSettings(data_dir=tmp_path / "d", qdrant_path=tmp_path / "q")).openapi()
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    bin_dir = str(Path(sys.executable).parent)
    subprocess.run(
        [
            os.path.join(bin_dir, "openapi-python-client"),
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--output-path",
            str(tmp_path / "carsearch_client"),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env=os.environ | {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
    )
    sys.path.insert(0, str(tmp_path))
    try:
        client_mod = importlib.import_module("carsearch_client")
        search = importlib.import_module("carsearch_client.api.search.search")
        identify = importlib.import_module("carsearch_client.api.search.identify")
        add_car = importlib.import_module("carsearch_client.api.cars.add_car")
        get_car = importlib.import_module("carsearch_client.api.cars.get_car")
        delete_car = importlib.import_module("carsearch_client.api.cars.delete_car")
        delete_photo = importlib.import_module("carsearch_client.api.cars.delete_photo")
        patch_car = importlib.import_module("carsearch_client.api.cars.patch_car")
        list_cars = importlib.import_module("carsearch_client.api.browse.list_cars")
        facets = importlib.import_module("carsearch_client.api.browse.facets")
        by_external = importlib.import_module("carsearch_client.api.browse.get_car_by_external_id")
        models = importlib.import_module("carsearch_client.models")
        types = importlib.import_module("carsearch_client.types")
    finally:
        sys.path.remove(str(tmp_path))

    gallery = make_gallery(tmp_path / "gallery")
    photo = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
    args = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "d")]
    args += ["--gallery", str(gallery)]
    env = {"CARSEARCH_API_KEY": KEY, "CARSEARCH_ATTRIBUTES": "price:float,color:keyword"}
    with Service(args, env=env) as service:
        wait_until(
            lambda: httpx.get(service.url + "/readyz").json()["indexing"]["state"] == "done",
            120,
            "the gallery indexed",
        )
        api = client_mod.Client(base_url=service.url, raise_on_unexpected_status=True)

        def file() -> object:
            return types.File(payload=photo, file_name="car.jpg", mime_type="image/jpeg")

        found = search.sync(client=api, body=models.BodySearch(image=file(), limit=3))
        assert found.hits[0].class_name == "BMW M3 Coupe 2012" and len(found.hits) == 3
        answer = identify.sync(client=api, body=models.BodyIdentify(image=file()))
        assert answer.candidates[0].class_name == "BMW M3 Coupe 2012"
        assert answer.answer in ("exact", "model", "make", "absent") and answer.absent_prior == 0.3
        together = identify.sync(client=api, body=models.BodyIdentify(images=[file(), file()]))
        assert together.candidates[0].class_name == "BMW M3 Coupe 2012"

        from tests.conftest import scene

        views = ["front", "rear", "side"]
        shots = []
        for seed in (4242, 4243, 4244):
            scene(seed).save(tmp_path / f"{seed}.jpg", quality=90)
            shots.append((tmp_path / f"{seed}.jpg").read_bytes())
        body = models.BodyAddCar(
            images=[types.File(payload=s, file_name=f"{i}.jpg") for i, s in enumerate(shots)],
            views=views,
            make="Audi",
            model="TTS Coupe",
            year=2012,
            external_id="listing-1",
            attributes=json.dumps({"price": 18500.0, "color": "red"}),
        )
        car = add_car.sync(client=api, body=body, x_api_key=KEY)
        assert (car.make, car.model, car.year, car.photos_count) == ("Audi", "TTS Coupe", 2012, 3)
        assert sorted(p.view for p in car.photos) == sorted(views)
        two = [types.File(payload=s, file_name="q.jpg") for s in shots[1:]]
        mine = search.sync(client=api, body=models.BodySearch(images=two, limit=5))
        assert (mine.hits[0].id, mine.hits[0].photos_count) == (car.id, 3)
        assert [h.id for h in mine.hits].count(car.id) == 1
        assert car.attributes.to_dict() == {"price": 18500.0, "color": "red"}
        assert get_car.sync(client=api, car_id=car.id).make == "Audi"
        assert by_external.sync(client=api, external_id="listing-1").id == car.id

        first = list_cars.sync(client=api, limit=6)
        rest = list_cars.sync(client=api, limit=6, cursor=first.next_cursor)
        assert len({c.id for c in first.cars + rest.cars}) == 10 and rest.next_cursor is None
        red = list_cars.sync(client=api, filter_=json.dumps({"color": "red"}))
        assert [c.id for c in red.cars] == [car.id]

        patch = models.CarPatch.from_dict({"year": 2011, "attributes": {"price": 17900.0}})
        edited = patch_car.sync(client=api, car_id=car.id, body=patch, x_api_key=KEY)
        assert edited.year == 2011 and edited.attributes.to_dict()["price"] == 17900.0

        counted = facets.sync(client=api, field="make")
        assert {v.value: v.count for v in counted.values}["Audi"] == 4

        bmw = [h.id for h in found.hits]
        refined = search.sync(
            client=api,
            body=models.BodySearch(image=file(), limit=3, positive=[car.id], negative=bmw[1:3]),
        )
        assert car.id not in {h.id for h in refined.hits}
        assert not set(bmw[1:3]) & {h.id for h in refined.hits}
        gone_photo = car.photos[-1].id
        deleted = delete_photo.sync_detailed(
            client=api, car_id=car.id, photo_id=gone_photo, x_api_key=KEY
        )
        assert deleted.status_code == 204
        assert get_car.sync(client=api, car_id=car.id).photos_count == 2
        delete_car.sync_detailed(client=api, car_id=car.id, x_api_key=KEY)
        gone = get_car.sync_detailed(client=client_mod.Client(base_url=service.url), car_id=car.id)
        assert gone.status_code == 404
