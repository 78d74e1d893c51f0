"""Photos re-used across cars: the copy signal kept with each photo and the rule that tells a
copy from a look-alike.

The car embedding alone cannot tell them apart: two cars of one model photographed from one
angle are as close as a photo and its copy. The copy signal is a perceptual hash (imagehash's
pHash: 64 bits from the low frequencies of the photo's grey levels) of the photo and of its
mirror image, which does not depend on the model. A photo is a re-use of another car's photo
when

- its bytes are the same (``exact``), or
- their hashes differ in at most ``NEAR_BITS`` bits, either way round (``near``: resized,
  recompressed, brightened, stamped with text, mirrored), or
- their hashes differ in at most ``CROP_BITS`` bits and their car embeddings agree
  (cosine >= ``CROP_COSINE``): a crop moves the hash further, the embedding hardly.

The check is a lookup, not a scan: the same bytes by the payload index on ``sha256``; near
hashes by the index on the hash's four 16-bit parts (two hashes within ``NEAR_BITS`` < 4 bits
share a part); crops among the photo's nearest neighbours (HNSW). The thresholds were chosen on
the dev set's photos (``benchmarks/reuse.py``, docs/indexing.md).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

HASH_SIDE = 64
"""The photo is decoded at about this size for its hash (pHash reads 32 x 32)."""
PLAIN_STD = 2.0
"""A photo whose grey levels vary less than this (0-255) has no hash: every plain photo would
look like a copy of every other."""
PARTS = 4
NEAR_BITS = 3
"""At most this many bits apart: the same photo (within ``PARTS - 1``, so near hashes share a
part and the lookup finds them)."""
CROP_BITS = 22
CROP_COSINE = 0.9
"""A crop: hashes at most ``CROP_BITS`` apart and car embeddings at least this close."""
NEIGHBOURS = 10
"""Nearest photos of other cars read for crops."""

Kind = Literal["exact", "near"]
PHASH = "phash"
PHASH_MIRROR = "phash_mirror"
PHASH_PARTS = "phash_parts"
"""Payload fields: the photo's hash and its mirror image's (16 hex digits each), and their
parts ``"<i>:<4 hex digits>"`` (indexed)."""


@dataclass(frozen=True)
class CopySignal:
    """A photo's pHash and its mirror image's, as 16 hex digits each."""

    phash: str
    mirrored: str

    def parts(self) -> list[str]:
        return sorted(set(hash_parts(self.phash) + hash_parts(self.mirrored)))

    def payload(self) -> dict[str, Any]:
        return {PHASH: self.phash, PHASH_MIRROR: self.mirrored, PHASH_PARTS: self.parts()}

    @classmethod
    def stored(cls, payload: Any) -> CopySignal | None:
        """The signal a stored payload holds (None: none)."""
        phash, mirrored = getattr(payload, PHASH, None), getattr(payload, PHASH_MIRROR, None)
        return cls(phash, mirrored) if phash and mirrored else None


def hash_parts(phash: str) -> list[str]:
    step = len(phash) // PARTS
    return [f"{i}:{phash[i * step : (i + 1) * step]}" for i in range(PARTS)]


def distance(a: str, b: str) -> int:
    """Bits that differ between two hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def signal_of_image(image: Image.Image) -> CopySignal | None:
    """The copy signal of a decoded photo (None: too plain to tell copies apart)."""
    import imagehash

    grey = image.convert("L")
    if float(np.asarray(grey, np.float32).std()) < PLAIN_STD:
        return None
    return CopySignal(str(imagehash.phash(grey)), str(imagehash.phash(ImageOps.mirror(grey))))


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
    other_phash: str | None,
    cosine: float | None,
) -> tuple[Kind, float] | None:
    """Whether a photo (its sha256 and signal) re-uses another (its sha256, hash and the
    cosine of their embeddings, when known): the kind and the hash similarity, or None."""
    if other_sha is not None and sha == other_sha:
        return "exact", 1.0
    if signal is None or other_phash is None:
        return None
    bits = min(distance(signal.phash, other_phash), distance(signal.mirrored, other_phash))
    near = bits <= NEAR_BITS or (cosine is not None and cosine >= CROP_COSINE and bits <= CROP_BITS)
    return ("near", round(1 - bits / 64, 4)) if near else None
