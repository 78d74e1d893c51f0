"""Measuring and calibrating "what car is this?" (the vote in ``carembed.identify``).

Leave-one-out: each photo is identified from all the others (itself excluded), so a class is
in the gallery but the query photo is not. ``fit_calibration`` chooses the vote's ``k`` and
temperature and fits the share -> confidence maps (isotonic: scipy's pool adjacent violators) on
training classes; ``identification_report`` gives top-1/top-3 accuracy at make, make+model
and make+model+year level and the expected calibration error.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import isotonic_regression

from carembed.datasets import CarDataset
from carembed.embedder import Embedder
from carembed.identify import Calibration, Mapping, Neighbour, identify
from carembed.model import CarEmbeddingModel

LEVELS = ("make", "make_model", "make_model_year")
K_CHOICES = (5, 10, 20)
MAKE_K_CHOICES = (5, 10)  # within a default page of hits, so that searches can reuse them
TEMPERATURE_CHOICES = (0.02, 0.05, 0.1, 1.0)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labels:
    """What is known about each photo: its class, make, model and year."""

    classes: list[str]
    makes: list[str | None]
    models: list[str | None]
    years: list[int | None]

    def key(self, i: int, level: str) -> tuple[object, ...]:
        if level == "make":
            return (self.makes[i],)
        if level == "make_model":
            return (self.makes[i], self.models[i])
        return (self.classes[i],)


@dataclass(frozen=True)
class Answers:
    """Per query: the top answer's share, whether it is right, at each level."""

    model_share: np.ndarray
    make_share: np.ndarray
    top1: dict[str, np.ndarray]  # level -> right or not
    top3: dict[str, np.ndarray]
    contradictions: int  # answers whose exact model is of another make than the make answer


def _neighbours(
    vectors: np.ndarray, depth: int, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of each vector's ``depth`` nearest others, best first."""
    emb = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(emb)
    depth = min(depth, n - 1)
    indices = np.empty((n, depth), dtype=np.int64)
    scores = np.empty((n, depth), dtype=np.float32)
    for start in range(0, n, chunk):
        s = emb[start : start + chunk] @ emb.T
        s[np.arange(len(s)), np.arange(start, start + len(s))] = -np.inf
        part = np.argpartition(-s, depth - 1, axis=1)[:, :depth]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        indices[start : start + len(s)] = top
        scores[start : start + len(s)] = np.take_along_axis(s, top, axis=1)
    return indices, scores


def leave_one_out(vectors: np.ndarray, labels: Labels, calibration: Calibration) -> Answers:
    indices, scores = _neighbours(vectors, calibration.depth)
    n = len(vectors)
    model_share, make_share = np.zeros(n), np.zeros(n)
    top1 = {level: np.zeros(n, dtype=bool) for level in LEVELS}
    top3 = {level: np.zeros(n, dtype=bool) for level in LEVELS}
    contradictions = 0
    for i in range(n):
        neighbours = [
            Neighbour(labels.classes[j], labels.makes[j], labels.models[j], labels.years[j], s)
            for j, s in zip(indices[i], scores[i], strict=True)
        ]
        found = identify(neighbours, calibration, top=3)
        if found.candidates and found.make and found.candidates[0].make != found.make:
            contradictions += 1
        model_share[i] = found.candidates[0].share if found.candidates else 0.0
        make_share[i] = found.make_share
        for level in LEVELS:
            answers: list[tuple[object, ...]] = []
            for c in found.candidates:
                key: tuple[object, ...] = (
                    (c.make,)
                    if level == "make"
                    else (c.make, c.model)
                    if level == "make_model"
                    else (c.class_name,)
                )
                if key not in answers:
                    answers.append(key)
            truth = labels.key(i, level)
            top1[level][i] = (
                found.make == labels.makes[i] if level == "make" else answers[:1] == [truth]
            )
            top3[level][i] = truth in answers[:3]
    return Answers(model_share, make_share, top1, top3, contradictions)


def fit_isotonic(shares: np.ndarray, right: np.ndarray) -> Mapping:
    """The non-decreasing step function of share that best fits right/wrong (scipy's pool
    adjacent violators), as points to interpolate: block mean share -> block accuracy."""
    if len(shares) == 0:
        return Mapping()
    order = np.argsort(shares, kind="stable")
    x, y = np.asarray(shares, dtype=np.float64)[order], np.asarray(right, np.float64)[order]
    fit = isotonic_regression(y, increasing=True)
    bounds = list(zip(fit.blocks[:-1], fit.blocks[1:], strict=True))
    xs = [float(x[start:end].mean()) for start, end in bounds]
    ys = [float(fit.x[start]) for start, _ in bounds]
    return Mapping(x=[0.0, *xs, 1.0], y=[ys[0], *ys, ys[-1]])


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| x share of answers."""
    conf, hit = np.asarray(confidence, np.float64), np.asarray(right, np.float64)
    edges = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = edges == b
        if mask.any():
            total += abs(hit[mask].mean() - conf[mask].mean()) * mask.mean()
    return float(total)


def fit_calibration(vectors: np.ndarray, labels: Labels, fitted_on: str) -> Calibration:
    """Choose each vote's ``k`` and temperature by its top-1 accuracy (the exact model's, the
    make's), then fit both maps, all on these (training) photos."""
    best_model: tuple[float, int, float] = (-1.0, 0, 0.0)
    best_make: tuple[float, int, float] = (-1.0, 0, 0.0)
    for k in K_CHOICES:
        for temperature in TEMPERATURE_CHOICES:
            trial = Calibration(
                k=k,
                temperature=temperature,
                make_k=min(k, max(MAKE_K_CHOICES)),
                make_temperature=temperature,
            )
            answers = leave_one_out(vectors, labels, trial)
            exact = float(answers.top1["make_model_year"].mean())
            # Ties go to the smaller k and temperature (searches can then reuse their hits).
            if exact > best_model[0]:
                best_model = (exact, k, temperature)
            make = float(answers.top1["make"].mean())
            if k in MAKE_K_CHOICES and make > best_make[0]:
                best_make = (make, k, temperature)
    chosen = Calibration(
        k=best_model[1],
        temperature=best_model[2],
        make_k=best_make[1],
        make_temperature=best_make[2],
    )
    answers = leave_one_out(vectors, labels, chosen)
    return chosen.model_copy(
        update={
            "model": fit_isotonic(answers.model_share, answers.top1["make_model_year"]),
            "make": fit_isotonic(answers.make_share, answers.top1["make"]),
            "fitted": True,
            "fitted_on": fitted_on,
        }
    )


def identification_report(
    vectors: np.ndarray, labels: Labels, calibration: Calibration
) -> dict[str, float | int | bool | str]:
    answers = leave_one_out(vectors, labels, calibration)
    report: dict[str, float | int | bool | str] = {
        "k": calibration.k,
        "temperature": calibration.temperature,
        "make_k": calibration.make_k,
        "make_temperature": calibration.make_temperature,
        "calibrated": calibration.fitted,
    }
    for level in LEVELS:
        report[f"top1_{level}"] = float(answers.top1[level].mean())
        report[f"top3_{level}"] = float(answers.top3[level].mean())
    model_conf = np.array([calibration.model(s) for s in answers.model_share])
    make_conf = np.array([calibration.make(s) for s in answers.make_share])
    report["ece_model"] = expected_calibration_error(model_conf, answers.top1["make_model_year"])
    report["ece_make"] = expected_calibration_error(make_conf, answers.top1["make"])
    report["contradictions"] = answers.contradictions
    report["coverage_at_95"] = coverage_at_precision(model_conf, answers.top1["make_model_year"])
    return report


def coverage_at_precision(
    confidence: np.ndarray, right: np.ndarray, precision: float = 0.95
) -> float:
    """The largest share of answers that can be given, most confident first, with at least
    ``precision`` of them right (0 when even the most confident answer is wrong)."""
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    hits = np.cumsum(np.asarray(right, np.float64)[order])
    counts = np.arange(1, len(order) + 1)
    ok = np.nonzero(hits / counts >= precision)[0]
    return float((ok[-1] + 1) / len(order)) if len(ok) else 0.0


def plot_reliability(
    vectors: np.ndarray, labels: Labels, calibration: Calibration, path: Path, bins: int = 10
) -> None:
    """Accuracy against confidence per bin (the diagonal is perfect calibration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answers = leave_one_out(vectors, labels, calibration)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, shares, right, mapping in (
        (
            "make + model + year",
            answers.model_share,
            answers.top1["make_model_year"],
            calibration.model,
        ),
        ("make", answers.make_share, answers.top1["make"], calibration.make),
    ):
        conf = np.array([mapping(s) for s in shares])
        edges = np.minimum((conf * bins).astype(int), bins - 1)
        xs: Sequence[float] = [
            float(conf[edges == b].mean()) for b in range(bins) if (edges == b).any()
        ]
        ys = [float(right[edges == b].mean()) for b in range(bins) if (edges == b).any()]
        ax.plot(xs, ys, marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    ax.set_xlabel("confidence")
    ax.set_ylabel("share of answers right")
    ax.set_title("Identification reliability (leave-one-out)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def calibrate(model: CarEmbeddingModel, classes: CarDataset) -> Calibration:
    """The identification vote's settings and confidence maps, fitted leave-one-out on the
    held-out training classes with the model that never trained on them."""
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="carsearch-onnx-") as onnx_dir:
        # ONNX Runtime on the CPU (3-4x eager PyTorch there), PyTorch on a GPU.
        embedder = Embedder(
            model, device=device, engine="auto", onnx_dir=Path(onnx_dir), int8=False
        )
        vectors, kept, _ = embedder.embed_all([r.path for r in classes.records])
    records = [classes.records[i] for i in kept]
    labels = Labels(
        [r.class_name for r in records],
        [r.make for r in records],
        [r.model for r in records],
        [r.year for r in records],
    )
    calibration = fit_calibration(
        vectors,
        labels,
        f"{len(set(labels.classes))} held-out training classes, {len(records)} photos",
    )
    logger.info(
        "identification: k %d, temperature %.2f (make: k %d, temperature %.2f), fitted on %s",
        calibration.k,
        calibration.temperature,
        calibration.make_k,
        calibration.make_temperature,
        calibration.fitted_on,
    )
    return calibration
