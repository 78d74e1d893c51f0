"""Retrieval of cars of several photos on ``val`` (car models the model never trained on).

    python benchmarks/car_retrieval.py --model DIR --data PHOTOS [--vectors CACHE.npz]

A "car" is up to 3 photos of one val model (seeded groups). The gallery holds the cars; a car
scores its best photo's cosine over the query's photos (what the service's search does). Each
car is asked for with one of its photos and with all of them, its own photos left out of the
gallery; R-Precision over cars: of the R best other cars (R: the other cars of its model), the
share of its model. For reference, the same over photos (each photo a car of its own). The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from open_set import _vectors

from carembed.datasets import read_dataset

logger = logging.getLogger("car_retrieval")
PER_CAR = 3


def cars_of(classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """Photo -> car: each model's photos in seeded groups of up to ``PER_CAR``."""
    rng = np.random.default_rng(seed)
    cars = np.empty(len(classes), np.int64)
    next_car = 0
    for label in np.unique(classes):
        mine = rng.permutation(np.flatnonzero(classes == label))
        for start in range(0, len(mine), PER_CAR):
            cars[mine[start : start + PER_CAR]] = next_car
            next_car += 1
    return cars


def r_precision(scores: np.ndarray, cars: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Over cars asked with their first photo and with all: ``scores`` photo x photo."""
    n_cars = int(cars.max()) + 1
    car_class = np.empty(n_cars, np.int64)
    car_class[cars] = classes
    one: list[float] = []
    every: list[float] = []
    for car in range(n_cars):
        mine = np.flatnonzero(cars == car)
        relevant = int(np.sum(car_class == car_class[car])) - 1
        if relevant == 0:
            continue
        for asked, found in ((mine[:1], one), (mine, every)):
            best = np.full(n_cars, -np.inf)
            np.maximum.at(best, cars, scores[asked].max(axis=0))
            best[car] = -np.inf
            top = np.argsort(-best)[:relevant]
            found.append(float(np.mean(car_class[top] == car_class[car])))
    return {"one_photo": float(np.mean(one)), "all_photos": float(np.mean(every)), "cars": n_cars}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--vectors", type=Path, default=None, help="cache of the embeddings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records = [r for r in read_dataset(args.data).records if r.split in ("train", "val")]
    vectors = _vectors(args.model, records, args.vectors)
    val = [i for i, r in enumerate(records) if r.split == "val"]
    names = sorted({records[i].class_name for i in val})
    classes = np.array([names.index(records[i].class_name) for i in val])
    scores = vectors[val] @ vectors[val].T
    cars = r_precision(scores, cars_of(classes), classes)
    photos = r_precision(scores, np.arange(len(val)), classes)
    figures = {
        "models": len(names),
        "photos": len(val),
        "cars": cars["cars"],
        "r_precision_cars_one_photo": round(cars["one_photo"], 4),
        "r_precision_cars_all_photos": round(cars["all_photos"], 4),
        "r_precision_photos": round(photos["one_photo"], 4),
    }
    logger.info("%s", figures)
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
