"""``carsearch model list`` and ``carsearch model export``: the models stored with the index
(every build stores the one that made its vectors)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexer import CarIndex

logger = logging.getLogger(__name__)

Opener = Callable[[argparse.Namespace], "CarIndex"]
Emitter = Callable[[str], None]


def _gate(index: CarIndex, collection: str) -> str:
    """The quality gate's verdict that let ``collection`` go live, in short."""
    from indexer import GATE_KEY

    record = index.engine.metadata(collection).get(GATE_KEY)
    if not record:
        return ""
    scores = record.get("new_scores") or {}
    verdict = "passed" if record["passed"] else "forced" if record["forced"] else "refused"
    figure = f" R-P {scores['r_precision']:.4f}" if scores else ""
    return f" [gate {verdict}{figure}]"


def model_list(index: CarIndex, emit: Emitter) -> int:
    """Each stored model: version, when its first collection was made, backbone, flips,
    whether it carries an int8 graph, and the collections of this alias built with it (with the
    quality gate's verdict)."""
    from carembed.artifact import INT8_FILE
    from carembed.identity import parse_embedding_version
    from indexer import parse_collection_name

    state = index.state()
    roles = {state.live: "live", state.previous: "previous"}
    by_version: dict[str, list[str]] = {}
    created: dict[str, str] = {}
    for name in index.engine.collections():
        parsed = parse_collection_name(name)
        if parsed is not None and parsed.alias == index.alias:
            embedding = parse_embedding_version(parsed.embedding_version)
            version = parsed.embedding_version if embedding is None else embedding.model_version
            role = f" ({roles[name]})" if name in roles else ""
            by_version.setdefault(version, []).append(name + role + _gate(index, name))
            stamp = f"{parsed.stamp[:4]}-{parsed.stamp[4:6]}-{parsed.stamp[6:8]}"
            created[version] = min(created.get(version, stamp), stamp)
    emit(f"{'version':42} {'created':10} {'backbone':20} {'flips':5} {'int8':4} collections")
    for version in index.model_copies.versions():
        model = index.model_copies.load(version)
        assert model is not None  # listed: stored whole
        source = model.source_dir
        int8 = "yes" if source is not None and (source / INT8_FILE).is_file() else "no"
        flips = "on" if model.config.test_time_flip else "off"
        used = ", ".join(by_version.get(version, [])) or "-"
        made = created.get(version, "-")
        emit(f"{version:42} {made:10} {model.config.backbone.name:20} {flips:5} {int8:4} {used}")
    return 0


def model_export(index: CarIndex, version: str, out: Path, emit: Emitter) -> int:
    try:
        written = index.model_copies.export(version, out)
    except LookupError as exc:
        logger.error("%s", exc)
        return 2
    emit(f"model {written} written to {out}")
    return 0


def add_parsers(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_store_args: Callable[[argparse.ArgumentParser], None],
    open_index: Opener,
    emit: Emitter,
) -> None:
    def run_list(args: argparse.Namespace) -> int:
        index = open_index(args)
        try:
            return model_list(index, emit)
        finally:
            index.close()

    def run_export(args: argparse.Namespace) -> int:
        index = open_index(args)
        try:
            return model_export(index, args.version, args.out, emit)
        finally:
            index.close()

    listing = commands.add_parser("list", help="the models stored with the index")
    add_store_args(listing)
    listing.set_defaults(handler=run_list)
    export = commands.add_parser("export", help="a stored model as a servable folder")
    export.add_argument("version")
    export.add_argument("--out", type=Path, required=True)
    add_store_args(export)
    export.set_defaults(handler=run_export)
