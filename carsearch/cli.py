"""``carsearch``: one command with subcommands. Each subcommand imports only what it needs,
so ``carsearch serve`` and ``carsearch index`` never load Lightning or ``training``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carsearch import index_commands, reuse_commands, stored_models, train_commands
from carsearch.options import (
    add_model_args,
    add_qdrant_args,
    add_settings,
    emit,
    model_settings,
    onnx_dir,
    open_index,
    settings_of,
)

if TYPE_CHECKING:
    from app.settings import AppSettings

logger = logging.getLogger("carsearch")


def _model_info(args: argparse.Namespace) -> int:
    from carembed.artifact import load_or_default
    from carembed.cpu import cpu_description
    from carembed.identity import Precision, embedding_version
    from carembed.int8_files import int8_check, int8_graph_path

    model = load_or_default(args.dir, device="cpu")
    config = model.config
    pre = config.preprocessing
    emit(f"model version   {model.version()} (what decides the vectors, hashed)")
    emit(f"folder          {model.source_dir or '(zero-shot: no folder)'}")
    emit(
        f"backbone        {config.backbone.name} ({config.backbone.weights_source}, "
        f"sha256 {config.backbone.weights_sha256[:16]}…, pooling {config.backbone.pooling}"
        f"{', weights in artifact' if config.backbone.in_artifact else ''})"
    )
    head = config.head
    emit(
        f"head            {head.kind} {head.in_dim} -> {head.out_dim}"
        f"{f', hidden {head.hidden_dim}' if head.hidden_dim else ''}"
        f"{f', dropout {head.dropout}' if head.dropout else ''}"
    )
    emit(f"embedding dim   {config.embedding_dim}")
    emit(f"preprocessing   {pre.size}x{pre.size} {pre.resize}, mean {pre.mean}, std {pre.std}")
    emit(f"test-time flip  {'on' if config.test_time_flip else 'off'}")
    check = int8_check(int8_graph_path(model, onnx_dir(args.onnx_dir)))
    emit(
        "int8 graph      "
        + (
            f"passed the int8 check on {check.checked_on}: "
            f"{check.int8_img_s / check.fp32_img_s:.2f}x photos/s, R-Precision "
            f"{check.fp32_r_precision:.4f} -> {check.int8_r_precision:.4f}, measured on CPU "
            f"{check.cpu or 'not recorded'}"
            if check is not None
            else "none (float32)"
        )
    )
    emit(f"this CPU        {cpu_description()}")
    precisions: tuple[Precision, ...] = ("float32", "int8") if check is not None else ("float32",)
    versions = ", ".join(embedding_version(model.version(), p) for p in precisions)
    emit(f"vectors         {versions}")
    if config.training:
        metrics = config.training.get("metrics", {})
        emit(f"trained         {config.training.get('recipe', '?')}, metrics {metrics}")
    return 0


def _model_flip(args: argparse.Namespace) -> int:
    from carembed.artifact import load_model, save_model

    model = load_model(args.dir, device="cpu")
    before = model.version()
    model.update_config(test_time_flip=args.state == "on")
    after = save_model(model, args.dir)
    emit(f"test-time flip {args.state}: model {before} -> {after}")
    if after != before:
        emit("the vectors change: rebuild the index with this model (carsearch index build)")
    return 0


def _model_quantize(args: argparse.Namespace) -> int:
    from carembed.backends import MissingGraph
    from carembed.quantize import INT8_MARGIN, quantize_and_check, recheck_int8

    margin = INT8_MARGIN if args.max_drop is None else args.max_drop
    if args.check_only:
        try:
            report = recheck_int8(
                args.dir, args.data, args.split, onnx_dir(args.onnx_dir), max_drop=margin
            )
        except MissingGraph as exc:
            logger.error("%s", exc)
            return 2
    else:
        report = quantize_and_check(
            args.dir, args.data, args.split, onnx_dir(args.onnx_dir), max_drop=margin
        )
    emit(f"{'graph':6} {'img/s':>8} {'R-Precision':>12}")
    emit(f"{'fp32':6} {report.fp32_img_s:8.1f} {report.fp32_r_precision:12.4f}")
    emit(f"{'int8':6} {report.int8_img_s:8.1f} {report.int8_r_precision:12.4f}")
    emit(f"measured on {report.checked_on}, CPU {report.cpu}")
    if args.check_only:
        verdict = (
            f"within the margin {margin} and faster here: int8 can serve on this machine"
            if report.kept
            else "not within the margin or not faster here: serve float32 on this machine "
            "(CARSEARCH_INT8=false)"
        )
    else:
        verdict = (
            "kept: --engine auto runs it (CARSEARCH_INT8=false: float32)"
            if report.kept
            else "not kept"
        )
    emit(
        f"speed-up {report.int8_img_s / report.fp32_img_s:.2f}x at batch 16, "
        f"{report.int8_batch1_img_s / report.fp32_batch1_img_s:.2f}x at batch 1, "
        f"R-Precision drop {report.drop:+.4f}: {verdict}"
    )
    return 0 if report.kept or not args.check_only else 3


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from carembed.artifact import load_or_default
    from carembed.images import ImageError

    model = model_settings(args)
    embedder = model.embedder(
        load_or_default(model.model_dir, device=model.device), onnx_dir=onnx_dir(None)
    )
    try:
        vectors = embedder.embed(args.images)
    except (ImageError, FileNotFoundError) as exc:
        logger.error("cannot embed: %s", exc)
        return 2
    norms = np.linalg.norm(vectors, axis=1)
    emit(f"model version {embedder.version}")
    emit(
        f"{len(vectors)} images, dim {vectors.shape[1]}, "
        f"norms min {norms.min():.6f} max {norms.max():.6f}"
    )
    if len(vectors) < 2:
        return 0
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    emit("image -> nearest other image (cosine)")
    for i, path in enumerate(args.images):
        j = int(np.argmax(scores[i]))
        emit(f"  {path} -> {args.images[j]} ({scores[i, j]:.4f})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.http_limits import serve_options
    from app.main import create_app
    from app.settings import AppSettings

    settings = settings_of(args, AppSettings)
    if args.workers > 1:
        return _serve_workers(args, settings)
    if settings.gallery is not None and not settings.embedded:
        logger.info("--gallery with a Qdrant server: indexing it from this process as well")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=settings.access_log,
        **serve_options(settings),
    )
    return 0


def _flags_given(args: argparse.Namespace) -> set[str]:
    """The settings fields set by a flag (the others are left out of the namespace)."""
    from app.settings import AppSettings

    return {name for name in AppSettings.model_fields if hasattr(args, name)}


def _env_value(value: Any) -> str:
    """A setting's value as ``CARSEARCH_<FIELD>`` spells it."""
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, str | Path):
        return str(value)
    return json.dumps(value)


def _serve_workers(args: argparse.Namespace, settings: AppSettings) -> int:
    """``--workers N``: N processes that share nothing but a Qdrant server (each one loads the
    model and reads its settings from ``CARSEARCH_*``)."""
    import os

    import uvicorn

    if settings.embedded:
        logger.error(
            "--workers %d needs a Qdrant server (--qdrant-url): the embedded store is opened "
            "by one process; on one machine a single process with micro-batching is the "
            "supported setup",
            args.workers,
        )
        return 2
    if settings.gallery is not None:
        logger.error(
            "--workers with --gallery: index the gallery first (carsearch index build "
            "--gallery ... --qdrant-url ...), then start the workers"
        )
        return 2
    for name in _flags_given(args):  # the workers read their settings from the environment
        os.environ[f"CARSEARCH_{name.upper()}"] = _env_value(getattr(settings, name))
    # Each worker's engine gets its share of the cores, not all of them.
    cores = os.cpu_count() or 1
    os.environ.setdefault("CARSEARCH_THREADS", str(max(1, cores // args.workers)))
    from app.http_limits import serve_options

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=settings.access_log,
        **serve_options(settings),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from app.settings import AppSettings

    parser = argparse.ArgumentParser(prog="carsearch", description="Similar-car image search.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    model = commands.add_parser("model", help="inspect a servable model")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    info = model_commands.add_parser("info", help="backbone, head, dim, preprocessing, version")
    info.add_argument(
        "dir",
        type=Path,
        nargs="?",
        default=None,
        help="model folder, or zero-shot (default: the shipped car model)",
    )
    info.add_argument("--onnx-dir", type=Path, default=None, help="default: the data folder's")
    info.set_defaults(handler=_model_info)
    flip = model_commands.add_parser(
        "flip", help="turn test-time flip averaging on or off (a new model version)"
    )
    flip.add_argument("dir", type=Path)
    flip.add_argument("state", choices=("on", "off"))
    flip.set_defaults(handler=_model_flip)
    quantize = model_commands.add_parser(
        "quantize", help="int8 ONNX graph, kept only when faster and as accurate"
    )
    quantize.add_argument("dir", type=Path, nargs="?", default=None)
    quantize.add_argument("--data", type=Path, required=True, help="labelled photos")
    quantize.add_argument("--split", default="val", help="split scored for the quality check")
    quantize.add_argument("--onnx-dir", type=Path, default=None, help="default: the data folder's")
    quantize.add_argument(
        "--max-drop", type=float, default=None, help="R-Precision margin (default: the check's)"
    )
    quantize.add_argument(
        "--check-only",
        action="store_true",
        help="re-score the model's int8 graph against float32 on this machine and say whether "
        "it keeps within --max-drop (exit 0) or not (exit 3); writes nothing",
    )
    quantize.set_defaults(handler=_model_quantize)
    stored_models.add_parsers(model_commands, add_qdrant_args, open_index, emit)
    train_commands.add_model_parsers(model_commands)
    index_commands.add_parser(commands)
    reuse_commands.add_parser(commands)
    train_commands.add_parsers(commands)

    embed = commands.add_parser("embed", help="embed images and show each one's nearest other")
    embed.add_argument("images", nargs="+", type=Path)
    add_model_args(embed)
    embed.set_defaults(handler=_embed)

    serve = commands.add_parser("serve", help="run the search service (web page + JSON API)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes (a Qdrant server only: the embedded store is one process's)",
    )
    add_settings(serve, AppSettings)
    serve.set_defaults(handler=_serve)
    return parser


INDEX_ACTIONS = ("build", "status", "rollback", "snapshot")


def _with_default_index_action(argv: Sequence[str]) -> list[str]:
    """``carsearch index --gallery …`` means ``carsearch index build --gallery …``. Only the
    command word counts: ``carsearch serve --gallery index`` is left alone."""
    args = list(argv)
    command = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
    if command is not None and args[command] == "index":
        at = command + 1
        if at == len(args) or args[at] not in (*INDEX_ACTIONS, "-h", "--help"):
            args.insert(at, "build")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(
        _with_default_index_action(sys.argv[1:] if argv is None else argv)
    )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from pydantic import ValidationError

    from carembed.artifact import ArtifactError
    from carembed.backbones import BackboneError
    from carembed.datasets import DatasetError
    from indexer import ExportError, GateError, IndexBuildError, StoreError

    try:
        return int(args.handler(args))
    except ValidationError as exc:  # a flag's or a CARSEARCH_ variable's value
        for error in exc.errors():
            where = "--" + "-".join(str(part) for part in error["loc"]).replace("_", "-")
            logger.error("%s: %s (given %r)", where, error["msg"], error.get("input"))
        return 2
    except IndexBuildError as exc:
        logger.error("%s", exc)
        return 1
    except (ArtifactError, BackboneError, DatasetError, ExportError, GateError, StoreError) as exc:
        logger.error("%s", exc)
        return 2
