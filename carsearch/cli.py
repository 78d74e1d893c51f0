"""``carsearch``: one command with subcommands. Each subcommand imports only what it needs,
so ``carsearch serve`` and ``carsearch index`` never load Lightning or ``training``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("carsearch")


def emit(text: str = "") -> None:
    """Command output (reports, tables) goes to stdout; diagnostics go to logging (stderr)."""
    sys.stdout.write(text + "\n")


def _model_info(args: argparse.Namespace) -> int:
    from carembed.artifact import load_or_default

    model = load_or_default(args.dir, device="cpu")
    config = model.config
    pre = config.preprocessing
    emit(f"model version   {model.version()}")
    emit(f"folder          {args.dir or '(default model)'}")
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
    if config.training:
        metrics = config.training.get("metrics", {})
        emit(f"trained         {config.training.get('recipe', '?')}, metrics {metrics}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from carembed.artifact import load_or_default
    from carembed.embedder import Embedder
    from carembed.images import ImageError

    embedder = Embedder(
        load_or_default(args.model, device=args.device), device=args.device, threads=args.threads
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


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="servable model folder (default: the default zero-shot model)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carsearch", description="Similar-car image search.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    model = commands.add_parser("model", help="inspect a servable model")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    info = model_commands.add_parser("info", help="backbone, head, dim, preprocessing, version")
    info.add_argument(
        "dir", type=Path, nargs="?", default=None, help="model folder (default: the default model)"
    )
    info.set_defaults(handler=_model_info)

    embed = commands.add_parser("embed", help="embed images and show each one's nearest other")
    embed.add_argument("images", nargs="+", type=Path)
    _add_model_args(embed)
    embed.set_defaults(handler=_embed)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from carembed.artifact import ArtifactError
    from carembed.backbones import BackboneError
    from carembed.datasets import DatasetError

    try:
        return int(args.handler(args))
    except (ArtifactError, BackboneError, DatasetError) as exc:
        logger.error("%s", exc)
        return 2
