"""What the commands share: their output, the model and store options and the settings made
from them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_settings import BaseSettings

    from carembed.settings import ModelSettings
    from indexer import CarIndex, StoreSettings


def emit(text: str = "") -> None:
    """Command output (reports, tables) goes to stdout; diagnostics go to logging (stderr)."""
    sys.stdout.write(text + "\n")


S = TypeVar("S", bound="BaseSettings")

SHORTCUTS = {"model-dir": "model", "gate-force": "force"}
"""Flags that keep a shorter name than their setting's: ``--model`` (``model_dir``) and
``--force`` (``gate_force``)."""


def add_settings(parser: argparse.ArgumentParser, settings: type[BaseSettings]) -> None:
    """A flag for every field of ``settings`` (``--qdrant-url`` for ``qdrant_url``; booleans
    as ``--int8/--no-int8``), with its description; a flag not given leaves the field to
    ``CARSEARCH_<FIELD>`` or its default (pydantic-settings' CLI source)."""
    from pydantic_settings import CliSettingsSource

    source: CliSettingsSource[argparse.ArgumentParser] = CliSettingsSource(
        settings,
        root_parser=parser,
        cli_prog_name=parser.prog,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_shortcuts=SHORTCUTS,
    )
    sources = dict(parser.get_default("settings_sources") or {})
    sources[settings] = source
    parser.set_defaults(settings_sources=sources)


def add_model_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    skip: Collection[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """A flag for every field of ``model`` but ``skip`` (``--hidden-dim`` for ``hidden_dim``;
    booleans as ``--x/--no-x``; literals as choices), with its description and default. Each
    flag's dest is its field, None when not given (the field keeps its default)."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flags = [f"--{name.replace('_', '-')}", *(aliases or {}).get(name, ())]
        described = f"{field.description} " if field.description else ""
        shown = "" if field.default is None else f"(default {field.default})"
        options: dict[str, Any] = {"dest": name, "default": None, "help": described + shown}
        annotation: Any = field.annotation
        kinds: list[Any] = [annotation]
        if get_origin(annotation) is not Literal and get_args(annotation):
            kinds = [k for k in get_args(annotation) if k is not type(None)]
        if kinds == [bool]:
            options["action"] = argparse.BooleanOptionalAction
        elif len(kinds) == 1 and get_origin(kinds[0]) is Literal:
            options["choices"] = get_args(kinds[0])
        else:
            options["type"] = _parser_of(kinds)
            options["metavar"] = "|".join(k.__name__ for k in kinds)
        parser.add_argument(*flags, **options)


def _parser_of(kinds: list[Any]) -> Callable[[str], Any]:
    """A flag value as the first of ``kinds`` (int, float, str, Path) that reads it."""

    def parse(text: str) -> Any:
        for kind in kinds:
            try:
                return kind(text)
            except ValueError:
                continue
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {' or '.join(k.__name__ for k in kinds)}"
        )

    return parse


def settings_of(args: argparse.Namespace, settings: type[S]) -> S:
    """``settings`` from the command's flags, over ``CARSEARCH_<FIELD>`` and the defaults."""
    source = args.settings_sources[settings]
    return settings(_cli_settings_source=source(parsed_args=args))


def model_settings(args: argparse.Namespace) -> ModelSettings:
    from carembed.settings import ModelSettings

    return settings_of(args, ModelSettings)


def store_settings(args: argparse.Namespace) -> StoreSettings:
    from indexer import StoreSettings

    return settings_of(args, StoreSettings)


def onnx_dir(given_dir: Path | None) -> Path:
    """Where ONNX graphs are cached: ``--onnx-dir``, else the data folder's (the service's)."""
    from indexer import StoreSettings

    return given_dir or StoreSettings().layout.onnx


def open_index(args: argparse.Namespace) -> CarIndex:
    from indexer import CarIndex

    return CarIndex.open(store_settings(args))


def add_qdrant_args(parser: argparse.ArgumentParser) -> None:
    """The store's settings as flags (``--qdrant-url``, ``--qdrant-path``, ``--alias``,
    ``--data-dir``, the gate's, the collections')."""
    from indexer import StoreSettings

    add_settings(parser, StoreSettings)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The model's settings as flags (``--model``, ``--device``, ``--engine``, ``--threads``,
    ``--int8/--no-int8``, ``--max-pixels``)."""
    from carembed.settings import ModelSettings

    add_settings(parser, ModelSettings)
