"""``carsearch evaluate``: exact retrieval metrics of a model on one split, the identification
closed, open and mixed (``training.identification_report``), a JSON report and pictures
(Recall@k curves against the zero-shot model, example queries with their top 5, the
identification reliability diagrams)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from carembed.artifact import ZERO_SHOT, is_zero_shot, load_or_default
from carembed.calibration import DEFAULT_ABSENT_PRIOR, Calibration, calibration_of
from carembed.choices import EngineChoice
from carembed.datasets import CarDataset, read_dataset
from carembed.embedder import Embedder
from carembed.metrics import retrieval_metrics
from training.data import class_disjoint_split
from training.identification import Trials, pool_of
from training.identification_report import identification_report, plot_reliability

logger = logging.getLogger(__name__)

CURVE_KS = (1, 2, 4, 8, 16, 32)


def _split(data: Path, split: str) -> CarDataset:
    dataset = read_dataset(data)
    if any(r.split for r in dataset.records):
        part = dataset.split(split)
        if not part.records:
            raise ValueError(f"{data} has no images in the split {split!r}")
        return part
    return class_disjoint_split(dataset)[1]


def _embed(
    model_dir: Path | None,
    paths: list[Path],
    workers: int,
    device: str,
    engine: EngineChoice,
    int8: bool,
) -> tuple[np.ndarray, list[int], Embedder, Calibration]:
    model = load_or_default(model_dir, device=device)
    embedder = Embedder(model, device=device, engine=engine, int8=int8)
    vectors, kept, _ = embedder.embed_all(paths, num_workers=workers, progress="embedding")
    return vectors, kept, embedder, calibration_of(model.config)


def evaluate(
    model_dir: Path | None,
    data: Path,
    split: str,
    out: Path,
    *,
    compare_zero_shot: bool = True,
    workers: int = 1,
    device: str = "cpu",
    examples: int = 6,
    engine: EngineChoice = "torch",
    int8: bool = True,
    absent_prior: float = DEFAULT_ABSENT_PRIOR,
) -> dict[str, Any]:
    part = _split(data, split)
    paths = [r.path for r in part.records]
    vectors, kept, embedder, calibration = _embed(model_dir, paths, workers, device, engine, int8)
    records = [part.records[i] for i in kept]
    names = [r.class_name for r in records]
    _, labels = np.unique(names, return_inverse=True)
    metrics = retrieval_metrics(vectors, labels, ks=CURVE_KS)
    seen = sorted(set(names) & set(embedder.model.config.training.get("class_names", [])))
    if seen:
        logger.warning(
            "the model trained on %d of the %d classes evaluated here (%s, ...): these figures "
            "do not measure car models it never saw",
            len(seen),
            len(set(names)),
            seen[0],
        )
    report: dict[str, Any] = {
        **metrics,
        "model_version": embedder.version,
        "engine": embedder.backend,
        "test_time_flip": embedder.model.config.test_time_flip,
        "model_dir": str(model_dir) if model_dir else None,
        "split": split,
        "images": len(kept),
        "classes": len(set(names)),
        "classes_trained_on": len(seen),
        "skipped": len(paths) - len(kept),
    }
    trials = Trials(pool_of(vectors, records, set(names)))  # read once, for the report and plot
    report["identification"] = identification_report(trials, calibration, absent_prior)
    zero_shot_model = is_zero_shot(model_dir)
    curves = {"zero-shot" if zero_shot_model else "tuned": metrics}
    if compare_zero_shot and not zero_shot_model:
        zs_vectors, zs_kept, zero_shot, _ = _embed(
            Path(ZERO_SHOT), paths, workers, device, engine, int8
        )
        zs_labels = np.unique([part.records[i].class_name for i in zs_kept], return_inverse=True)[1]
        report["zero_shot"] = {
            **retrieval_metrics(zs_vectors, zs_labels, ks=CURVE_KS),
            "model_version": zero_shot.version,
            "engine": zero_shot.backend,
        }
        curves["zero-shot"] = report["zero_shot"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot_curves(curves, out / "recall_at_k.png")
    plot_reliability(trials, calibration, out / "identification.png", absent_prior)
    _plot_examples(
        vectors, labels, [part.records[i].path for i in kept], names, out / "examples.png", examples
    )
    return report


def _plot_curves(curves: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in curves.items():
        ax.plot(
            CURVE_KS,
            [m[f"recall_at_{k}"] for k in CURVE_KS],
            marker="o",
            label=f"{name} (R-Precision {m['r_precision']:.3f})",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(CURVE_KS, [str(k) for k in CURVE_KS])
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_examples(
    vectors: np.ndarray,
    labels: np.ndarray,
    paths: list[Path],
    names: list[str],
    path: Path,
    count: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carembed.images import load_image

    rng = np.random.default_rng(0)
    queries = rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)
    fig, axes = plt.subplots(len(queries), 6, figsize=(13, 2.1 * len(queries)), squeeze=False)
    for row, q in enumerate(queries):
        scores = vectors @ vectors[q]
        scores[q] = -np.inf
        top = np.argsort(-scores)[:5]
        for col, idx in enumerate([q, *top]):
            ax = axes[row, col]
            ax.imshow(load_image(paths[idx]).resize((160, 100)))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_title(f"query: {names[idx][:28]}", fontsize=7)
                colour = "black"
            else:
                right = labels[idx] == labels[q]
                colour = "green" if right else "red"
                ax.set_title(
                    f"{scores[idx]:.3f} {'right' if right else 'wrong'}", fontsize=7, color=colour
                )
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(3 if col else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
