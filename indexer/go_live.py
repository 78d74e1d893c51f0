"""A built collection going live: the alias moves to it and the collections neither alias names
any more are dropped, with no API write running meanwhile (``ServedCollections.switching``):
the collection is brought up to date with the ledger once more first, so that it holds every
write acknowledged before the switch (``indexer.served``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from carembed.embedder import Embedder
from indexer.engines.base import CollectionHeld, Engine
from indexer.reconcile import Reconciled
from indexer.served import ServedCollections
from indexer.versions import AliasState, stale_collections

logger = logging.getLogger(__name__)


def go_live(
    engine: Engine,
    state: AliasState,
    target: str,
    embedder: Embedder,
    served: ServedCollections | None,
    on_moved: Callable[[], None] | None,
) -> tuple[Reconciled, int]:
    """Move ``state``'s alias to ``target`` (written with ``embedder``) and drop the stale
    collections (``on_moved`` runs in between); returns what the last catch-up changed and
    how many points ``target`` went live with."""
    caught_up = Reconciled()
    after = state.promoted(target)
    with served.switching() if served is not None else contextlib.nullcontext():
        if served is not None:
            caught_up = served.join(target, embedder)
        points = engine.count(target)
        engine.hand_over(target)  # from here on, another process (the service) may hold it
        engine.aliases.move(state, after)
        logger.info("alias %s -> %s (previous: %s)", state.alias, target, after.previous)
        if on_moved is not None:
            on_moved()
        _drop_stale(engine, after)
    return caught_up, points


def _drop_stale(engine: Engine, state: AliasState) -> None:
    """Drop this alias's collections that neither alias names (those another process still
    holds are kept, and dropped by a later build)."""
    for name in stale_collections(state.alias, engine.collections(), state):
        try:
            engine.drop(name)
        except CollectionHeld:
            logger.info("old collection %s is still open in another process: kept", name)
        else:
            logger.info("deleted old collection %s", name)
