"""Engine-neutral filters, queries and search settings as qdrant-client request models."""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_client import models

from indexer.engines.base import Query, Recommend
from indexer.fields import Condition, Match, MatchAny
from indexer.payload import CarFilter
from indexer.settings import StoreSettings


def condition(c: Condition) -> Any:
    if isinstance(c, Match):
        return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
    if isinstance(c, MatchAny):
        return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.values)))
    span = models.Range(gte=c.gte, lte=c.lte, gt=c.gt, lt=c.lt)
    return models.FieldCondition(key=c.key, range=span)


def filter_of(where: CarFilter) -> Any:
    if where.empty:
        return None
    must: list[Any] = [condition(c) for c in where.conditions()]
    must_not: list[Any] = (
        [models.HasIdCondition(has_id=sorted(where.exclude_ids))] if where.exclude_ids else []
    )
    must_not += [condition(c) for c in where.exclusions()]
    return models.Filter(must=must or None, must_not=must_not or None)


def query_of(vector: Query) -> Any:
    if isinstance(vector, Recommend):
        return models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[np.asarray(v, np.float32).tolist() for v in vector.positives],
                negative=[np.asarray(v, np.float32).tolist() for v in vector.negatives],
                strategy=models.RecommendStrategy.BEST_SCORE,
            )
        )
    return np.asarray(vector, np.float32).tolist()


def search_params(settings: StoreSettings, beam: int | None = None) -> Any:
    hnsw_ef, quantization = settings.search_tuning(beam)
    if hnsw_ef is None and quantization is None:
        return None
    options = models.QuantizationSearchParams(**quantization) if quantization else None
    return models.SearchParams(hnsw_ef=hnsw_ef, quantization=options)
