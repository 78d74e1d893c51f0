"""The default model's int8 check on first start: run once on the gallery, cached either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import int8
from app.int8 import check_photos
from app.main import create_app
from app.settings import AppSettings
from carembed import quantize
from carembed.datasets import CarRecord
from carembed.int8_files import int8_graph_path, rejection_path
from carembed.model import build_model
from tests.conftest import readyz_when, stub_rates
from tests.indexer.conftest import make_gallery


def test_the_int8_check_scores_labelled_classes_and_calibrates_on_the_rest() -> None:
    records = [CarRecord(Path(f"{c}/{i}.jpg"), f"{c}/{i}.jpg", c) for c in "abc" for i in range(3)]
    records.append(CarRecord(Path("d/0.jpg"), "d/0.jpg", "d"))  # alone: no query of its own
    scored, calibration = check_photos(records)
    assert {r.class_name for r in scored} == {"a", "b", "c"} and len(scored) == 9
    assert [r.class_name for r in calibration] == ["d"]
    assert check_photos(records[:3] + records[-1:]) == ([], [])  # one usable class: no check


def _wait(client: TestClient, backend: str, gated: list[Any]) -> dict[str, Any]:
    return readyz_when(
        client,
        lambda b: b["indexing"]["state"] == "done" and gated and b["inference_backend"] == backend,
        300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("faster", [True, False])
def test_default_model_runs_the_int8_check_once_and_keeps_its_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faster: bool
) -> None:
    monkeypatch.setenv("CARSEARCH_INT8", "true")
    monkeypatch.setattr(quantize, "measure_rate", stub_rates(200.0 if faster else 50.0, 100.0))
    gated: list[Any] = []
    real = int8.check_int8

    def counted(*args: Any, **kwargs: Any) -> Any:
        # The gate's decision itself is tested with the train recipe; here the generated
        # gallery's quality figures must not decide, only the (stand-in) speed.
        report = real(*args, **kwargs | {"max_drop": 1.0})
        gated.append(args[-1])  # checked_on, once the gate is done
        return report

    monkeypatch.setattr(int8, "check_int8", counted)
    gallery = make_gallery(tmp_path / "gallery")
    settings = AppSettings(gallery=gallery, qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    engine = "onnx-int8" if faster else "onnx"
    precision = "int8" if faster else "f32"  # int8 vectors: a collection of their own
    with TestClient(create_app(settings)) as client:
        ready = _wait(client, engine, gated)
        assert ready["live_collection"].split("__")[1].endswith(f"-{precision}")
        data = next(gallery.rglob("*.jpg")).read_bytes()
        r = client.post("/api/v1/search", files={"image": ("q.jpg", data)})
        assert r.status_code == 200 and r.json()["hits"]
        assert r.json()["embedding_version"].endswith(f"-{precision}")
    graph = int8_graph_path(build_model(), tmp_path / "d" / "onnx")
    assert graph.is_file() == faster and rejection_path(graph).is_file() != faster
    assert len(gated) == 1 and "gallery classes" in gated[0]
    with TestClient(create_app(settings)) as client:  # the next start: the verdict is known
        ready = client.get("/readyz").json()
        assert ready["inference_backend"] == engine
    assert len(gated) == 1  # not run again


@pytest.mark.slow
def test_a_service_runs_the_live_collections_model_at_the_collections_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 vectors are searched with int8 vectors: a service set to float32
    (``CARSEARCH_INT8=false``) that follows a live collection of int8 vectors runs the int8
    graph stored with the index."""
    from carembed.artifact import load_model, save_model
    from carembed.datasets import read_dataset
    from carembed.embedder import Embedder
    from indexer.index import CarIndex
    from indexer.settings import StoreSettings

    monkeypatch.setattr(quantize, "measure_rate", stub_rates(200.0, 100.0))
    gallery = make_gallery(tmp_path / "gallery")
    folder = tmp_path / "model"
    save_model(build_model("mobilenet_v2"), folder)
    model = load_model(folder)
    scored, calibration = check_photos(read_dataset(gallery).records)
    onnx = tmp_path / "onnx"
    assert quantize.check_int8(model, onnx, scored, calibration, "gallery", max_drop=1).kept
    store = {"qdrant_path": tmp_path / "q", "data_dir": tmp_path / "d"}
    built = Embedder(load_model(folder), engine="auto", onnx_dir=onnx)
    assert built.precision == "int8"
    index = CarIndex.open(StoreSettings(**store))
    live = index.build(built, gallery, progress=False).collection
    index.close()

    settings = AppSettings(**store, model_dir=Path("zero-shot"), int8=False)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert (ready["embedding_version"], ready["inference_backend"]) == (
            built.version,
            "onnx-int8",
        )
        assert ready["live_collection"] == live and ready["points"] == 9
        data = next(gallery.rglob("*.jpg")).read_bytes()
        body = client.post("/api/v1/search", files={"image": ("q.jpg", data)}).json()
        assert body["embedding_version"] == built.version
        assert body["hits"][0]["score"] == pytest.approx(1, abs=1e-3)
