"""Files written so that a crash leaves the old version or the new one, never half of one: the
data goes to a temporary file beside the target, is flushed to disk (fsync), renamed over the
target, and the folder is flushed so the rename itself survives. Every writer of a file that
another process may read (model folders, ONNX graphs, the ledger, alias pointers, thumbnails,
snapshots) goes through here."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries, after renames)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(staged: Path, target: Path) -> None:
    """Move the complete file ``staged`` over ``target`` (same folder), durably."""
    fsync_path(staged)
    os.replace(staged, target)
    fsync_path(target.parent)


@contextlib.contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; it replaces ``target`` durably when the
    block ends, and is removed when the block fails."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    staged = Path(name)
    try:
        yield staged
        replace_durably(staged, target)
    finally:
        staged.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: readers see the old file or the new one."""
    with staged_file(path) as staged:
        staged.write_bytes(data)
