"""A client generated from the service's OpenAPI description with openapi-python-client (as
another service would make one) sends photos and gets typed answers, against a running service."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import AppSettings
from benchmarks.service import Service
from tests.indexer.conftest import make_gallery

KEY = "client-key"


@pytest.mark.slow
def test_a_generated_client_searches_identifies_adds_and_deletes(tmp_path: Path) -> None:
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
        models = importlib.import_module("carsearch_client.models")
        types = importlib.import_module("carsearch_client.types")
    finally:
        sys.path.remove(str(tmp_path))

    gallery = make_gallery(tmp_path / "gallery")
    photo = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
    args = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "d")]
    args += ["--gallery", str(gallery)]
    with Service(args, env={"CARSEARCH_API_KEY": KEY}) as service:
        deadline = time.monotonic() + 120
        while httpx.get(service.url + "/readyz").json()["indexing"]["state"] != "done":
            assert time.monotonic() < deadline, "the gallery was not indexed"
            time.sleep(0.1)
        api = client_mod.Client(base_url=service.url, raise_on_unexpected_status=True)

        def file() -> object:
            return types.File(payload=photo, file_name="car.jpg", mime_type="image/jpeg")

        found = search.sync(client=api, body=models.BodySearch(image=file(), limit=3))
        assert found.hits[0].class_name == "BMW M3 Coupe 2012" and len(found.hits) == 3
        answer = identify.sync(client=api, body=models.BodyIdentify(image=file()))
        assert answer.candidates[0].class_name == "BMW M3 Coupe 2012"

        new_photo = tmp_path / "new.jpg"
        from tests.conftest import scene

        scene(4242).save(new_photo, quality=90)
        body = models.BodyAddCar(
            image=types.File(payload=new_photo.read_bytes(), file_name="n.jpg"),
            make="Audi",
            model="TTS Coupe",
            year=2012,
        )
        car = add_car.sync(client=api, body=body, x_api_key=KEY)
        assert (car.make, car.model, car.year) == ("Audi", "TTS Coupe", 2012)
        assert get_car.sync(client=api, car_id=car.id).make == "Audi"
        delete_car.sync_detailed(client=api, car_id=car.id, x_api_key=KEY)
        gone = get_car.sync_detailed(client=client_mod.Client(base_url=service.url), car_id=car.id)
        assert gone.status_code == 404
