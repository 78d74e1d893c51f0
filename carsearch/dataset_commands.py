"""The gallery as training data: ``carsearch export-dataset`` writes the index's cars as a
manifest folder, and ``carsearch train --from-index`` trains on what it writes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from carsearch.options import add_qdrant_args, emit, open_index

logger = logging.getLogger("carsearch")


def add_from_index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gallery",
        type=Path,
        default=None,
        help="the gallery folder (default: the one the live collection was built from)",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="share of each class's cars left out of training, for the gate (default 0.1)",
    )
    parser.add_argument("--copy", action="store_true", help="copy the photos (default: links)")


def export(args: argparse.Namespace, out: Path) -> Path:
    """Write the index's cars as a manifest folder at ``out``; returns the manifest."""
    from indexer import export_dataset

    index = open_index(args)
    try:
        report = export_dataset(
            index.served,
            index.fields,
            out,
            gallery=args.gallery,
            holdout=args.holdout,
            copy=args.copy,
        )
    finally:
        index.close()
    emit(
        f"{report.photos} photos of {report.classes} classes ({report.held_out} held out of "
        f"training) written to {report.manifest}"
    )
    if report.small_classes:
        emit(f"left out, fewer than 2 cars: {', '.join(report.small_classes)}")
    if report.unlabelled:
        emit(f"left out, no class name: {report.unlabelled} cars")
    return report.manifest


def _export_dataset(args: argparse.Namespace) -> int:
    export(args, args.out)
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "export-dataset",
        help="the index's cars (gallery and API, as last edited) as a dataset folder",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    add_from_index_args(parser)
    add_qdrant_args(parser)
    parser.set_defaults(handler=_export_dataset)
