"""``carsearch index``: build (with the rollout quality gate), status, rollback, snapshot."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from carsearch.options import (
    add_model_args,
    add_qdrant_args,
    emit,
    model_settings,
    open_index,
    store_settings,
)

logger = logging.getLogger("carsearch")

GATE_REFUSED = 3
"""Exit status of a build the quality gate stopped."""


def _index_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    index = open_index(args)
    try:
        status = index.status()
    finally:
        index.close()
    if args.json:
        emit(json.dumps(asdict(status)))
        return 0
    for name, value in asdict(status).items():
        emit(f"{name.replace('_', ' '):20} {'-' if value is None else value}")
    return 0


def _index_rollback(args: argparse.Namespace) -> int:
    index = open_index(args)
    try:
        emit(f"alias {index.alias} -> {index.rollback()}")
    finally:
        index.close()
    return 0


def _index_snapshot(args: argparse.Namespace) -> int:
    index = open_index(args)
    try:
        out = args.out or index.settings.layout.snapshots
        emit(f"snapshot written to {index.snapshot(out)}")
    finally:
        index.close()
    return 0


def _index_build(args: argparse.Namespace) -> int:
    from carembed.artifact import load_or_default
    from indexer import GateRefused, write_skipped

    model = model_settings(args)
    layout = store_settings(args).layout
    embedder = model.embedder(
        load_or_default(model.model_dir, device=model.device),
        batch_size=args.batch_size,
        onnx_dir=layout.onnx,
    )
    index = open_index(args)
    try:
        if args.incremental:
            report = index.update(embedder, args.gallery, num_workers=args.workers)
        else:
            report = index.build(
                embedder,
                args.gallery,
                num_workers=args.workers,
                max_failure_share=args.max_failure_share,
                gate=store_settings(args).gate_policy(),
            )
    except GateRefused as refused:
        for line in refused.verdict.lines():
            emit(line)
        emit(
            f"the alias stays on {refused.verdict.live}; {refused.verdict.new} is kept for "
            "inspection (the next build drops it); --force moves the alias anyway"
        )
        return GATE_REFUSED
    finally:
        index.close()
    if report.skipped:
        listed = args.report or layout.skipped_report
        write_skipped(listed, report.skipped)
        logger.warning("%d files skipped, listed in %s", len(report.skipped), listed)
    emit(
        f"collection {report.collection}: indexed {report.indexed}, unchanged {report.unchanged}, "
        f"deleted {report.deleted}, skipped {len(report.skipped)}, duplicates {report.duplicates}, "
        f"points {report.total_points}, {report.seconds:.1f} s"
    )
    if args.incremental and report.failure_share > args.max_failure_share:
        logger.error("too many files failed: %.1f%%", 100 * report.failure_share)
        return 1
    return 0


def add_parser(commands: Any) -> None:
    index = commands.add_parser(
        "index", help="the car index: build (default), status, rollback, snapshot"
    )
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = index_commands.add_parser(
        "build", help="embed a gallery into a new collection (or --incremental: the live one)"
    )
    build.add_argument(
        "--gallery", type=Path, required=True, help="folder, manifest or Stanford Cars layout"
    )
    build.add_argument(
        "--incremental",
        action="store_true",
        help="update the live collection in place instead of a full build",
    )
    build.add_argument("--workers", type=int, default=1, help="decode/resize processes")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument(
        "--max-failure-share",
        type=float,
        default=0.05,
        help="exit non-zero when more than this share of files fails",
    )
    build.add_argument(
        "--report",
        type=Path,
        default=None,
        help="JSON lines of skipped files (path, reason); default: in the data folder",
    )
    add_model_args(build)
    add_qdrant_args(build)
    build.set_defaults(handler=_index_build)
    status = index_commands.add_parser(
        "status", help="live and previous collection, model, points, engine"
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    add_qdrant_args(status)
    status.set_defaults(handler=_index_status)
    back = index_commands.add_parser(
        "rollback", help="swap the alias back to the previous collection"
    )
    add_qdrant_args(back)
    back.set_defaults(handler=_index_rollback)
    snap = index_commands.add_parser(
        "snapshot", help="snapshot the live collection on the server and download it"
    )
    snap.add_argument(
        "--out", type=Path, default=None, help="folder for the downloaded file (default: data)"
    )
    add_qdrant_args(snap)
    snap.set_defaults(handler=_index_snapshot)
