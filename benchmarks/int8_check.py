"""The int8 quality gate of trained models, as ``carsearch train`` runs it at export: each model
is quantized (calibrated on its fit classes) and scored against its float32 graph on the
held-out training classes it chose its epochs on (re-derived from the seed and split its
``config.json`` records); the graph is kept in the model folder when it passes.

    python benchmarks/int8_check.py ../shared/datasets/stanford-cars-dev MODEL_DIR...
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from carembed.artifact import load_model
from carembed.datasets import read_dataset
from carembed.quantize import check_int8
from training.data import class_disjoint_split, holdout_classes

logger = logging.getLogger("int8_check")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = read_dataset(args.data)
    rows = []
    for folder in args.models:
        model = load_model(folder)
        recorded = model.config.training["hyperparameters"]
        if recorded.get("all_classes"):
            train = dataset
        else:
            train, _ = class_disjoint_split(dataset, recorded["eval_split"], seed=recorded["seed"])
        fit, held_out = holdout_classes(train, recorded["select_fraction"], recorded["seed"])
        with tempfile.TemporaryDirectory() as onnx_dir:
            report = check_int8(
                model,
                Path(onnx_dir),
                held_out.records,
                fit.records,
                f"{len(held_out.class_names)} held-out training classes "
                f"({len(held_out.records)} photos)",
            )
        rows.append((folder, recorded["seed"], report))
    logger.info("")
    logger.info("| model | seed | R-Precision float32 -> int8 (drop) | speed-up 16 / 1 | kept |")
    logger.info("|---|---|---|---|---|")
    for folder, seed, r in rows:
        logger.info(
            "| %s | %d | %.4f -> %.4f (%+.4f) | %.2fx / %.2fx | %s |",
            folder,
            seed,
            r.fp32_r_precision,
            r.int8_r_precision,
            r.drop,
            r.int8_img_s / r.fp32_img_s,
            r.int8_batch1_img_s / r.fp32_batch1_img_s,
            "yes" if r.kept else "no",
        )


if __name__ == "__main__":
    main()
