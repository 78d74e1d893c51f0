"""The operators' loop of the README on generated data: labels fixed through the index reach
training (``train --from-index``), the gate stops the new model until forced, and a rollback
puts the old one back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from carsearch.cli import main
from indexer.index import CarIndex
from indexer.settings import StoreSettings
from tests.training.conftest import make_shapes_dataset

RENAMED = "Renamed Coupe 2013"


@pytest.mark.slow
def test_retrain_from_the_index_then_gate_force_and_roll_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gallery = make_shapes_dataset(tmp_path / "gallery", train_classes=8, val_classes=0)
    store = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "d")]
    assert main(["index", "--gallery", str(gallery), "--workers", "0", *store]) == 0
    first = _status(store, capsys)["live"]

    settings = StoreSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    index = CarIndex.open(settings)
    try:  # what PATCH /api/v1/cars/{id} does: a class renamed, car by car
        renamed = [
            pid
            for pid, p in index.engine.scroll(first, ["class_name"])
            if p["class_name"] == "Shape00 Sedan 2012"
        ]
        for car_id in renamed:
            assert index.listings.edit(car_id, {"class_name": RENAMED}) is not None
    finally:
        index.close()

    model = tmp_path / "model"
    train = ["train", "--from-index", *store, "--out", str(model), "--backbone", "mobilenet_v2"]
    train += ["--recipe", "frozen", "--epochs", "1", "--workers", "0", "--accelerator", "cpu"]
    train += ["--no-int8-check", "--cache-dir", str(tmp_path / "cache")]
    assert main([*train, "--work-dir", str(tmp_path / "runs")]) == 0
    with (tmp_path / "model-dataset" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["class_name"] for r in rows if r["car_id"] in renamed} == {RENAMED}
    assert "Shape00 Sedan 2012" not in {r["class_name"] for r in rows}
    training = json.loads((model / "config.json").read_text())["training"]
    assert RENAMED in training["class_names"]
    held = {r["car_id"] for r in rows if r["split"] == "holdout"}
    assert sorted(held) == training["held_out"] and len(held) == 8  # 10 % of each class

    build = ["index", "--gallery", str(gallery), "--workers", "0", "--model", str(model), *store]
    assert main(build) == 3  # 8 held-out photos, one per class: too few to judge
    assert _status(store, capsys)["live"] == first
    assert main([*build, "--force"]) == 0
    status = _status(store, capsys)
    assert status["live"] != first and status["live_gate"]["forced"] is True
    assert main(["index", "rollback", *store]) == 0
    assert _status(store, capsys)["live"] == first


def _status(store: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["index", "status", "--json", *store]) == 0
    status: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return status


def test_an_index_without_labels_is_refused_naming_how_many_cars_lack_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:

    import numpy as np

    from carembed.embedder import Embedder
    from carembed.model import build_model
    from indexer.payload import CarFields
    from tests.indexer.conftest import jpeg

    settings = StoreSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    index = CarIndex.open(settings)
    embedder = Embedder(build_model("mobilenet_v2"), batch_size=2)
    try:
        index.ensure_live(embedder)
        for seed in (1, 2):
            data = jpeg(seed)
            vector = np.ones(embedder.dim, np.float32) / np.sqrt(embedder.dim)
            index.add_photo(embedder.version, data, "jpeg", (8, 8), vector, CarFields())
    finally:
        index.close()
    store = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "d")]
    assert main(["export-dataset", "--out", str(tmp_path / "out"), *store]) == 2
    assert "2 lack one" in caplog.text
