"""Readers for car photo collections, shared by training and the indexer.

``read_dataset(PATH)`` accepts:
- a folder holding ``manifest.csv`` (or ``manifest.jsonl``), or a manifest file itself:
  rows with ``path`` (relative to the manifest's folder), ``class_name`` (or ``class``) and any
  metadata columns (``make``, ``model``, ``year``, ``body``, ``split``, ...);
- the original Stanford Cars layout: ``cars_train/`` + ``devkit/cars_train_annos.mat`` and
  ``devkit/cars_meta.mat`` (read with scipy);
- an ImageFolder: one folder per class, named like ``Audi_TTS_Coupe_2012``.
Make, model, year and body are parsed from the class name where the source does not give them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")

_MULTI_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")
_BODIES = {
    "Sedan": "Sedan",
    "SUV": "SUV",
    "Convertible": "Convertible",
    "Coupe": "Coupe",
    "Hatchback": "Hatchback",
    "Minivan": "Minivan",
    "Van": "Van",
    "Wagon": "Wagon",
    "Cab": "Pickup",
    "Pickup": "Pickup",
}
_CORE_FIELDS = {"path", "class_name", "class", "make", "model", "year", "body", "split"}


class DatasetError(ValueError):
    """A dataset path that cannot be read as any supported layout."""


@dataclass(frozen=True)
class CarRecord:
    """One photo: where it is, its class and what is known about the car."""

    path: Path
    relative: str
    class_name: str
    make: str | None = None
    model: str | None = None
    year: int | None = None
    body: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CarDataset:
    root: Path
    records: list[CarRecord]
    source: str  # "manifest", "stanford" or "folder"

    @property
    def class_names(self) -> list[str]:
        return sorted({r.class_name for r in self.records})

    def split(self, name: str) -> CarDataset:
        return CarDataset(self.root, [r for r in self.records if r.split == name], self.source)

    def without_classes(self, names: Iterable[str]) -> CarDataset:
        drop = set(names)
        return CarDataset(
            self.root, [r for r in self.records if r.class_name not in drop], self.source
        )

    def only_classes(self, names: Iterable[str]) -> CarDataset:
        keep = set(names)
        return CarDataset(self.root, [r for r in self.records if r.class_name in keep], self.source)


def parse_class_name(name: str) -> tuple[str | None, str | None, int | None, str | None]:
    """'Audi TTS Coupe 2012' -> ('Audi', 'TTS Coupe', 2012, 'Coupe'). Unknown parts are None."""
    words = name.replace("_", " ").split()
    if not words:
        return None, None, None, None
    year = None
    if re.fullmatch(r"(19|20)\d\d", words[-1]):
        year = int(words.pop())
    text = " ".join(words)
    make = next((m for m in _MULTI_WORD_MAKES if text == m or text.startswith(m + " ")), None)
    if make is None:
        make = words[0]
    model = text[len(make) :].strip() or None
    body = next((_BODIES[w] for w in reversed(words[1:]) if w in _BODIES), None)
    return make, model, year, body


def _int_or_none(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _record(root: Path, relative: str, row: dict[str, str]) -> CarRecord:
    class_name = (row.get("class_name") or row.get("class") or "").strip()
    if not class_name:
        raise DatasetError(f"manifest row for {relative!r} has no class_name")
    make, model, year, body = parse_class_name(class_name)
    return CarRecord(
        path=(root / relative).resolve(),
        relative=relative,
        class_name=class_name,
        make=row.get("make") or make,
        model=row.get("model") or model,
        year=_int_or_none(row.get("year")) or year,
        body=row.get("body") or body,
        split=row.get("split") or None,
        extra={k: str(v) for k, v in row.items() if k not in _CORE_FIELDS and v not in (None, "")},
    )


def _check_relative(relative: str, manifest: Path) -> str:
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise DatasetError(f"{manifest}: path {relative!r} must be relative and stay inside")
    return rel.as_posix()


def read_manifest(manifest: Path) -> CarDataset:
    root = manifest.parent.resolve()
    rows: list[dict[str, str]]
    if manifest.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(manifest.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(
                        {k: "" if v is None else str(v) for k, v in json.loads(line).items()}
                    )
                except (json.JSONDecodeError, AttributeError) as exc:
                    raise DatasetError(f"{manifest}:{number}: not a JSON object: {exc}") from exc
    else:
        with manifest.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    if rows and "path" not in rows[0]:
        raise DatasetError(f"{manifest} has no 'path' column")
    records = [_record(root, _check_relative(r["path"], manifest), r) for r in rows]
    return CarDataset(root, records, "manifest")


def read_stanford(root: Path) -> CarDataset:
    """The original Stanford Cars training layout: cars_train/ + devkit .mat annotations."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - scipy is a dependency
        raise DatasetError("reading the Stanford Cars devkit needs scipy") from exc
    root = root.resolve()
    meta = loadmat(root / "devkit" / "cars_meta.mat", squeeze_me=True)
    names = [str(n) for n in meta["class_names"]]
    annos = loadmat(root / "devkit" / "cars_train_annos.mat", squeeze_me=True)["annotations"]
    records = []
    for entry in annos.ravel() if annos.ndim else [annos.item()]:
        fname = str(entry["fname"])
        class_id = int(entry["class"])
        class_name = names[class_id - 1]
        make, model, year, body = parse_class_name(class_name)
        relative = f"cars_train/{fname}"
        records.append(
            CarRecord(
                path=root / relative,
                relative=relative,
                class_name=class_name,
                make=make,
                model=model,
                year=year,
                body=body,
                extra={"class_id": str(class_id)},
            )
        )
    return CarDataset(root, records, "stanford")


def read_image_folder(root: Path) -> CarDataset:
    root = root.resolve()
    records = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        class_name = class_dir.name.replace("_", " ")
        make, model, year, body = parse_class_name(class_name)
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                records.append(
                    CarRecord(
                        path=path,
                        relative=path.relative_to(root).as_posix(),
                        class_name=class_name,
                        make=make,
                        model=model,
                        year=year,
                        body=body,
                    )
                )
    return CarDataset(root, records, "folder")


def dataset_root(path: Path) -> Path:
    """The folder that records' relative paths start from, as ``read_dataset`` reads it."""
    path = Path(path)
    return (path.parent if path.is_file() else path).resolve()


def read_dataset(path: Path) -> CarDataset:
    """Whatever layout ``path`` has (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    if path.is_file():
        return read_manifest(path)
    for name in MANIFEST_NAMES:
        if (path / name).is_file():
            return read_manifest(path / name)
    if (path / "cars_train").is_dir() and (path / "devkit" / "cars_train_annos.mat").is_file():
        return read_stanford(path)
    dataset = read_image_folder(path)
    if not dataset.records:
        raise DatasetError(
            f"{path} holds no manifest, no Stanford Cars layout and no class folders with images"
        )
    return dataset
