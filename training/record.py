"""What a trained model records about where it came from: the code's commit and the data's
fingerprint."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from carembed.datasets import CarDataset


def git_commit() -> str | None:
    """The commit of the code that trains (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def dataset_fingerprint(dataset: CarDataset) -> str:
    """A short hash of the photos' paths and classes: the same data, the same fingerprint."""
    digest = hashlib.sha256()
    for r in dataset.records:
        digest.update(f"{r.relative}\0{r.class_name}\n".encode())
    return digest.hexdigest()[:16]
