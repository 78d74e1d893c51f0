"""Training end to end on generated classes (no dataset needed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from carembed.artifact import load_model
from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.model import build_model
from carsearch.cli import main
from tests.conftest import stub_rates
from tests.training.conftest import make_shapes_dataset, quick_train_args
from training.evaluate import evaluate
from training.features import cached_features
from training.train import TrainConfig, train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"))


def _config(shapes: Path, tmp: Path, **changes: object) -> TrainConfig:
    base: dict[str, object] = {
        "data": shapes,
        "out": tmp / "model",
        "backbone": "mobilenet_v2",
        "recipe": "frozen",
        "max_epochs": 12,
        "patience": 4,
        "classes_per_batch": 8,
        "per_class": 4,
        "select_fraction": 0.3,
        "workers": 0,
        "cache_dir": tmp / "cache",
        "work_dir": tmp / "runs",
        "accelerator": "cpu",
        "devices": 1,
        "lr": 3e-3,
        "int8_check": False,
        "image_size": None,
        "test_time_flip": False,
    }
    return TrainConfig(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.slow
def test_frozen_training_beats_the_untrained_head_on_unseen_classes(
    shapes: Path, tmp_path: Path
) -> None:
    config = _config(shapes, tmp_path)
    model, metadata = train(config)
    assert metadata["metrics"]["selection_r_precision"] > metadata["metrics"]["selection_zero_shot"]
    # The held-out "val" classes were never read by training; evaluate against zero-shot.
    report = evaluate(config.out, shapes, "val", tmp_path / "eval", workers=0)
    assert report["r_precision"] > report["zero_shot"]["r_precision"] + 0.02
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["r_precision"] == report["r_precision"] and "recall_at_1" in saved
    assert (tmp_path / "eval" / "recall_at_k.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "examples.png").stat().st_size > 1000
    # Export -> load -> the same embeddings; no checkpoint inside the servable folder.
    assert sorted(os.listdir(config.out)) == ["config.json", "model.safetensors"]
    images = [p.path for p in read_dataset(shapes).split("val").records[:5]]
    np.testing.assert_allclose(
        Embedder(load_model(config.out)).embed(images), Embedder(model).embed(images), atol=1e-5
    )
    training = json.loads((config.out / "config.json").read_text())["training"]
    assert training["recipe"] == "frozen" and len(training["class_names"]) == 10
    # Identification was calibrated on held-out training classes only, never on "val".
    fitted = training["identification"]
    assert fitted["fitted"] and fitted["fitted_on"].startswith("3 classes the model never")
    found = report["identification"]
    assert found["calibrated"] and found["absent_calibrated"]
    assert 0 <= found["ece_make_model_year"] <= 1
    assert found["top1_make_model_year"] > 0.5
    # The open condition: each val class against a gallery without it (every answer wrong).
    assert found["open"]["queries"] == 40 and 0 <= found["open"]["exact_at_50"] <= 1
    assert found["mixed"]["prior"] == 0.3 and found["mixed"]["absent_auroc_exact"] > 0.5
    assert (tmp_path / "eval" / "identification.png").stat().st_size > 1000
    assert any((tmp_path / "runs").rglob("*.ckpt")) and any(
        (tmp_path / "runs").rglob("metrics.csv")
    )
    # Refitted on every training class: only the val classes can calibrate it again.
    calibrate = ["model", "calibrate", str(config.out), "--data", str(shapes)]
    assert main([*calibrate, "--split", "train"]) == 2
    assert main(calibrate) == 0  # every photo: the val classes are those it never saw
    again = json.loads((config.out / "config.json").read_text())["training"]["identification"]
    assert again["fitted_on"] == "4 classes the model never trained on, 40 photos"
    assert set(again["absent"]) == {"make", "model", "exact"}
    # A refitted model takes its selection model's calibration, and only its.
    selection = tmp_path / "selection"
    shutil.copytree(config.out, selection)
    record = json.loads((selection / "config.json").read_text())
    record["training"]["refit"] = False
    record["training"]["identification"]["fitted_on"] = "the selection model's classes"
    (selection / "config.json").write_text(json.dumps(record))
    copy = ["model", "calibrate", str(config.out), "--from"]
    assert main([*copy, str(config.out)]) == 2  # a refitted model is no selection model
    assert main([*copy, str(selection)]) == 0
    copied = json.loads((config.out / "config.json").read_text())["training"]["identification"]
    assert copied["fitted_on"] == "the selection model's classes"


@pytest.mark.slow
def test_partial_recipe_trains_and_exports_the_last_blocks(
    shapes: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carembed import quantize as quantization
    from carembed.int8_files import int8_check, rejection_path

    caplog.set_level("INFO", logger="carembed.quantize")
    # An int8 graph slower than float32: the gate at export must refuse it.
    monkeypatch.setattr(quantization, "measure_rate", stub_rates(int8=50.0, fp32=100.0))
    config = _config(
        shapes,
        tmp_path,
        recipe="partial",
        trainable_blocks=1,
        max_epochs=2,
        loss="triplet_batch_hard",
        refit=False,
        test_time_flip=True,
        image_size=160,
        int8_check=True,
    )
    model, _ = train(config)
    loaded = load_model(config.out)
    assert loaded.config.backbone.in_artifact
    assert loaded.config.test_time_flip and loaded.preprocessing.size == 160
    gate = [r.getMessage() for r in caplog.records if r.getMessage().startswith("int8 graph")]
    assert len(gate) == 1 and "held-out training classes" in gate[0]  # the gate ran at export
    assert gate[0].startswith("int8 graph not kept")
    assert int8_check(config.out / "model.int8.onnx") is None
    assert rejection_path(config.out / "model.int8.onnx").is_file()
    pretrained = build_model("mobilenet_v2").backbone.state_dict()
    tuned = loaded.backbone.state_dict()
    changed = [k for k in tuned if not torch.equal(tuned[k], pretrained[k])]
    assert changed and all(k.startswith("18.") for k in changed)  # only the last block moved
    images = [p.path for p in read_dataset(shapes).split("val").records[:3]]
    np.testing.assert_allclose(
        Embedder(loaded).embed(images), Embedder(model).embed(images), atol=1e-5
    )


@pytest.mark.slow
def test_full_recipe_tiny_run_from_images_skips_a_bad_file(shapes: Path, tmp_path: Path) -> None:
    bad = shapes / "class01" / "zz-broken.png"
    bad.write_bytes(b"\x89PNG broken")
    (shapes / "manifest.csv").write_text(
        (shapes / "manifest.csv").read_text() + "class01/zz-broken.png,Shape01 Sedan 2012,train\n"
    )
    try:
        config = _config(
            shapes,
            tmp_path,
            recipe="full",
            trainable_blocks=2,
            max_epochs=1,
            refit=False,
            workers=0,
            per_class=2,
            classes_per_batch=4,
        )
        _, metadata = train(config)
    finally:
        bad.unlink()
        lines = (shapes / "manifest.csv").read_text().splitlines()
        (shapes / "manifest.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert metadata["recipe"] == "full" and load_model(config.out).config.backbone.in_artifact


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["proxy_anchor", "triplet_semi_hard", "triplet_batch_all"])
def test_other_losses_run(shapes: Path, tmp_path: Path, loss: str) -> None:
    _, metadata = train(_config(shapes, tmp_path, loss=loss, max_epochs=3, refit=False))
    assert metadata["hyperparameters"]["loss"] == loss
    metrics = metadata["metrics"]  # it learned: better than the ImageNet model on unseen shapes
    assert metrics["selection_r_precision"] > metrics["selection_zero_shot"]


def test_feature_cache_hit_miss_and_invalidation(shapes: Path, tmp_path: Path) -> None:
    model = build_model("mobilenet_v2")
    extractor = torch.nn.Sequential(model.backbone, model.pool)
    records = read_dataset(shapes).records[:6]
    key: dict[str, object] = {"backbone": "mobilenet_v2", "cut": "pooled"}
    first, hit = cached_features(
        extractor, records, model.preprocessing, key, tmp_path, num_workers=0
    )
    assert not hit and first.plain.shape == (6, 1280)
    second, hit = cached_features(
        extractor, records, model.preprocessing, key, tmp_path, num_workers=0
    )
    assert hit and torch.equal(first.plain, second.plain)
    # The mirrored view really is the features of the mirrored image.
    from PIL import Image

    with torch.inference_mode():
        mirrored = (
            Image.open(records[0].path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        )
        direct = extractor(torch.from_numpy(model.preprocessing.to_array(mirrored))[None])
    torch.testing.assert_close(first.mirrored[0].float(), direct[0], atol=2e-2, rtol=1e-2)
    os.utime(records[2].path, ns=(1, 1))  # a changed file invalidates
    _, hit = cached_features(extractor, records, model.preprocessing, key, tmp_path, num_workers=0)
    assert not hit
    _, hit = cached_features(
        extractor, records, model.preprocessing, key | {"cut": "other"}, tmp_path, num_workers=0
    )
    assert not hit


def test_bad_image_is_skipped_and_reported(shapes: Path, tmp_path: Path) -> None:
    model = build_model("mobilenet_v2")
    extractor = torch.nn.Sequential(model.backbone, model.pool)
    bad = shapes / "class00" / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    try:
        dataset = read_dataset(shapes)
        from carembed.datasets import CarRecord

        records = [
            *dataset.records[:3],
            CarRecord(path=bad, relative="class00/broken.png", class_name="Shape00 Sedan 2012"),
        ]
        features, _ = cached_features(
            extractor, records, model.preprocessing, {}, tmp_path, num_workers=0
        )
        assert features.kept == [0, 1, 2]
        assert features.failures[0][0] == 3 and features.failures[0][1].startswith("unreadable")
    finally:
        bad.unlink()


@pytest.mark.slow
def test_the_int8_check_keeps_the_graph_only_when_faster_and_as_accurate(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carembed import quantize as quantization
    from carembed.artifact import INT8_FILE, save_model
    from carembed.backends import MissingGraph
    from carembed.int8_files import int8_check
    from carembed.quantize import quantize_and_check

    with pytest.raises(MissingGraph, match="carsearch model quantize"):
        Embedder(build_model("mobilenet_v2"), engine="onnx-int8", onnx_dir=tmp_path)
    model_dir, onnx = tmp_path / "m", tmp_path / "onnx"
    save_model(build_model("mobilenet_v2"), model_dir)
    images = [r.path for r in read_dataset(shapes).split("val").records[:4]]

    monkeypatch.setattr(quantization, "measure_rate", stub_rates(int8=200.0, fp32=100.0))
    report = quantize_and_check(model_dir, shapes, "val", onnx, calibration_images=16, max_drop=1)
    assert report.kept and 0 <= report.int8_r_precision <= 1
    graph = model_dir / INT8_FILE  # beside the weights: it travels with the model
    check = int8_check(graph)
    assert check is not None and check.kept and check.int8_img_s == 200.0
    auto = Embedder(load_model(model_dir), engine="auto", onnx_dir=onnx)
    fp32 = Embedder(load_model(model_dir), engine="auto", onnx_dir=onnx, int8=False)
    assert (auto.backend, fp32.backend) == ("onnx-int8", "onnx")
    import onnxruntime as ort

    arrays = np.stack([fp32.prepare(p) for p in images])
    (direct,) = ort.InferenceSession(str(graph)).run(["embeddings"], {"images": arrays})
    np.testing.assert_allclose(auto.embed(images), direct, atol=1e-5)  # runs the kept graph
    assert np.abs(fp32.embed(images) - direct).max() > 1e-4  # which is not the float32 one

    # --check-only re-scores the graph as it is on this machine and writes nothing
    before = graph.read_bytes()
    common = ["model", "quantize", str(model_dir), "--data", str(shapes), "--onnx-dir", str(onnx)]
    assert main([*common, "--check-only", "--max-drop", "1"]) == 0
    assert main([*common, "--check-only", "--max-drop", "-1"]) == 3  # outside the margin
    assert graph.read_bytes() == before
    bare = tmp_path / "bare"
    save_model(build_model("mobilenet_v2"), bare)
    assert main(["model", "quantize", str(bare), "--data", str(shapes), "--check-only"]) == 2

    copy = tmp_path / "copy"  # a copy of the model (as stored with the index) keeps its graph
    save_model(load_model(model_dir), copy)
    assert Embedder(load_model(copy), engine="auto", onnx_dir=onnx).backend == "onnx-int8"
    flipped = load_model(model_dir)  # another version: the graph is not its own
    flipped.update_config(test_time_flip=True)
    assert Embedder(flipped, engine="auto", onnx_dir=onnx).backend == "onnx"

    monkeypatch.setattr(quantization, "measure_rate", stub_rates(int8=90.0, fp32=100.0))
    assert not quantize_and_check(model_dir, shapes, "val", onnx, max_drop=1).kept
    assert not graph.exists()  # slower: removed
    assert Embedder(load_model(model_dir), engine="auto", onnx_dir=onnx).backend == "onnx"
    monkeypatch.setattr(quantization, "measure_rate", stub_rates(int8=200.0, fp32=100.0))
    assert not quantize_and_check(model_dir, shapes, "val", onnx, max_drop=-1).kept
    assert not graph.exists()  # faster but less accurate than allowed


def test_lightning_logs_each_message_once_and_no_tips(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import lightning  # noqa: F401  (adds its console handler on import)

    from training.quiet import quiet_lightning

    quiet_lightning()
    assert logging.getLogger("lightning").handlers == []  # the application's handlers only
    emitter = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        emitter.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        emitter.info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]


@pytest.mark.slow
def test_train_prints_each_message_once_without_tips_or_lightning_internals(
    shapes: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    args = quick_train_args(shapes, tmp_path / "model", tmp_path / "cache", tmp_path / "runs", 2)
    result = subprocess.run(
        [sys.executable, "-m", "carsearch", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = result.stderr.splitlines()
    assert sum("GPU available" in line for line in lines) == 2  # once per trainer: select, refit
    assert not [line for line in lines if "Tip" in line or "litlogger" in line]
    assert not [line for line in lines if "LeafSpec" in line or "limit_val_batches" in line]
    assert (tmp_path / "model" / "config.json").is_file()
