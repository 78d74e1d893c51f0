"""``carsearch train`` (from a dataset folder or from the index) and ``carsearch evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from carembed.calibration import DEFAULT_ABSENT_PRIOR
from carsearch import dataset_commands
from carsearch.options import (
    add_model_args,
    add_model_flags,
    add_qdrant_args,
    emit,
    model_settings,
)


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig`` fields the flags set (each flag's dest is its field; one not given
    leaves the field's default)."""
    from training.config import TrainConfig

    return {
        name: getattr(args, name)
        for name in TrainConfig.model_fields
        if getattr(args, name, None) is not None
    }


def _train(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities import rank_zero_only

    from training.config import TrainConfig
    from training.train import train

    options = config_options(args)
    dataset = args.out.with_name(args.out.name + "-dataset")
    lead = (
        getattr(rank_zero_only, "rank", 0) == 0
    )  # DDP starts the other ranks as copies of this command
    if args.from_index:  # the options are checked before the export, made once by rank zero
        options["data"] = dataset / "manifest.csv"
        TrainConfig(**options)
        if lead:
            options["data"] = dataset_commands.export(args, dataset)
    config = TrainConfig(**options)
    model, metadata = train(config)
    if lead:
        emit(f"model {model.version()} saved to {config.out}")
        emit(json.dumps(metadata["metrics"], indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    model = model_settings(args)
    report = evaluate(
        model.model_dir,
        args.data,
        args.split,
        args.out,
        compare_zero_shot=not args.no_zero_shot,
        workers=args.workers,
        device=model.device,
        engine=model.engine,
        int8=model.int8,
        absent_prior=args.absent_prior,
    )
    rows = [("model", report)] + (
        [("zero-shot", report["zero_shot"])] if "zero_shot" in report else []
    )
    emit(f"{'':10} {'R-Prec':>7} {'MAP@R':>7} {'R@1':>7} {'R@2':>7} {'R@4':>7} {'R@8':>7}")
    for name, m in rows:
        emit(
            f"{name:10} {m['r_precision']:7.4f} {m['map_at_r']:7.4f} {m['recall_at_1']:7.4f} "
            f"{m['recall_at_2']:7.4f} {m['recall_at_4']:7.4f} {m['recall_at_8']:7.4f}"
        )
    found = report["identification"]
    emit(
        f"identification, closed: top-1 make {found['top1_make']:.4f}, make+model "
        f"{found['top1_make_model']:.4f}, make+model+year {found['top1_make_model_year']:.4f}; "
        f"ECE {found['ece_make']:.4f} / {found['ece_make_model']:.4f} / "
        f"{found['ece_make_model_year']:.4f}; contradictions {found['contradictions']}; "
        f"answered at 95% precision {found['coverage_at_95']:.1%}"
    )
    opened, mixed = found["open"], found["mixed"]
    emit(
        f"identification, open (class not in the gallery): exact answers at >= 0.5 "
        f"{opened['exact_at_50']:.1%}, at >= 0.9 {opened['exact_at_90']:.1%}; make+model when "
        f"only the year is absent {_figure(opened['top1_make_model_year_absent'])}"
    )
    emit(
        f"identification, mixed at prior {mixed['prior']:g}: ECE {mixed['ece_make']:.4f} / "
        f"{mixed['ece_model']:.4f} / {mixed['ece_exact']:.4f}; absent AUROC "
        f"{_figure(mixed['absent_auroc_make'])} / {_figure(mixed['absent_auroc_model'])} / "
        f"{_figure(mixed['absent_auroc_exact'])}"
    )
    emit(f"report: {args.out / 'report.json'}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from training.identification import copy_calibration, recalibrate

    if args.copy_from is not None:
        calibration = copy_calibration(args.dir, args.copy_from)
    else:
        calibration = recalibrate(args.dir, args.data, args.split)
    emit(
        f"identification calibrated on {calibration.fitted_on}: k {calibration.k}, "
        f"temperature {calibration.temperature:g}, per answer {calibration.per_answer}, density "
        f"weight {calibration.density_weight:g}; make k "
        f"{calibration.make_k}, temperature {calibration.make_temperature:g}; written to "
        f"{args.dir / 'config.json'} (the model version is unchanged)"
    )
    return 0


def add_model_parsers(model_commands: Any) -> None:
    """``carsearch model calibrate``: the subcommand of ``model`` that needs training's fits."""
    cal = model_commands.add_parser(
        "calibrate",
        help="refit the identification's calibration (confidences and absence) without training",
    )
    cal.add_argument("dir", type=Path, help="the model folder (rewritten in place)")
    source = cal.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        type=Path,
        help="labelled photos: those of the classes the model never trained on calibrate it",
    )
    source.add_argument(
        "--from",
        dest="copy_from",
        type=Path,
        help="copy the calibration of this folder: the selection model of the same data, recipe "
        "and seed trained with --no-refit (how a refitted model, which trained on every class, "
        "gets one)",
    )
    cal.add_argument("--split", default=None, help="only this split's photos (default: all)")
    cal.set_defaults(handler=_calibrate)


def _probability(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return number


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def add_parsers(commands: Any) -> None:
    from training.config import TrainConfig

    tr = commands.add_parser("train", help="fine-tune the car similarity model (Lightning)")
    source = tr.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        type=Path,
        help="folder with manifest.csv, a manifest, an ImageFolder or Stanford layout",
    )
    source.add_argument(
        "--from-index",
        action="store_true",
        help="the gallery as the index holds it now (exported next to --out first)",
    )
    dataset_commands.add_from_index_args(tr)
    add_qdrant_args(tr)
    tr.add_argument("--out", type=Path, required=True, help="servable model folder to write")
    add_model_flags(tr, TrainConfig, skip=("data", "out"), aliases={"max_epochs": ["--epochs"]})
    tr.set_defaults(handler=_train)
    dataset_commands.add_parser(commands)

    ev = commands.add_parser("evaluate", help="retrieval metrics of a model on unseen classes")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--split", default="val")
    ev.add_argument("--out", type=Path, required=True, help="folder for report.json and plots")
    ev.add_argument(
        "--no-zero-shot",
        action="store_true",
        help="skip the comparison with the zero-shot model",
    )
    ev.add_argument("--workers", type=int, default=1)
    ev.add_argument(
        "--absent-prior",
        type=_probability,
        default=DEFAULT_ABSENT_PRIOR,
        help="share of queries whose car model the gallery lacks, for the open and mixed "
        f"figures (default {DEFAULT_ABSENT_PRIOR})",
    )
    add_model_args(ev)
    ev.set_defaults(handler=_evaluate)
