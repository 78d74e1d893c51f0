"""Retrieval metrics against hand-computed cases and a naive loop."""

from __future__ import annotations

import numpy as np
import pytest

from carembed.metrics import retrieval_metrics


def naive(embeddings: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    rp, mapr, rec = [], [], {k: [] for k in ks}
    for q in range(len(labels)):
        others = [i for i in range(len(labels)) if i != q]
        r = sum(labels[i] == labels[q] for i in others)
        if r == 0:
            continue
        ranked = sorted(others, key=lambda i: (-float(embeddings[q] @ embeddings[i]), i))
        rel = [labels[i] == labels[q] for i in ranked]
        rp.append(sum(rel[:r]) / r)
        ap, hits = 0.0, 0
        for pos in range(r):
            if rel[pos]:
                hits += 1
                ap += hits / (pos + 1)
        mapr.append(ap / r)
        for k in ks:
            rec[k].append(any(rel[:k]))
    out = {"r_precision": float(np.mean(rp)), "map_at_r": float(np.mean(mapr))}
    return out | {f"recall_at_{k}": float(np.mean(rec[k])) for k in ks}


def test_hand_made_case() -> None:
    # Points on a circle: cosine falls with the angle between them, so ranks are read off angles.
    angles = np.array([0.0, 0.1, 0.5, 1.05, 1.1, 3.0])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 0, 1, 2])  # item 5 is alone in its class: not a query
    # q0: 1 T, 2 F, 3 T      R=2: RP 1/2, AP 1/2, hit@1, hit@2
    # q1: 0 T, 2 F           R=2: RP 1/2, AP 1/2, hit@1, hit@2
    # q2: 1 F, 0 F, 3 F, 4 T R=1: RP 0,   AP 0,   miss@1, miss@2
    # q3: 4 F, 2 F, 1 T      R=2: RP 0,   AP 0,   miss@1, miss@2
    # q4: 3 F, 2 T           R=1: RP 0,   AP 0,   miss@1, hit@2
    m = retrieval_metrics(emb, labels, ks=(1, 2))
    assert m == pytest.approx(
        {"r_precision": 0.2, "map_at_r": 0.2, "recall_at_1": 0.4, "recall_at_2": 0.6}
    )


def test_perfect_and_worst_separation() -> None:
    emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    perfect = retrieval_metrics(emb, [0, 0, 1, 1], ks=(1,))
    assert perfect == {"r_precision": 1.0, "map_at_r": 1.0, "recall_at_1": 1.0}
    worst = retrieval_metrics(emb, [0, 1, 0, 1], ks=(1, 2, 3))
    assert worst["r_precision"] == 0.0 and worst["recall_at_1"] == 0.0
    # Ties rank the lower index first: queries 0 and 2 find their match second, 1 and 3 third.
    assert worst["recall_at_2"] == 0.5 and worst["recall_at_3"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_the_naive_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 90))
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, 7, n)
    got = retrieval_metrics(emb, labels, ks=(1, 2, 4, 8), chunk_size=7)
    assert got == pytest.approx(naive(emb, labels, (1, 2, 4, 8)), abs=1e-6)


def test_query_is_never_its_own_neighbour() -> None:
    emb = np.eye(4, dtype=np.float32)
    m = retrieval_metrics(emb, [0, 0, 1, 1], ks=(1,))
    # Every other item scores 0: with self included, recall@1 would be 1.0.
    assert m["recall_at_1"] < 1.0


def test_no_valid_query_is_an_error() -> None:
    with pytest.raises(ValueError, match="undefined"):
        retrieval_metrics(np.eye(3, dtype=np.float32), [0, 1, 2])
