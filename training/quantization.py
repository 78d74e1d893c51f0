"""The int8 quality gate: build the int8 ONNX graph, measure it against float32 (photos/s at
batch 1 and 16, R-Precision on class-labelled photos) and keep it only when it is faster at both
and loses less than ``max_drop`` R-Precision. ``carsearch train`` runs it at export (on the
held-out training classes), ``carsearch model quantize`` on demand (on a split of ``--data``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from carembed.artifact import load_or_default
from carembed.datasets import CarRecord, read_dataset
from carembed.embedder import Embedder
from carembed.engines import Engine, OnnxEngine
from carembed.model import CarEmbeddingModel
from carembed.quantize import (
    CHECK_KEY,
    QuantizationReport,
    int8_graph_path,
    measure_rate,
    quantize_static_int8,
    stamp,
)
from training.metrics import retrieval_metrics

logger = logging.getLogger(__name__)

SPEED_BATCH = 16  # the service's largest micro-batch


def _embed(engine: Engine, arrays: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([engine(arrays[i : i + batch]) for i in range(0, len(arrays), batch)])


def check_int8(
    model: CarEmbeddingModel,
    onnx_dir: Path,
    evaluation: Sequence[CarRecord],
    calibration: Sequence[CarRecord],
    checked_on: str,
    *,
    calibration_images: int = 64,
    max_drop: float = 0.005,
) -> QuantizationReport:
    """Quantize ``model`` (calibrated on up to ``calibration_images`` of ``calibration``), score
    both graphs on ``evaluation`` and keep the int8 graph where the model's int8 graph lives
    (``int8_graph_path``) only when it passes; a graph that fails is removed."""
    fp32 = Embedder(model, engine="onnx", onnx_dir=onnx_dir)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(calibration), min(calibration_images, len(calibration)), replace=False)
    calibration_arrays = np.stack([fp32.prepare(calibration[i].path) for i in sorted(chosen)])
    target = int8_graph_path(model, onnx_dir)
    staged = target.with_name(f".{target.name}.partial")
    logger.info("quantizing %s with %d calibration photos", fp32.version, len(calibration_arrays))
    quantize_static_int8(fp32.engine.path, staged, calibration_arrays)  # type: ignore[attr-defined]
    int8 = OnnxEngine(model, fp32.version, onnx_dir, None, int8_graph=staged)

    arrays = np.stack([fp32.prepare(r.path) for r in evaluation])
    _, labels = np.unique([r.class_name for r in evaluation], return_inverse=True)
    speed = arrays[:SPEED_BATCH]
    report = QuantizationReport(
        fp32_img_s=measure_rate(fp32.engine, speed),
        int8_img_s=measure_rate(int8, speed),
        fp32_batch1_img_s=measure_rate(fp32.engine, speed[:1], repeats=20),
        int8_batch1_img_s=measure_rate(int8, speed[:1], repeats=20),
        fp32_r_precision=retrieval_metrics(_embed(fp32.engine, arrays), labels)["r_precision"],
        int8_r_precision=retrieval_metrics(_embed(int8, arrays), labels)["r_precision"],
        checked_on=checked_on,
    )
    report.decide(max_drop)
    if report.kept:
        stamp(staged, {CHECK_KEY: report.model_dump_json()})
        staged.replace(target)
    else:
        staged.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
    logger.info(
        "int8 graph %s: %.0f -> %.0f photos/s at batch %d, %.0f -> %.0f at batch 1, "
        "R-Precision %.4f -> %.4f on %s",
        "kept" if report.kept else "not kept",
        report.fp32_img_s,
        report.int8_img_s,
        SPEED_BATCH,
        report.fp32_batch1_img_s,
        report.int8_batch1_img_s,
        report.fp32_r_precision,
        report.int8_r_precision,
        checked_on,
    )
    return report


def quantize_and_check(
    model_dir: Path | None,
    data: Path,
    split: str,
    onnx_dir: Path,
    *,
    calibration_images: int = 64,
    max_drop: float = 0.005,
) -> QuantizationReport:
    """``carsearch model quantize``: the gate on ``split`` of ``data``, calibrated on its other
    photos."""
    dataset = read_dataset(data)
    evaluation = [r for r in dataset.records if r.split == split] or dataset.records
    others = [r for r in dataset.records if r.split != split] or dataset.records
    return check_int8(
        load_or_default(model_dir),
        onnx_dir,
        evaluation,
        others,
        f"{split} of {data} ({len(evaluation)} photos)",
        calibration_images=calibration_images,
        max_drop=max_drop,
    )
