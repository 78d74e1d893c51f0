"""Measuring and calibrating "what car is this?" (the votes in ``carembed.identify``).

Every query photo is identified against the others (itself left out): with its car model in
the gallery (*closed*), with its class, make + model or make left out (*open*). ``fit_calibration``
chooses the votes' settings by their closed top-1, fits each level's share -> right map on the
closed answers (isotonic: scipy's pool adjacent violators) and each level's absence on both
(scikit-learn's logistic regression, present and absent weighed equally), all on held-out
training classes; ``identification_report`` scores a calibration closed, open and mixed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
from scipy.optimize import isotonic_regression
from sklearn.linear_model import LogisticRegression

from carembed.artifact import load_model, read_config, save_model
from carembed.calibration import (
    DENSITY_FETCH,
    EVIDENCE,
    LEVELS,
    AbsenceFit,
    Calibration,
    Level,
    Mapping,
)
from carembed.datasets import CarDataset, CarRecord, DatasetError, read_dataset
from carembed.embedder import Embedder
from carembed.identify import Identification, Neighbour, identify
from carembed.model import CarEmbeddingModel
from training.open_set import CONDITIONS, Condition, Labels, Pool

K_CHOICES = (5, 10, 20)
MAKE_K_CHOICES = (5, 10, 20)
TEMPERATURE_CHOICES = (0.02, 0.05, 0.1, 1.0)
PER_ANSWER_CHOICES: tuple[int | None, ...] = (None, 3)
DENSITY_WEIGHT_CHOICES = (0.0, 0.5, 1.0)
DEPTH = max(*K_CHOICES, *MAKE_K_CHOICES, DENSITY_FETCH)
SHARE = EVIDENCE.index("share")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcomes:
    """Each query's identification in one condition, whether each level is right, whether
    the gallery lacks each level's answer, and each level's evidence and confidence."""

    found: list[Identification]
    right: dict[Level, np.ndarray]
    absent: dict[Level, np.ndarray]
    evidence: dict[Level, np.ndarray]  # (queries, len(EVIDENCE))
    confidence: dict[Level, np.ndarray]
    absent_probability: dict[Level, np.ndarray]  # nan where the calibration has no fit
    top3: np.ndarray  # the exact model among the first three candidates
    contradictions: int


class Trials:
    """One pool's neighbours and absences per condition, read once, identified under any
    calibration."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._neighbours: dict[Condition, list[list[Neighbour]]] = {}
        self._absent: dict[Condition, dict[Level, np.ndarray]] = {}

    def neighbours(self, condition: Condition) -> list[list[Neighbour]]:
        """Each query's nearest photos (``DEPTH`` of them) in ``condition``."""
        if condition not in self._neighbours:
            self._neighbours[condition] = self.pool.neighbours(condition, DEPTH)
        return self._neighbours[condition]

    def absent(self, condition: Condition) -> dict[Level, np.ndarray]:
        """Per level, whether each query's answer is missing in ``condition``."""
        if condition not in self._absent:
            self._absent[condition] = self.pool.absent(condition)
        return self._absent[condition]

    def outcomes(self, condition: Condition, calibration: Calibration, prior: float) -> Outcomes:
        labels, queries = self.pool.labels, self.pool.queries
        found = [identify([n], calibration, prior) for n in self.neighbours(condition)]
        rights = [labels.right(int(q), f) for q, f in zip(queries, found, strict=True)]
        right = {level: np.array([r[level] for r in rights]) for level in LEVELS}
        top3 = np.array(
            [
                labels.classes[int(q)] in [c.class_name for c in f.candidates[:3]]
                for q, f in zip(queries, found, strict=True)
            ]
        )
        contradictions = sum(
            1 for f in found if f.candidates and f.make and f.candidates[0].make != f.make
        )
        return Outcomes(
            found,
            right,
            self.absent(condition),
            {lv: np.array([f.levels[lv].evidence for f in found]) for lv in LEVELS},
            {lv: np.array([f.levels[lv].confidence for f in found]) for lv in LEVELS},
            {
                lv: np.array([np.nan if (a := f.levels[lv].absent) is None else a for f in found])
                for lv in LEVELS
            },
            top3,
            contradictions,
        )


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


def fit_absence(evidence: np.ndarray, absent: np.ndarray) -> AbsenceFit:
    """Logistic regression of absence on the evidence, both outcomes weighed equally (its
    log-odds are then a likelihood ratio, to which a prior's log-odds are added)."""
    if absent.all() or not absent.any():
        raise ValueError("the absence fit needs both present and absent answers")
    fit = LogisticRegression(class_weight="balanced", C=10.0, max_iter=1000)
    fit.fit(evidence, absent.astype(int))
    return AbsenceFit(weights=[float(w) for w in fit.coef_[0]], intercept=float(fit.intercept_[0]))


def _choose_vote(trials: Trials) -> Calibration:
    """The votes' settings with the best closed top-1: the exact model's (density weight,
    neighbours per answer, k, temperature), then the make's (its k and temperature)."""
    best: tuple[float, Calibration] = (-1.0, Calibration())
    for weight, per_answer, k, temperature in product(
        DENSITY_WEIGHT_CHOICES, PER_ANSWER_CHOICES, K_CHOICES, TEMPERATURE_CHOICES
    ):
        trial = Calibration(
            k=k, temperature=temperature, make_k=k, per_answer=per_answer, density_weight=weight
        )
        exact = float(trials.outcomes("present", trial, 0.0).right["exact"].mean())
        # Ties go to the earlier, simpler settings (searches can reuse their hits).
        if exact > best[0]:
            best = (exact, trial)
    best_make: tuple[float, Calibration] = (-1.0, best[1])
    for make_k in MAKE_K_CHOICES:
        for temperature in TEMPERATURE_CHOICES:
            trial = best[1].model_copy(update={"make_k": make_k, "make_temperature": temperature})
            make = float(trials.outcomes("present", trial, 0.0).right["make"].mean())
            if make > best_make[0]:
                best_make = (make, trial)
    return best_make[1]


def fit_calibration(pool: Pool, fitted_on: str) -> Calibration:
    """The votes' settings, each level's share -> right map (closed) and absence fit (closed
    against the three open conditions), all on ``pool`` (training classes)."""
    trials = Trials(pool)
    chosen = _choose_vote(trials)
    closed = trials.outcomes("present", chosen, 0.0)
    every = [trials.outcomes(condition, chosen, 0.0) for condition in CONDITIONS]
    absent = {
        level: fit_absence(
            np.concatenate([o.evidence[level] for o in every]),
            np.concatenate([o.absent[level] for o in every]),
        )
        for level in LEVELS
    }
    return chosen.model_copy(
        update={
            "model": fit_isotonic(closed.evidence["exact"][:, SHARE], closed.right["exact"]),
            "model_level": fit_isotonic(closed.evidence["model"][:, SHARE], closed.right["model"]),
            "make": fit_isotonic(closed.evidence["make"][:, SHARE], closed.right["make"]),
            "absent": absent,
            "fitted": True,
            "fitted_on": fitted_on,
        }
    )


def calibrate(model: CarEmbeddingModel, classes: CarDataset) -> Calibration:
    """The identification's calibration, fitted on the photos of ``classes`` (classes the model
    never trained on: held-out training classes), each asked about against the others."""
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="carsearch-onnx-") as onnx_dir:
        # ONNX Runtime on the CPU (3-4x eager PyTorch there), PyTorch on a GPU.
        embedder = Embedder(
            model, device=device, engine="auto", onnx_dir=Path(onnx_dir), int8=False
        )
        vectors, kept, _ = embedder.embed_all([r.path for r in classes.records])
    pool = pool_of(vectors, [classes.records[i] for i in kept], set(classes.class_names))
    calibration = fit_calibration(
        pool,
        f"{len(classes.class_names)} classes the model never trained on, {len(kept)} photos",
    )
    logger.info(
        "identification: k %d, temperature %.2f, per answer %s, density weight %.1f (make: k "
        "%d, temperature %.2f), fitted on %s",
        calibration.k,
        calibration.temperature,
        calibration.per_answer,
        calibration.density_weight,
        calibration.make_k,
        calibration.make_temperature,
        calibration.fitted_on,
    )
    return calibration


def pool_of(vectors: np.ndarray, records: Sequence[CarRecord], asked: set[str]) -> Pool:
    """A pool of these photos whose queries are those of the ``asked`` classes."""
    labels = Labels(
        [r.class_name for r in records],
        [r.make for r in records],
        [r.model for r in records],
        [r.year for r in records],
    )
    queries = np.array([i for i, r in enumerate(records) if r.class_name in asked], dtype=np.int64)
    return Pool(vectors, labels, queries)


def recalibrate(model_dir: Path, data: Path, split: str | None = None) -> Calibration:
    """Refit a model folder's calibration without training, on the photos (of ``split``, else
    all) whose classes it never trained on."""
    model = load_model(model_dir, device="cpu")
    dataset = read_dataset(data)
    part = dataset.split(split) if split is not None else dataset
    asked = part.without_classes(model.config.training.get("class_names", []))
    if len(asked.class_names) < 2:
        raise DatasetError(
            f"{model_dir} trained on all but {len(asked.class_names)} of the classes of {data}"
            + (f" ({split!r})" if split else "")
            + ": calibrating needs photos of at least 2 classes it never saw"
        )
    calibration = calibrate(model, asked)
    training = {**model.config.training, "identification": calibration.model_dump(mode="json")}
    model.update_config(training=training)
    save_model(model, model_dir)
    return calibration


def copy_calibration(model_dir: Path, selection_dir: Path) -> Calibration:
    """Give a refitted model its selection model's calibration, as ``carsearch train`` does:
    the selection model is the same recipe, data and seed trained without the refit, so it never
    saw the classes it was calibrated on."""
    model = load_model(model_dir, device="cpu")
    selection = read_config(selection_dir).training
    mine = model.config.training
    same = ("dataset_fingerprint", "recipe", "seed")
    if selection.get("refit") or any(selection.get(k) != mine.get(k) for k in same):
        raise DatasetError(
            f"{selection_dir} is not the selection model of {model_dir}: it must be trained on "
            f"the same data with the same recipe and seed, without the refit ({', '.join(same)})"
        )
    calibration = Calibration.model_validate(selection["identification"])
    model.update_config(training={**mine, "identification": calibration.model_dump(mode="json")})
    save_model(model, model_dir)
    return calibration
