"""Static int8 quantization of the ONNX graph, calibrated on real car photos, and its int8
check.

The int8 graph is kept only when it passed the int8 check: faster than the float32 graph at
batch 1 and at batch 16, and less than ``max_drop`` R-Precision lost on class-labelled photos
(``carsearch train`` checks at export, ``carsearch model quantize`` on demand). It lives beside
the weights (``<model folder>/model.int8.onnx``, so it travels with the model and its copies in
the index), or ``<onnx_dir>/<version>.int8.onnx`` for the zero-shot model; the graph carries the
model version and the check's figures. ``--engine auto`` runs it unless ``CARSEARCH_INT8=false``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from carembed.artifact import load_or_default
from carembed.atomic import replace_durably, write_atomically
from carembed.backends import Backend, OnnxBackend
from carembed.cpu import cpu_description, int8_sums
from carembed.datasets import CarRecord, read_dataset
from carembed.embedder import Embedder
from carembed.int8_files import (
    CHECK_KEY,
    QuantizationReport,
    int8_graph_path,
    rejection_path,
)
from carembed.metrics import retrieval_metrics
from carembed.model import CarEmbeddingModel

logger = logging.getLogger(__name__)


def stamp(path: Path, metadata: dict[str, str]) -> None:
    """Set ``metadata`` in the ONNX graph at ``path`` (in place; a key it had is replaced)."""
    import onnx

    graph = onnx.load(str(path))
    kept = [p for p in graph.metadata_props if p.key not in metadata]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


QUANTIZED_PREFIX = "/backbone/"  # ONNX node names of the backbone (torch.onnx's module paths)


def float_nodes(graph_path: Path, prefix: str = QUANTIZED_PREFIX) -> list[str]:
    """The nodes that stay float32 in the int8 graph: all but the backbone's convolutions and
    what runs between them. Pooling (GeM raises activations to a power, which magnifies their
    rounding), the head, the L2 normalisation and the mirror's averaging lose most when
    quantized and cost little in float. The backbone's first and last convolutions stay float
    too: the stem sees the raw normalised photo, the last feeds the pooling."""
    import onnx

    nodes = onnx.load(str(graph_path), load_external_data=False).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv" and n.name.startswith(prefix)]
    outside = [n.name for n in nodes if not n.name.startswith(prefix)]
    return outside + convs[:1] + convs[-1:]


def quantize_static_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """QDQ int8 (per-channel weights) calibrated on ``calibration`` (N, 3, S, S) images, with
    ``float_nodes`` left in float32; the float32 graph's metadata (the model version) travels
    along. ONNX Runtime sums the products of such a graph exactly on CPUs with VNNI, in
    saturating 16-bit pairs on CPUs with AVX2 alone (``carembed.cpu.int8_sums``): its check
    records which, and ``auto`` runs it only where they are summed the same way."""
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
            nodes_to_exclude=float_nodes(prepared),
            extra_options={"CalibMovingAverage": True},
        )
    source, target = onnx.load(str(fp32_path)), onnx.load(str(out_path))
    del target.metadata_props[:]
    target.metadata_props.extend(source.metadata_props)  # the model version travels along
    onnx.save(target, str(out_path))


def measure_rate(
    forward: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int = 3
) -> float:
    """Photos per second of ``forward`` on ``batch`` (after one warm-up call)."""
    forward(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        forward(batch)
    return repeats * len(batch) / (time.perf_counter() - start)


SPEED_BATCH = 16  # the service's largest micro-batch
INT8_MARGIN = 0.005
"""The most R-Precision the int8 graph may lose against float32 on the check's photos."""


def _embed(backend: Backend, arrays: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([backend(arrays[i : i + batch]) for i in range(0, len(arrays), batch)])


def _score(
    fp32: Embedder, int8: Backend, evaluation: Sequence[CarRecord], checked_on: str
) -> QuantizationReport:
    """Both graphs' speed and R-Precision on ``evaluation``, here (no verdict yet)."""
    arrays = np.stack([fp32.prepare(r.path) for r in evaluation])
    _, labels = np.unique([r.class_name for r in evaluation], return_inverse=True)
    speed = arrays[:SPEED_BATCH]
    return QuantizationReport(
        fp32_img_s=measure_rate(fp32.runner, speed),
        int8_img_s=measure_rate(int8, speed),
        fp32_batch1_img_s=measure_rate(fp32.runner, speed[:1], repeats=20),
        int8_batch1_img_s=measure_rate(int8, speed[:1], repeats=20),
        fp32_r_precision=retrieval_metrics(_embed(fp32.runner, arrays), labels)["r_precision"],
        int8_r_precision=retrieval_metrics(_embed(int8, arrays), labels)["r_precision"],
        checked_on=checked_on,
        cpu=cpu_description(),
        int8_sums=int8_sums(),
    )


def check_int8(
    model: CarEmbeddingModel,
    onnx_dir: Path,
    evaluation: Sequence[CarRecord],
    calibration: Sequence[CarRecord],
    checked_on: str,
    *,
    calibration_images: int = 256,
    max_drop: float = INT8_MARGIN,
) -> QuantizationReport:
    """Quantize ``model`` (calibrated on up to ``calibration_images`` of ``calibration``), score
    both graphs on ``evaluation`` and keep the int8 graph where the model's int8 graph lives
    (``int8_graph_path``) only when it passes; a graph that fails is removed and its figures
    are left beside it (``rejection_path``)."""
    fp32 = Embedder(model, engine="onnx", onnx_dir=onnx_dir)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(calibration), min(calibration_images, len(calibration)), replace=False)
    calibration_arrays = np.stack([fp32.prepare(calibration[i].path) for i in sorted(chosen)])
    target = int8_graph_path(model, onnx_dir)
    staged = target.with_name(f".{target.name}.partial")
    logger.info("quantizing %s with %d calibration photos", fp32.version, len(calibration_arrays))
    quantize_static_int8(fp32.runner.path, staged, calibration_arrays)  # type: ignore[attr-defined]
    int8 = OnnxBackend(model, fp32.model_version, onnx_dir, None, int8_graph=staged)

    report = _score(fp32, int8, evaluation, checked_on)
    report.decide(max_drop)
    note = rejection_path(target)
    if report.kept:
        stamp(staged, {CHECK_KEY: report.model_dump_json()})
        replace_durably(staged, target)
        note.unlink(missing_ok=True)
    else:
        staged.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        write_atomically(note, (report.model_dump_json(indent=2) + "\n").encode())
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
    calibration_images: int = 256,
    max_drop: float = INT8_MARGIN,
) -> QuantizationReport:
    """``carsearch model quantize``: the int8 check on ``split`` of ``data``, calibrated on its
    other photos."""
    evaluation, others, checked_on = _evaluation(data, split)
    return check_int8(
        load_or_default(model_dir),
        onnx_dir,
        evaluation,
        others,
        checked_on,
        calibration_images=calibration_images,
        max_drop=max_drop,
    )


def _evaluation(data: Path, split: str) -> tuple[list[CarRecord], list[CarRecord], str]:
    """``split`` of ``data`` (else all of it) to score, its other photos to calibrate on, and
    how the photos are named in a report."""
    dataset = read_dataset(data)
    evaluation = [r for r in dataset.records if r.split == split] or dataset.records
    others = [r for r in dataset.records if r.split != split] or dataset.records
    return evaluation, others, f"{split} of {data} ({len(evaluation)} photos)"


def recheck_int8(
    model_dir: Path | None, data: Path, split: str, onnx_dir: Path, *, max_drop: float = INT8_MARGIN
) -> QuantizationReport:
    """``carsearch model quantize --check-only``: the model's int8 graph as it is, scored against
    its float32 graph on this machine (ONNX Runtime's int8 kernels differ by CPU); ``kept``
    says whether it keeps within ``max_drop`` and is faster here. Nothing is written.
    MissingGraph when the model has no int8 graph."""
    model = load_or_default(model_dir)
    fp32 = Embedder(model, engine="onnx", onnx_dir=onnx_dir)
    graph = int8_graph_path(model, onnx_dir)
    int8 = OnnxBackend(model, fp32.model_version, onnx_dir, None, int8_graph=graph)
    evaluation, _, checked_on = _evaluation(data, split)
    report = _score(fp32, int8, evaluation, checked_on)
    report.decide(max_drop)
    return report
