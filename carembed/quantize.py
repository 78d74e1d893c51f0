"""Static int8 quantization of the ONNX graph, calibrated on real gallery images.

The int8 graph is kept (as ``<onnx_dir>/<model version>.int8.onnx``) only when it is faster
than the float32 graph and loses less than ``max_drop`` R-Precision on a class-labelled split;
``carsearch model quantize`` measures both and reports them either way.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def int8_path(fp32_path: Path) -> Path:
    return fp32_path.with_suffix(".int8.onnx")


def quantize_static_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """QDQ int8 (per-channel weights) calibrated on ``calibration`` (N, 3, S, S) images."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 8)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": np.ascontiguousarray(batch)}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    source, target = onnx.load(str(fp32_path)), onnx.load(str(out_path))
    del target.metadata_props[:]
    target.metadata_props.extend(source.metadata_props)  # the model version travels along
    onnx.save(target, str(out_path))


@dataclass
class QuantizationReport:
    fp32_img_s: float
    int8_img_s: float
    fp32_r_precision: float
    int8_r_precision: float
    kept: bool

    @property
    def drop(self) -> float:
        return self.fp32_r_precision - self.int8_r_precision


def measure_rate(forward: object, batch: np.ndarray, repeats: int = 3) -> float:
    forward(batch[:8])  # type: ignore[operator]
    start = time.perf_counter()
    for _ in range(repeats):
        forward(batch)  # type: ignore[operator]
    return repeats * len(batch) / (time.perf_counter() - start)
