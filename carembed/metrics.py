"""Exact retrieval metrics: every item a query against all others, itself excluded.

R-Precision, MAP@R (Musgrave et al., "A Metric Learning Reality Check") and Recall@k
(a hit if any of the top k shares the query's class). Queries whose class has no other member
are left out, as pytorch-metric-learning does. Similarities are computed in chunks of queries,
so 20k embeddings need a few hundred MB, not N x N.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (1, 2, 4, 8)


def _ranked_neighbours(scores: np.ndarray, depth: int) -> np.ndarray:
    """Column indices of the ``depth`` best scores of each row, best first (ties: lower index)."""
    if depth < scores.shape[1]:
        part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
        return np.take_along_axis(part, order, axis=1)
    return np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)


def retrieval_metrics(
    embeddings: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """``r_precision``, ``map_at_r`` and ``recall_at_{k}`` for unit-norm ``embeddings``."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    lab = np.asarray(labels)
    n = len(emb)
    if n != len(lab):
        raise ValueError(f"{n} embeddings but {len(lab)} labels")
    _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1  # R for every query: same-class items other than itself
    queries = np.flatnonzero(relevant > 0)
    if len(queries) == 0:
        raise ValueError("no query has another item of its class: metrics are undefined")
    depth = min(max(int(relevant.max()), max(ks)), n - 1)
    r_precision = np.zeros(len(queries))
    map_at_r = np.zeros(len(queries))
    hits_at = {k: np.zeros(len(queries), dtype=bool) for k in ks}
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size]
        scores = emb[q] @ emb.T
        scores[np.arange(len(q)), q] = -np.inf  # a query is never in its own gallery
        ranked = _ranked_neighbours(scores, depth)
        match = lab[ranked] == lab[q][:, None]  # (B, depth)
        r = relevant[q]
        within_r = np.arange(depth)[None, :] < r[:, None]
        hits_in_r = match & within_r
        r_precision[start : start + len(q)] = hits_in_r.sum(1) / r
        precision_at_i = np.cumsum(match, axis=1) / np.arange(1, depth + 1)[None, :]
        map_at_r[start : start + len(q)] = (precision_at_i * hits_in_r).sum(1) / r
        for k in ks:
            hits_at[k][start : start + len(q)] = match[:, :k].any(1)
    result = {"r_precision": float(r_precision.mean()), "map_at_r": float(map_at_r.mean())}
    result |= {f"recall_at_{k}": float(hits_at[k].mean()) for k in ks}
    return result
