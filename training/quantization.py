"""``carsearch model quantize``: build the int8 ONNX graph, measure it against float32 (speed
and R-Precision on a class-labelled split) and keep it only when it is faster and loses less
than ``max_drop`` R-Precision."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from carembed.artifact import load_or_default
from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.quantize import QuantizationReport, int8_path, measure_rate, quantize_static_int8
from training.metrics import retrieval_metrics

logger = logging.getLogger(__name__)


def quantize_and_check(
    model_dir: Path | None,
    data: Path,
    split: str,
    onnx_dir: Path,
    *,
    calibration_images: int = 64,
    max_drop: float = 0.005,
) -> QuantizationReport:
    model = load_or_default(model_dir)
    fp32 = Embedder(model, engine="onnx", onnx_dir=onnx_dir)
    dataset = read_dataset(data)
    evaluation = [r for r in dataset.records if r.split == split] or dataset.records
    others = [r for r in dataset.records if r.split != split] or dataset.records
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(others), size=min(calibration_images, len(others)), replace=False)
    calibration = np.stack([fp32.prepare(others[i].path) for i in chosen])
    target = int8_path(fp32.engine.path)  # type: ignore[attr-defined]
    logger.info("quantizing %s with %d calibration images", fp32.version, len(calibration))
    quantize_static_int8(fp32.engine.path, target, calibration)  # type: ignore[attr-defined]
    int8 = Embedder(model, engine="onnx-int8", onnx_dir=onnx_dir)

    arrays = np.stack([fp32.prepare(r.path) for r in evaluation])
    _, labels = np.unique([r.class_name for r in evaluation], return_inverse=True)
    speed_batch = arrays[:64]
    report = QuantizationReport(
        fp32_img_s=measure_rate(fp32.embed_arrays, speed_batch),
        int8_img_s=measure_rate(int8.embed_arrays, speed_batch),
        fp32_r_precision=retrieval_metrics(fp32.embed_arrays(arrays), labels)["r_precision"],
        int8_r_precision=retrieval_metrics(int8.embed_arrays(arrays), labels)["r_precision"],
        kept=False,
    )
    report.kept = report.int8_img_s > report.fp32_img_s and report.drop < max_drop
    if not report.kept:
        target.unlink(missing_ok=True)
    return report
