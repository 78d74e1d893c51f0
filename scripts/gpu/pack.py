"""A small copy of the dev set's training photos for a GPU run: each one squashed to SIZE x SIZE
(the model squashes anyway) and re-encoded, with the manifest; by default into data/gpu-pack
(ignored by git: the dev set's licence keeps its photos out of the repository). The train split
at 224 px, quality 72, is about 38 MiB: with the wheels (20 MiB) it fits the 64 MiB a device
call carries; the val split is scored back on this machine.

    python scripts/gpu/pack.py ../shared/datasets/stanford-cars-dev [--splits train]
        [--classes N --per-class K]   # a tiny pack for a CPU rehearsal
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections import defaultdict
from pathlib import Path

from PIL import Image

logger = logging.getLogger("pack")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("data/gpu-pack"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=72)
    parser.add_argument("--splits", nargs="+", default=["train"])
    parser.add_argument("--classes", type=int, default=0, help="per split; 0: all")
    parser.add_argument("--per-class", type=int, default=0, help="0: all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with (args.data / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_class: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["split"] in args.splits:
            by_class[(row["split"], row["class_name"])].append(row)
    kept: list[dict[str, str]] = []
    for split in sorted({s for s, _ in by_class}):
        names = sorted(c for s, c in by_class if s == split)
        for name in names[: args.classes or None]:
            kept.extend(by_class[(split, name)][: args.per_class or None])

    total = 0
    for row in kept:
        target = args.out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(args.data / row["path"]) as image:
            squashed = image.convert("RGB").resize((args.size, args.size), Image.Resampling.LANCZOS)
        squashed.save(target, "JPEG", quality=args.quality)
        total += target.stat().st_size
    with (args.out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    logger.info("%d photos, %.1f MiB in %s", len(kept), total / 2**20, args.out)


if __name__ == "__main__":
    main()
