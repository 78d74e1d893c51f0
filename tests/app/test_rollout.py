"""Rebuild after retraining with the service up: `carsearch index --model NEW` runs in another
process on the same embedded store while queries, adds and deletes go on; the service moves to
the new model and collection on its own, losing nothing; a killed build changes nothing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from carembed.artifact import save_model, shipped_model_dir
from carembed.identity import embedding_version
from carembed.model import build_model
from tests.conftest import readyz_when, scene
from tests.indexer.conftest import make_gallery

KEY = "rollout-key"


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _ready(client: TestClient) -> dict[str, object]:
    return client.get("/readyz").json()  # type: ignore[no-any-return]


def _wait(client: TestClient, check: object, seconds: float = 60) -> dict[str, object]:
    return readyz_when(client, check, seconds)  # type: ignore[arg-type]


def _store(kind: str, tmp_path: Path) -> dict[str, object]:
    """The embedded store in a folder, or the server at QDRANT_URL (a fresh alias)."""
    if kind == "edge":
        return {"qdrant_path": tmp_path / "q"}
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to test against")
    return {
        "qdrant_url": url,
        "qdrant_api_key": os.environ.get("QDRANT_API_KEY"),
        "alias": f"rollout-{os.getpid()}-{time.monotonic_ns()}",
    }


@pytest.fixture(params=["edge", "server"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, AppSettings, Path]]:
    gallery = make_gallery(tmp_path / "gallery")
    settings = AppSettings(
        gallery=gallery,
        data_dir=tmp_path / "data",
        api_key=KEY,
        model_dir=None,  # no model named: the service follows the live collection's model
        engine="torch",
        model_poll_s=0.5,
        model_retire_s=0.3,
        **_store(request.param, tmp_path),  # type: ignore[arg-type]
    )
    with TestClient(create_app(settings)) as client:
        _wait(client, lambda b: b["indexing"]["state"] == "done" and b["points"] == 9)
        yield client, settings, gallery


def _cli(settings: AppSettings, gallery: Path, model: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "carsearch",
        "index",
        "--gallery",
        str(gallery),
        "--model",
        str(model),
        "--engine",
        "torch",
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--no-gate",  # 9 generated photos cannot judge a model: the gate has its own tests
        *(
            ["--qdrant-url", settings.qdrant_url]
            if settings.qdrant_url
            else ["--qdrant-path", str(settings.qdrant_path)]
        ),
        "--alias",
        settings.alias,
        "--data-dir",
        str(settings.data_dir),
    ]


@pytest.mark.slow
def test_rollout_beside_the_service_loses_nothing_and_fails_no_query(
    service: tuple[TestClient, AppSettings, Path], tmp_path: Path
) -> None:
    client, settings, gallery = service
    old_version = _ready(client)["embedding_version"]
    new = save_model(build_model(head="linear", embedding_dim=1280), tmp_path / "new")
    new_version = embedding_version(new, "float32")  # the service runs PyTorch
    query = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
    failures: list[str] = []
    answered: list[str] = []
    stop = threading.Event()

    def queries() -> None:
        while not stop.is_set():
            r = client.post("/api/v1/search", files={"image": ("q.jpg", query)})
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                answered.append(r.json()["embedding_version"])

    def add(seed: int) -> str:
        r = client.post(
            "/api/v1/cars",
            files={"image": ("c.jpg", _jpeg(seed))},
            data={"make": f"Added{seed}"},
            headers={"X-API-Key": KEY},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def delete(car_id: str) -> None:
        r = client.delete(f"/api/v1/cars/{car_id}", headers={"X-API-Key": KEY})
        assert r.status_code == 204, r.text

    before = add(7001)
    doomed = add(7002)
    gallery_victim = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", (gallery / "Audi_TTS_Coupe_2012" / "0.jpg").read_bytes())},
    ).json()["hits"][0]["id"]
    thread = threading.Thread(target=queries)
    thread.start()
    build = subprocess.Popen(
        _cli(settings, gallery, tmp_path / "new"), stderr=subprocess.PIPE, text=True
    )
    try:
        during = add(7003)  # while the build runs
        delete(doomed)
        delete(gallery_victim)
        _, err = build.communicate(timeout=240)
        assert build.returncode == 0, err
        moved = time.monotonic()
        body = _wait(client, lambda b: b["embedding_version"] == new_version, seconds=10)
        switch_s = time.monotonic() - moved
        after = add(7004)
        deadline = time.monotonic() + 30  # more queries on the new model
        while answered.count(new_version) < 5:
            assert time.monotonic() < deadline, "no queries answered by the new model"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
        if build.poll() is None:
            build.kill()
    assert not failures, failures[:3]
    assert answered[0] == old_version and answered[-1] == new_version
    services = client.app.state.services  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10  # model_retire_s is 0.3 s: the old model is unloaded
    while set(services.registry.loaded) != {new_version}:
        assert time.monotonic() < deadline, set(services.registry.loaded)
        time.sleep(0.05)
    assert switch_s < 10
    body = _ready(client)
    assert body["collection"] == body["live_collection"] and body["points"] == 9 - 1 + 3
    for seed, car in ((7001, before), (7003, during), (7004, after)):
        hit = client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(seed))}).json()
        assert hit["embedding_version"] == new_version
        assert hit["hits"][0]["id"] == car and hit["hits"][0]["score"] == pytest.approx(1, abs=1e-3)
    for gone in (doomed, gallery_victim):
        assert client.get(f"/api/v1/cars/{gone}").status_code == 404


_KILLED = """
import sys, time
from pathlib import Path
from carembed.artifact import load_model
from carembed.embedder import Embedder
from indexer.index import CarIndex
from indexer.settings import StoreSettings
store, data, gallery, model, alias = sys.argv[1:6]
where = {"qdrant_url": store} if store.startswith("http") else {"qdrant_path": store}
index = CarIndex.open(StoreSettings(**where, data_dir=data, alias=alias))
embedder = Embedder(load_model(Path(model)), batch_size=2)

def slow(done, total):
    if done >= 4:
        print(done, flush=True)
        time.sleep(60)  # killed here

index.build(embedder, Path(gallery), on_batch=slow, progress=False)
"""


@pytest.mark.slow
def test_a_killed_rollout_build_leaves_the_old_model_serving(
    service: tuple[TestClient, AppSettings, Path], tmp_path: Path
) -> None:
    client, settings, gallery = service
    ready = _ready(client)
    new = save_model(build_model(head="linear", embedding_dim=1280), tmp_path / "new")
    new_version = embedding_version(new, "float32")  # the service runs PyTorch
    store = settings.qdrant_url or str(settings.qdrant_path)
    args = [store, str(settings.data_dir), str(gallery), str(tmp_path / "new"), settings.alias]
    build = subprocess.Popen(
        [sys.executable, "-c", _KILLED, *args], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert build.stdout is not None
    try:
        assert build.stdout.readline().strip() == "4"
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    services = client.app.state.services  # type: ignore[attr-defined]
    rounds, deadline = services.registry.follow_rounds, time.monotonic() + 30
    while services.registry.follow_rounds < rounds + 3:  # three looks at the alias since the kill
        assert time.monotonic() < deadline, "the model follower stopped"
        time.sleep(0.02)
    after = _ready(client)
    assert (after["embedding_version"], after["collection"], after["points"]) == (
        ready["embedding_version"],
        ready["collection"],
        9,
    )
    data = (gallery / "Tesla_Model_S_Sedan_2012" / "0.jpg").read_bytes()
    r = client.post("/api/v1/search", files={"image": ("q.jpg", data)})
    assert r.status_code == 200 and r.json()["hits"][0]["score"] == pytest.approx(1, abs=1e-3)
    # Run again, it resumes and the service moves on.
    rerun = subprocess.run(
        _cli(settings, gallery, tmp_path / "new"), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr
    _wait(client, lambda b: b["embedding_version"] == new_version and b["points"] == 9, seconds=10)


@pytest.mark.slow
def test_the_services_own_rebuild_after_a_model_change_keeps_answering(tmp_path: Path) -> None:
    """`carsearch serve --model NEW --gallery G` on a store built with another model: the old
    model (from its copy in the store) answers until the new collection is complete."""
    gallery = make_gallery(tmp_path / "gallery")
    common = {"gallery": gallery, "qdrant_path": tmp_path / "q", "data_dir": tmp_path / "d"}
    common["gate"] = False  # 9 generated photos cannot judge a model
    first = AppSettings(engine="torch", **common)  # type: ignore[arg-type]
    with TestClient(create_app(first)) as client:
        old = _wait(client, lambda b: b["indexing"]["state"] == "done" and b["points"] == 9)
    new = save_model(build_model(head="linear", embedding_dim=1280), tmp_path / "new")
    new_version = embedding_version(new, "float32")  # the service runs PyTorch
    second = AppSettings(engine="torch", model_dir=tmp_path / "new", model_poll_s=0.3, **common)  # type: ignore[arg-type]
    with TestClient(create_app(second)) as client:
        seen = set()
        query = (gallery / "BMW_M3_Coupe_2012" / "2.jpg").read_bytes()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = client.post("/api/v1/search", files={"image": ("q.jpg", query)})
            assert r.status_code == 200, r.text
            assert r.json()["hits"][0]["score"] == pytest.approx(1, abs=1e-3)
            seen.add(r.json()["embedding_version"])
            if r.json()["embedding_version"] == new_version:
                break
        assert seen == {old["embedding_version"], new_version}


def test_serve_without_a_model_keeps_the_live_model_for_its_gallery(tmp_path: Path) -> None:
    """No --model: the service serves, and indexes its --gallery with, the live collection's
    model; it never rebuilds the index with the shipped default."""
    from carembed.embedder import Embedder
    from indexer.index import CarIndex
    from indexer.settings import StoreSettings

    gallery = make_gallery(tmp_path / "gallery")
    tuned = Embedder(build_model(head="linear", embedding_dim=1280))
    index = CarIndex.open(StoreSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d"))
    live = index.build(tuned, gallery, progress=False).collection
    index.close()
    scene(4321).save(gallery / "BMW_M3_Coupe_2012" / "new.jpg")
    settings = AppSettings(
        gallery=gallery,
        qdrant_path=tmp_path / "q",
        data_dir=tmp_path / "d",
        engine="torch",
        model_dir=None,
    )
    with TestClient(create_app(settings)) as client:
        body = _wait(client, lambda b: b["indexing"]["state"] == "done")
    assert (body["embedding_version"], body["live_collection"], body["points"]) == (
        tuned.version,
        live,
        10,
    )


def test_a_collection_of_an_older_store_format_is_rebuilt_at_start_keeping_its_uploads(
    tmp_path: Path,
) -> None:
    """A live collection written by an older carsearch (another store format) is not served;
    a service started with ``--gallery`` rebuilds it at start, past no quality gate, with the
    cars added through the API."""
    from app.registry import make_embedder
    from carembed.artifact import load_or_default
    from carembed.images import load_image_with_size
    from indexer.index import CarIndex
    from indexer.payload import CarFields, Listing
    from indexer.store_format import FORMAT_KEY, STORE_FORMAT

    gallery = make_gallery(tmp_path / "gallery")
    settings = AppSettings(gallery=gallery, qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    embedder = make_embedder(settings, load_or_default(settings.model_dir))
    index = CarIndex.open(settings)
    current = index.build(embedder, gallery, progress=False).collection
    upload = io.BytesIO()
    scene(777).save(upload, format="JPEG")
    photo = upload.getvalue()
    size = load_image_with_size(photo)[1]
    vector = embedder.embed([photo])[0]
    car = CarFields(make="Audi", model="TT", year=2011)
    added = index.add_photo(embedder.version, photo, "jpg", size, vector, car, Listing())
    older = index.engine.metadata(current) | {FORMAT_KEY: STORE_FORMAT - 1}
    index.engine.set_metadata(current, older)
    index.close()

    with TestClient(create_app(settings)) as client:
        body = _wait(client, lambda b: b["indexing"]["state"] == "done")
        assert body["live_collection"] != current and body["points"] == 10
        assert body["embedding_version"] == embedder.version
        r = client.post("/api/v1/search", files={"image": ("q.jpg", photo)})
        assert r.status_code == 200 and r.json()["hits"][0]["id"] == added.id


@pytest.mark.slow
def test_a_car_added_after_a_same_model_rollout_survives_the_rollback(
    service: tuple[TestClient, AppSettings, Path], tmp_path: Path
) -> None:
    """Serve; rebuild with the same model in another process (the alias moves); add a car,
    edit one and delete one; roll back in another process: all three writes hold."""
    client, settings, gallery = service
    version = _ready(client)["embedding_version"]
    store = _cli(settings, gallery, tmp_path)[-6:]  # the store, alias and data dir arguments
    assert store[0] in ("--qdrant-url", "--qdrant-path")
    scene(4242).save(gallery / "BMW_M3_Coupe_2012" / "new.jpg")  # the rebuild makes a new one
    same = [sys.executable, "-m", "carsearch", "index", "--gallery", str(gallery), "--engine"]
    model = ["--model", str(shipped_model_dir())]  # the model the service runs
    built = subprocess.run(
        [*same, "torch", "--workers", "0", *model, *store], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    moved = _wait(client, lambda b: b["collection"] == b["live_collection"] and b["points"] == 10)
    assert moved["embedding_version"] == version
    r = client.post(
        "/api/v1/cars",
        files={"image": ("c.jpg", _jpeg(8001))},
        data={"make": "Added"},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 201, r.text
    added = r.json()["id"]
    hits = client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(8001))}).json()["hits"]
    others = [h["id"] for h in hits if h["id"] != added]
    edited, deleted = others[0], others[1]
    patch = client.patch(
        f"/api/v1/cars/{edited}",
        json={"year": 1999},
        headers={"X-API-Key": KEY, "Content-Type": "application/merge-patch+json"},
    )
    assert patch.status_code == 200, patch.text
    gone = client.delete(f"/api/v1/cars/{deleted}", headers={"X-API-Key": KEY})
    assert gone.status_code == 204
    back = subprocess.run(
        [sys.executable, "-m", "carsearch", "index", "rollback", *store],
        capture_output=True,
        text=True,
    )
    assert back.returncode == 0, back.stderr
    _wait(client, lambda b: b["collection"] == b["live_collection"] != moved["live_collection"])
    assert client.get(f"/api/v1/cars/{added}").json()["make"] == "Added"
    assert client.get(f"/api/v1/cars/{edited}").json()["year"] == 1999
    assert client.get(f"/api/v1/cars/{deleted}").status_code == 404
