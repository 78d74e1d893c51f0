"""The rollout quality gate, on both engines: its verdicts against an oracle of the scores, the
classes it leaves out, a sample too small to judge, and what a refused or forced build leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carembed.embedder import Embedder
from carembed.metrics import retrieval_metrics
from carembed.model import build_model
from carsearch.cli import main
from carsearch.stored_models import model_list
from indexer.engines.base import NewPoint
from indexer.gate import GatePolicy, GateRefused, judge
from indexer.index import CarIndex
from indexer.payload import CarPayload, point_id
from indexer.rollout_gate import trained_on
from tests.indexer.conftest import make_gallery

CLASSES = [f"Make{c} Model {2000 + c}" for c in range(6)]
PER_CLASS = 50  # 300 photos: more than one read of 256 vectors


def _collection(index: CarIndex, name: str, spread: float, seed: int) -> np.ndarray:
    """300 cars of 6 classes; ``spread``: how far photos stray from their class's centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), 16))
    index.engine.create(name, 16)
    vectors = []
    points = []
    for c, label in enumerate(CLASSES):
        for i in range(PER_CLASS):
            v = centres[c] + spread * rng.normal(size=16)
            v = (v / np.linalg.norm(v)).astype(np.float32)
            vectors.append(v)
            pid = point_id(f"{c:02d}{i:062d}")
            points.append(NewPoint(pid, v, CarPayload(class_name=label, make=f"Make{c}")))
    index.engine.upsert(name, points)
    return np.stack(vectors)


def test_the_gate_scores_both_models_on_the_same_photos_and_refuses_a_worse_one(
    index: CarIndex,
) -> None:
    good = _collection(index, "cars-test__v__a__1", 0.3, 0)
    bad = _collection(index, "cars-test__v__b__1", 3.0, 1)
    labels = [c for c in range(len(CLASSES)) for _ in range(PER_CLASS)]
    oracle = {
        name: retrieval_metrics(v, labels, ks=(1,))["r_precision"]
        for name, v in (("good", good), ("bad", bad))
    }
    policy = GatePolicy()
    untrained = trained_on()
    worse = judge(index.engine, "cars-test__v__a__1", "cars-test__v__b__1", untrained, policy)
    assert not worse.passed and (worse.photos, worse.classes) == (300, 6)
    assert worse.live_scores is not None and worse.new_scores is not None
    assert worse.live_scores.r_precision == pytest.approx(oracle["good"], abs=1e-4)
    assert worse.new_scores.r_precision == pytest.approx(oracle["bad"], abs=1e-4)
    better = judge(index.engine, "cars-test__v__b__1", "cars-test__v__a__1", untrained, policy)
    assert better.passed

    first = point_id(f"{1:02d}{0:062d}")  # a photo of the second class that was held out
    config = {"training": {"class_names": CLASSES[:2], "held_out": [first]}}
    small = judge(
        index.engine, "cars-test__v__b__1", "cars-test__v__a__1", trained_on(config), policy
    )
    assert (small.photos, small.classes, small.photos_left_out) == (200, 4, 99)
    assert not small.passed and "too few" in small.reason
    assert small.live_scores is None
    config = {
        "training": {
            "class_names": CLASSES[:1],
            "held_out": [point_id(f"{0:02d}{i:062d}") for i in range(5)],  # 5 of class 0
        }
    }
    held = judge(
        index.engine, "cars-test__v__b__1", "cars-test__v__a__1", trained_on(config), policy
    )
    assert (held.photos, held.classes, held.photos_left_out) == (255, 6, 45)
    assert held.passed and held.live_scores is not None


def test_a_refused_build_keeps_the_alias_and_a_forced_one_is_recorded(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    first = index.build(small_embedder, gallery, progress=False).collection
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    with pytest.raises(GateRefused) as refused:
        index.build(other, gallery, progress=False, gate=GatePolicy())
    assert "too few photos" in str(refused.value) and refused.value.verdict.photos == 9
    assert index.state().live == first
    assert refused.value.verdict.new in index.engine.collections()  # kept for inspection

    forced = index.build(other, gallery, progress=False, gate=GatePolicy(force=True))
    assert index.state().live == forced.collection != first
    status = index.status()
    assert status.live_gate is not None and status.live_gate["forced"] is True
    assert status.live_gate["passed"] is False and status.previous_gate is None
    lines: list[str] = []
    assert model_list(index, lines.append) == 0
    row = next(line for line in lines if line.startswith(other.model_version))
    assert f"{forced.collection} (live) [gate forced]" in row
    again = index.build(small_embedder, gallery, progress=False)  # no gate: goes live
    assert index.state().live == again.collection


@pytest.mark.slow
def test_the_cli_exits_3_when_the_gate_refuses(tmp_path: Path) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    store = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "d")]
    build = ["index", "--gallery", str(gallery), "--workers", "0", *store]
    assert main(build) == 0  # the zero-shot model (the tests' environment)
    model = tmp_path / "other"
    from carembed.artifact import save_model

    save_model(build_model("mobilenet_v2", pooling="gem"), model)
    assert main([*build, "--model", str(model)]) == 3
    assert main([*build, "--model", str(model), "--no-gate"]) == 0
