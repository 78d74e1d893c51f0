"""Where a model's int8 graph and a failed int8 check's figures are kept, and the check's
figures recorded in the graph (read by the inference backends, written by ``carembed.quantize``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from carembed.artifact import INT8_FILE
from carembed.cpu import Int8Sums, int8_sums
from carembed.model import CarEmbeddingModel

CHECK_KEY = "carsearch_int8_check"
"""The ONNX metadata key of the int8 check's figures."""


def int8_graph_path(model: CarEmbeddingModel, onnx_dir: Path) -> Path:
    """Where the model's int8 graph lives: its folder, else (the zero-shot model) ``onnx_dir``."""
    if model.source_dir is not None:
        return model.source_dir / INT8_FILE
    return Path(onnx_dir) / f"{model.version()}.int8.onnx"


def rejection_path(graph: Path) -> Path:
    """Where a failed check leaves its figures, so that it is not run again for this model."""
    return graph.with_name(graph.name.removesuffix(".onnx") + ".rejected.json")


class QuantizationReport(BaseModel):
    """The int8 check's figures (photos/s at batch 1 and 16, R-Precision) and verdict."""

    fp32_img_s: float
    int8_img_s: float
    fp32_batch1_img_s: float
    int8_batch1_img_s: float
    fp32_r_precision: float
    int8_r_precision: float
    checked_on: str
    cpu: str = ""
    """The CPU the figures were measured on (``carembed.cpu``); empty when not recorded."""
    int8_sums: Int8Sums | None = None
    """How that CPU summed int8 products; None when not recorded."""
    kept: bool = False

    def holds_here(self) -> bool:
        """Whether this CPU sums int8 products as the one the figures were measured on (else
        the graph's vectors, and its quality, differ here)."""
        return self.int8_sums in (None, int8_sums())

    @property
    def drop(self) -> float:
        return self.fp32_r_precision - self.int8_r_precision

    def decide(self, max_drop: float) -> None:
        faster = (
            self.int8_img_s > self.fp32_img_s and self.int8_batch1_img_s > self.fp32_batch1_img_s
        )
        self.kept = faster and self.drop < max_drop


def int8_check(path: Path) -> QuantizationReport | None:
    """The int8 check's figures stored in an int8 graph (None: no graph, or none recorded)."""
    import onnx

    if not path.is_file():
        return None
    try:
        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return QuantizationReport.model_validate_json(props[CHECK_KEY])
    except Exception:  # a damaged or foreign file: no verdict
        return None
