from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carembed.datasets import DatasetError, parse_class_name, read_dataset
from tests.conftest import scene


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Audi TTS Coupe 2012", ("Audi", "TTS Coupe", 2012, "Coupe")),
        ("AM_General_Hummer_SUV_2000", ("AM General", "Hummer SUV", 2000, "SUV")),
        (
            "Aston Martin V8 Vantage Convertible 2012",
            ("Aston Martin", "V8 Vantage Convertible", 2012, "Convertible"),
        ),
        (
            "Chevrolet Silverado 1500 Extended Cab 2012",
            ("Chevrolet", "Silverado 1500 Extended Cab", 2012, "Pickup"),
        ),
        ("Tesla Model S Sedan 2012", ("Tesla", "Model S Sedan", 2012, "Sedan")),
        ("Mystery", ("Mystery", None, None, None)),
    ],
)
def test_parse_class_name(name: str, expected: tuple[object, ...]) -> None:
    assert parse_class_name(name) == expected


def test_manifest_csv_with_metadata(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    scene(1).save(tmp_path / "a" / "1.jpg")
    (tmp_path / "manifest.csv").write_text(
        "path,class_name,make,model,year,body,split,colour\n"
        "a/1.jpg,Audi TTS Coupe 2012,Audi,TTS Coupe,2012,Coupe,train,red\n"
    )
    data = read_dataset(tmp_path)
    rec = data.records[0]
    assert data.source == "manifest" and rec.path == (tmp_path / "a" / "1.jpg").resolve()
    assert (rec.make, rec.model, rec.year, rec.body, rec.split) == (
        "Audi",
        "TTS Coupe",
        2012,
        "Coupe",
        "train",
    )
    assert rec.extra == {"colour": "red"}


def test_manifest_jsonl_and_escaping_paths_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "cars.jsonl"
    manifest.write_text(json.dumps({"path": "x.jpg", "class": "BMW M3 Coupe 2012"}) + "\n")
    rec = read_dataset(manifest).records[0]
    assert (rec.class_name, rec.make, rec.year) == ("BMW M3 Coupe 2012", "BMW", 2012)
    manifest.write_text(json.dumps({"path": "../etc/passwd", "class": "x"}) + "\n")
    with pytest.raises(DatasetError, match="must be relative"):
        read_dataset(manifest)


def test_image_folder(tmp_path: Path) -> None:
    for cls in ("Audi_TTS_Coupe_2012", "BMW_M3_Coupe_2012"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            scene(i).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "Audi_TTS_Coupe_2012" / "notes.txt").write_text("ignored")
    data = read_dataset(tmp_path)
    assert data.source == "folder" and len(data.records) == 4
    assert data.class_names == ["Audi TTS Coupe 2012", "BMW M3 Coupe 2012"]
    assert data.records[0].relative == "Audi_TTS_Coupe_2012/0.png"


def test_stanford_layout_from_a_generated_devkit(tmp_path: Path) -> None:
    from scipy.io import savemat

    (tmp_path / "cars_train").mkdir()
    (tmp_path / "devkit").mkdir()
    for name in ("00001.jpg", "00002.jpg"):
        scene(3).save(tmp_path / "cars_train" / name)
    names = np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012"], dtype=object)
    savemat(tmp_path / "devkit" / "cars_meta.mat", {"class_names": names})
    annos = np.zeros(
        2,
        dtype=[
            ("bbox_x1", "O"),
            ("bbox_y1", "O"),
            ("bbox_x2", "O"),
            ("bbox_y2", "O"),
            ("class", "O"),
            ("fname", "O"),
        ],
    )
    annos["fname"] = ["00001.jpg", "00002.jpg"]
    annos["class"] = [2, 1]
    for key in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"):
        annos[key] = [0, 0]
    savemat(tmp_path / "devkit" / "cars_train_annos.mat", {"annotations": annos})
    data = read_dataset(tmp_path)
    assert data.source == "stanford"
    assert [(r.relative, r.class_name, r.make, r.body) for r in data.records] == [
        ("cars_train/00001.jpg", "Acura RL Sedan 2012", "Acura", "Sedan"),
        ("cars_train/00002.jpg", "AM General Hummer SUV 2000", "AM General", "SUV"),
    ]


def test_missing_and_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no manifest"):
        read_dataset(tmp_path)
