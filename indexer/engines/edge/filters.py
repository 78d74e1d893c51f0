"""Engine-neutral filters, queries and search settings as Qdrant Edge request objects
(``qe``: the ``qdrant_edge`` module)."""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.engines.base import Query, Recommend
from indexer.fields import Condition, Match, MatchAny
from indexer.payload import CarFilter
from indexer.settings import StoreSettings


def condition(qe: Any, c: Condition) -> Any:
    if isinstance(c, Match):
        # Edge reads a Python bool as the integer 1 or 0; numpy's bool stays a bool.
        value = np.bool_(c.value) if isinstance(c.value, bool) else c.value
        return qe.FieldCondition(c.key, match=qe.MatchValue(value))
    if isinstance(c, MatchAny):
        return qe.FieldCondition(c.key, match=qe.MatchAny(list(c.values)))
    return qe.FieldCondition(c.key, range=qe.RangeFloat(gte=c.gte, lte=c.lte, gt=c.gt, lt=c.lt))


def filter_of(qe: Any, where: CarFilter) -> Any:
    if where.empty:
        return None
    must = [condition(qe, c) for c in where.conditions()]
    must_not = [qe.HasIdCondition(set(where.exclude_ids))] if where.exclude_ids else []
    must_not += [condition(qe, c) for c in where.exclusions()]
    return qe.Filter(must=must or None, must_not=must_not or None)


def query_of(qe: Any, vector: Query) -> Any:
    if isinstance(vector, Recommend):
        examples = qe.RecommendQuery(
            [np.asarray(v, np.float32).tolist() for v in vector.positives],
            [np.asarray(v, np.float32).tolist() for v in vector.negatives],
        )
        return qe.Query.RecommendBestScore(examples)
    return qe.Query.Nearest(np.asarray(vector, np.float32).tolist())


def search_params(qe: Any, settings: StoreSettings, beam: int | None = None) -> Any:
    hnsw_ef, quantization = settings.search_tuning(beam)
    if hnsw_ef is None and quantization is None:
        return None
    options = qe.QuantizationSearchParams(**quantization) if quantization else None
    return qe.SearchParams(hnsw_ef=hnsw_ef, quantization=options)
