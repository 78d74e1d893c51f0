"""Photos re-used across cars: the copy signal kept with each photo and the rule that tells a
copy from a look-alike.

The car embedding alone cannot tell them apart: two cars of one model photographed from one
angle are as close as a photo and its copy. The copy signal is a perceptual hash (imagehash's
pHash: 64 bits from the low frequencies of the photo's grey levels) of the photo, of its mirror
image and of its centre (``CENTRE`` of each side: what a crop of the photo's edges keeps); it
does not depend on the model. A photo is a re-use of another car's photo when its bytes are the
same (``exact``), or (``near``: resized, recompressed, brightened, stamped with text, mirrored or
cropped at the edges) when the hashes, comparing the photos whole, one mirrored, or one whole
with the other's centre, differ in at most ``SAME_BITS`` bits, or in at most ``NEAR_BITS`` bits
while their car embeddings agree (cosine >= ``NEAR_COSINE``). Car photos are alike in their low
frequencies (a car in the middle, a road below): hashes of different cars' photos come within 8
bits far more often than within 2, and the embedding tells those apart.

The check is a lookup, not a scan: the same bytes by the payload index on ``sha256``; near
hashes by the index on the hashes' four 16-bit parts (hashes a few bits apart share one) and
among the photo's nearest photos of other cars (HNSW). The threshold was chosen on the dev
set's photos (``benchmarks/reuse.py``, docs/indexing.md#photos-re-used-across-cars).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

HASH_SIDE = 64
"""The photo is decoded at about this size for its hashes (pHash reads 32 x 32)."""
CENTRE = 0.08
"""The centre hash leaves out this share of the photo on each side."""
PLAIN_STD = 2.0
"""A photo whose grey levels vary less than this (0-255) has no hash: every plain photo would
look like a copy of every other."""
PARTS = 4
SAME_BITS = 2
"""At most this many bits apart: the same photo."""
NEAR_BITS = 8
NEAR_COSINE = 0.6
"""At most ``NEAR_BITS`` apart and embeddings at least this close: the same photo."""
NEIGHBOURS = 10
"""Nearest photos of other cars read as candidates besides those that share a hash part."""

Kind = Literal["exact", "near"]
PHASH = "phash"
PHASH_MIRROR = "phash_mirror"
PHASH_CENTRE = "phash_centre"
PHASH_PARTS = "phash_parts"
"""Payload fields: the photo's hashes (16 hex digits each) and their parts
``"<i>:<4 hex digits>"`` (indexed)."""


@dataclass(frozen=True)
class CopySignal:
    """A photo's pHash, its mirror image's and its centre's, as 16 hex digits each."""

    phash: str
    mirrored: str
    centre: str

    def parts(self) -> list[str]:
        hashes = (self.phash, self.mirrored, self.centre)
        return sorted({part for h in hashes for part in hash_parts(h)})

    def payload(self) -> dict[str, Any]:
        return {
            PHASH: self.phash,
            PHASH_MIRROR: self.mirrored,
            PHASH_CENTRE: self.centre,
            PHASH_PARTS: self.parts(),
        }

    @classmethod
    def stored(cls, payload: Any) -> CopySignal | None:
        """The signal a stored payload holds (None: none)."""
        hashes = [getattr(payload, name, None) for name in (PHASH, PHASH_MIRROR, PHASH_CENTRE)]
        if not all(isinstance(h, str) for h in hashes):
            return None
        return cls(*(str(h) for h in hashes))

    def bits_to(self, other: CopySignal) -> int:
        """How far apart two photos' hashes are: whole, one mirrored, or one whole and the
        other's centre."""
        return min(
            distance(self.phash, other.phash),
            distance(self.mirrored, other.phash),
            distance(self.phash, other.centre),
            distance(self.centre, other.phash),
        )


def hash_parts(phash: str) -> list[str]:
    step = len(phash) // PARTS
    return [f"{i}:{phash[i * step : (i + 1) * step]}" for i in range(PARTS)]


@lru_cache(maxsize=1 << 20)
def _value(phash: str) -> int:
    return int(phash, 16)


def distance(a: str, b: str) -> int:
    """Bits that differ between two hashes."""
    return (_value(a) ^ _value(b)).bit_count()


def signal_of_image(image: Image.Image) -> CopySignal | None:
    """The copy signal of a decoded photo (None: too plain to tell copies apart)."""
    import imagehash

    grey = image.convert("L")
    if float(np.asarray(grey, np.float32).std()) < PLAIN_STD:
        return None
    w, h = grey.size
    dx, dy = round(w * CENTRE), round(h * CENTRE)
    centre = grey.crop((dx, dy, w - dx, h - dy))
    hashes = (grey, ImageOps.mirror(grey), centre)
    return CopySignal(*(str(imagehash.phash(h)) for h in hashes))


def signal_of(source: bytes | Path) -> CopySignal | None:
    """The copy signal of a photo's bytes or file (decoded small; EXIF orientation applied)."""
    from carembed.images import load_image

    image = load_image(
        io.BytesIO(source) if isinstance(source, bytes) else source, None, (HASH_SIDE, HASH_SIDE)
    )
    return signal_of_image(image)


def verdict(
    sha: str,
    signal: CopySignal | None,
    other_sha: str | None,
    other: CopySignal | None,
    cosine: float | None,
) -> tuple[Kind, float] | None:
    """Whether a photo (its sha256 and signal) re-uses another (its sha256, signal and the
    cosine of their embeddings, when known): the kind and the hashes' similarity, or None."""
    if other_sha is not None and sha == other_sha:
        return "exact", 1.0
    if signal is None or other is None:
        return None
    bits = signal.bits_to(other)
    agree = cosine is not None and cosine >= NEAR_COSINE
    near = bits <= SAME_BITS or (bits <= NEAR_BITS and agree)
    return ("near", round(1 - bits / 64, 4)) if near else None
