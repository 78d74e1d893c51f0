"""What the commands share: their output, the model and store options and the settings made
from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from carembed.choices import EngineChoice

if TYPE_CHECKING:
    from carembed.settings import ModelSettings
    from indexer.index import CarIndex
    from indexer.settings import StoreSettings


def emit(text: str = "") -> None:
    """Command output (reports, tables) goes to stdout; diagnostics go to logging (stderr)."""
    sys.stdout.write(text + "\n")


def given(**options: Any) -> dict[str, Any]:
    """The options the user set: unset (None) ones leave the settings' defaults in place."""
    return {key: value for key, value in options.items() if value is not None}


def model_settings(args: argparse.Namespace) -> ModelSettings:
    """``--model``/``--device``/``--engine``/``--threads``, else ``CARSEARCH_<NAME>``."""
    from carembed.settings import ModelSettings

    return ModelSettings(
        **given(model_dir=args.model, device=args.device, engine=args.engine, threads=args.threads)
    )


def store_settings(args: argparse.Namespace) -> StoreSettings:
    from indexer.settings import StoreSettings

    return StoreSettings(
        **given(
            qdrant_url=args.qdrant_url,
            qdrant_path=args.qdrant_path,
            alias=args.alias,
            data_dir=args.data_dir,
        )
    )


def onnx_dir(given_dir: Path | None) -> Path:
    """Where ONNX graphs are cached: ``--onnx-dir``, else the data folder's (the service's)."""
    from indexer.settings import StoreSettings

    return given_dir or StoreSettings().layout.onnx


def open_index(args: argparse.Namespace) -> CarIndex:
    from indexer.index import CarIndex

    return CarIndex.open(store_settings(args))


def add_qdrant_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--qdrant-path", type=Path, default=None, help="embedded store folder (default data/qdrant)"
    )
    where.add_argument(
        "--qdrant-url",
        default=None,
        help="Qdrant server URL; API key from CARSEARCH_QDRANT_API_KEY",
    )
    parser.add_argument("--alias", default=None, help="collection alias (default cars)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="cars added through the API, model copies (default data; shared with the service)",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="servable model folder, or zero-shot (default: the shipped car model)",
    )
    parser.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument(
        "--engine",
        choices=get_args(EngineChoice),
        default=None,
        help="auto (default): ONNX Runtime on CPU, PyTorch on a GPU",
    )
