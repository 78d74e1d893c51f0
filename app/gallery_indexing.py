"""The start-up work on the index: index ``--gallery`` (incremental, or a full build when
another model's collection is live) or, with none, make sure a collection exists for the cars
added through the API. It runs in a worker thread and reports its progress to ``/readyz``."""

from __future__ import annotations

import logging
import threading

from app.services import Services
from indexer import GateRefused, StoreError

logger = logging.getLogger(__name__)


class Stopped(Exception):
    """The service is shutting down: the gallery run stops at its next batch (resumable)."""


def _index_gallery(services: Services, stop: threading.Event, gated: bool) -> str:
    settings, progress = services.settings, services.indexing
    assert settings.gallery is not None
    progress.update(state="running", message="indexing the gallery")

    def on_batch(done: int, total: int) -> None:
        progress.update(done=done, total=total)
        if stop.is_set():
            raise Stopped

    index, embedder = services.index, services.registry.configured
    live_version = index.state().live_version
    if live_version is not None and (live_version != embedder.version or index.live_is_older()):
        # The live model keeps answering until the new collection is complete.
        report = index.build(
            embedder,
            settings.gallery,
            on_batch=on_batch,
            progress=False,
            max_failure_share=1.0,
            gate=settings.gate_policy() if gated else None,
        )
    else:
        index.ensure_live(embedder)
        report = index.update(embedder, settings.gallery, on_batch=on_batch, progress=False)
    return (
        f"indexed {report.indexed}, unchanged {report.unchanged}, updated {report.updated}, "
        f"deleted {report.deleted}, skipped {len(report.skipped)}"
    )


def prepare_index(services: Services, stop: threading.Event, gated: bool = True) -> None:
    """The start-up work on the index, in a worker thread: index ``--gallery`` or, with none,
    make sure an (empty) collection exists for cars added through the API. While the store
    does not answer, it retries every ``store_retry_s`` instead of staying broken until a
    restart; at shutdown it stops at the next batch. ``gated``: a build of another embedding
    version goes live only past the rollout quality gate (the settings' policy)."""
    progress = services.indexing
    while not stop.is_set():
        try:
            if services.settings.gallery is None:
                services.index.ensure_live(services.registry.configured)
                return
            message = _index_gallery(services, stop, gated)
            progress.update(state="done", message=message)
            logger.info("gallery indexed: %s", message)
            return
        except Stopped:
            progress.update(
                state="stopped", message="stopped at shutdown; resumes at the next start"
            )
            return
        except GateRefused as refused:
            logger.error("the new model did not pass the quality gate:\n%s", refused)
            progress.update(state="refused", message=" ".join(refused.verdict.lines()))
            return
        except StoreError as exc:
            logger.warning("the vector store is not usable (%s); retrying", exc)
            progress.update(state="waiting", message="the vector store is not reachable; retrying")
            stop.wait(services.settings.store_retry_s)
        except Exception as exc:
            logger.exception("indexing the gallery failed")
            progress.update(state="failed", message=f"indexing failed: {type(exc).__name__}")
            return
