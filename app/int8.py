"""The zero-shot model's int8 graph, checked on first start.

A trained model (the shipped one included) brings its int8 verdict in its folder, from
``carsearch train`` or ``carsearch model quantize``; the zero-shot model (``--model zero-shot``:
no folder) has none. When the service runs it on the CPU with ``--engine auto`` and a gallery whose
photos are labelled by class, it runs the int8 check once, after the gallery is indexed, on
those photos: a graph that passes is cached in ``<data dir>/onnx``; int8 vectors are another
embedding version, so the gallery is indexed again with it (the float32 collection answers
meanwhile) and the service switches when that collection goes live (and runs int8 from then on
at every start); a graph that fails leaves its figures there, so the check is not run again for
this model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Sequence

from app.gallery_indexing import prepare_index
from app.registry import make_embedder
from app.services import Services, in_daemon_thread
from carembed.datasets import CarRecord, read_dataset
from carembed.int8_files import int8_graph_path, rejection_path
from carembed.quantize import check_int8

logger = logging.getLogger(__name__)

CHECK_CLASSES = 40
CHECK_PER_CLASS = 20


def check_photos(records: Sequence[CarRecord]) -> tuple[list[CarRecord], list[CarRecord]]:
    """(scored, calibration): up to ``CHECK_PER_CLASS`` photos of each of up to ``CHECK_CLASSES``
    classes with two or more photos, and the other photos (or the scored ones when there are
    none) to calibrate on. No scored photos: fewer than two such classes."""
    by_class: dict[str, list[CarRecord]] = defaultdict(list)
    for record in records:
        by_class[record.class_name].append(record)
    usable = [name for name in sorted(by_class) if len(by_class[name]) >= 2][:CHECK_CLASSES]
    if len(usable) < 2:
        return [], []
    scored = [r for name in usable for r in by_class[name][:CHECK_PER_CLASS]]
    chosen = {r.path for r in scored}
    return scored, [r for r in records if r.path not in chosen] or scored


async def adopt_int8(
    services: Services, after: asyncio.Future[None], stop: threading.Event
) -> None:
    """Once ``after`` (the start-up gallery run) is done: the int8 check for the zero-shot
    model, and the switch to its int8 graph when it passes (``stop``: the service is shutting
    down)."""
    with contextlib.suppress(Exception):  # a failed gallery run is reported where it failed
        await asyncio.shield(after)  # cancelling this task leaves the gallery run alone
    try:
        await _check(services, stop)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("the int8 check failed: the float32 graph serves")


async def _check(services: Services, stop: threading.Event) -> None:
    settings, serving = services.settings, services.model
    embedder = serving.embedder
    if not (
        settings.int8
        and settings.engine == "auto"
        and embedder.backend == "onnx"  # the float32 graph on the CPU
        and embedder.model.source_dir is None  # the zero-shot model: no folder
        and settings.gallery is not None
    ):
        return
    onnx_dir = settings.layout.onnx
    if rejection_path(int8_graph_path(embedder.model, onnx_dir)).is_file():
        return  # checked before: it did not pass
    loop = asyncio.get_running_loop()
    records = await in_daemon_thread(loop, read_dataset, settings.gallery)
    scored, calibration = check_photos(records.records)
    if not scored:
        logger.info("int8 check not run: the gallery has fewer than two labelled classes")
        return
    report = await in_daemon_thread(
        loop,
        check_int8,
        embedder.model,
        onnx_dir,
        scored,
        calibration,
        f"{len({r.class_name for r in scored})} gallery classes ({len(scored)} photos)",
    )
    if not report.kept:
        return
    int8 = await in_daemon_thread(loop, make_embedder, settings, embedder.model)
    registry = services.registry
    if registry.serving is not serving or registry.configured is not embedder:
        return  # another model serves by now; the graph is cached for the next start
    registry.configured = int8
    # A full build of int8 vectors, judged by the int8 check above rather than the rollout gate.
    await in_daemon_thread(loop, prepare_index, services, stop, False)
    state = await services.on_store(settings.store_deadline_s, services.index.state)
    if (
        state.live is not None
        and state.live_version == int8.version
        and registry.serving is serving
    ):
        await registry.adopt(registry.serve(int8), state.live, services.on_store)
