"""How good "what car is this?" is on a pool of photos, in three conditions:

- *closed*: every query's car model is in the gallery (leave-one-out), answered at prior 0 (a
  service that knows its gallery holds every model);
- *open*: each class's photos against the gallery without that class, at the prior;
- *mixed*: closed and open answers at the prior, weighed ``1 - prior`` and ``prior``.

Per level (make, model of any year, exact make + model + year): top-1, the expected
calibration error of the confidences, and in the mixed condition the AUROC and calibration
error of ``absent``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from carembed.calibration import DEFAULT_ABSENT_PRIOR, LEVELS, Calibration
from training.identification import Outcomes, Trials

NAMES = {"make": "make", "model": "make_model", "exact": "make_model_year"}


def expected_calibration_error(
    confidence: np.ndarray, right: np.ndarray, bins: int = 10, weights: np.ndarray | None = None
) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| x the bin's share
    of the answers (of their weights when given)."""
    conf, hit = np.asarray(confidence, np.float64), np.asarray(right, np.float64)
    w = np.ones_like(conf) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    edges = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = edges == b
        if mask.any():
            share = w[mask].sum()
            accuracy = (hit[mask] * w[mask]).sum() / share
            mean = (conf[mask] * w[mask]).sum() / share
            total += abs(accuracy - mean) * share
    return float(total)


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


def _closed(outcomes: Outcomes, calibration: Calibration) -> dict[str, Any]:
    report: dict[str, Any] = {
        "k": calibration.k,
        "temperature": calibration.temperature,
        "make_k": calibration.make_k,
        "make_temperature": calibration.make_temperature,
        "per_answer": calibration.per_answer,
        "calibrated": calibration.fitted,
        "absent_calibrated": calibration.absent is not None,
    }
    for level in LEVELS:
        name = NAMES[level]
        report[f"top1_{name}"] = float(outcomes.right[level].mean())
        report[f"ece_{name}"] = expected_calibration_error(
            outcomes.confidence[level], outcomes.right[level]
        )
    report["top3_make_model_year"] = float(outcomes.top3.mean())
    report["contradictions"] = outcomes.contradictions
    report["coverage_at_95"] = coverage_at_precision(
        outcomes.confidence["exact"], outcomes.right["exact"]
    )
    return report


def _open(outcomes: Outcomes) -> dict[str, Any]:
    exact = outcomes.confidence["exact"]
    year_only = ~outcomes.absent["model"]  # another year of the model is in the gallery
    return {
        "queries": len(exact),
        "exact_at_50": float((exact >= 0.5).mean()),
        "exact_at_90": float((exact >= 0.9).mean()),
        "exact_median_confidence": float(np.median(exact)),
        "year_absent_queries": int(year_only.sum()),
        "top1_make_model_year_absent": (
            float(outcomes.right["model"][year_only].mean()) if year_only.any() else None
        ),
        "top1_make": float(outcomes.right["make"].mean()),
    }


def _mixed(closed: Outcomes, open_: Outcomes, prior: float) -> dict[str, Any]:
    n, m = len(closed.found), len(open_.found)
    weights = np.concatenate([np.full(n, (1 - prior) / n), np.full(m, prior / m)])
    report: dict[str, Any] = {"prior": prior}
    for level in LEVELS:
        right = np.concatenate([closed.right[level], open_.right[level]])
        confidence = np.concatenate([closed.confidence[level], open_.confidence[level]])
        report[f"ece_{level}"] = expected_calibration_error(confidence, right, weights=weights)
        truth = np.concatenate([closed.absent[level], open_.absent[level]])
        probability = np.concatenate(
            [closed.absent_probability[level], open_.absent_probability[level]]
        )
        usable = truth.any() and not truth.all() and not np.isnan(probability).any()
        report[f"absent_auroc_{level}"] = (
            float(roc_auc_score(truth, probability, sample_weight=weights)) if usable else None
        )
        report[f"absent_ece_{level}"] = (
            expected_calibration_error(probability, truth, weights=weights)
            if not np.isnan(probability).any()
            else None
        )
    return report


def identification_report(
    trials: Trials, calibration: Calibration, prior: float = DEFAULT_ABSENT_PRIOR
) -> dict[str, Any]:
    """The closed figures, and ``open`` and ``mixed``."""
    closed = trials.outcomes("present", calibration, 0.0)
    report = _closed(closed, calibration)
    open_ = trials.outcomes("class", calibration, prior)
    report["open"] = _open(open_)
    report["mixed"] = _mixed(trials.outcomes("present", calibration, prior), open_, prior)
    return report


def plot_reliability(
    trials: Trials,
    calibration: Calibration,
    path: Path,
    prior: float = DEFAULT_ABSENT_PRIOR,
    bins: int = 10,
) -> None:
    """Accuracy against confidence per bin, closed and mixed (the diagonal is perfect)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = trials.outcomes("present", calibration, 0.0)
    mixed_closed = trials.outcomes("present", calibration, prior)
    open_ = trials.outcomes("class", calibration, prior)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, title, parts in (
        (axes[0], "closed (prior 0)", [closed]),
        (axes[1], f"mixed (prior {prior:g})", [mixed_closed, open_]),
    ):
        shares = [1.0 - prior, prior] if len(parts) == 2 else [1.0]
        for level in LEVELS:
            conf = np.concatenate([p.confidence[level] for p in parts])
            right = np.concatenate([p.right[level] for p in parts]).astype(float)
            w = np.concatenate(
                [
                    np.full(len(p.found), s / len(p.found))
                    for p, s in zip(parts, shares, strict=True)
                ]
            )
            edges = np.minimum((conf * bins).astype(int), bins - 1)
            present = [b for b in range(bins) if (edges == b).any()]
            xs: Sequence[float] = [
                float(np.average(conf[edges == b], weights=w[edges == b])) for b in present
            ]
            ys = [float(np.average(right[edges == b], weights=w[edges == b])) for b in present]
            ax.plot(xs, ys, marker="o", label=level)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
        ax.set_xlabel("confidence")
        ax.set_ylabel("share of answers right")
        ax.set_title(f"Identification reliability, {title}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
