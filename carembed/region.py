"""A region of a photo: the part a search, identification, embedding or add is about (the car
the user pointed at), as fractions of the photo as shown (EXIF orientation applied)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def parse(cls, text: str) -> Box:
        """``"x0,y0,x1,y1"``; ValueError says what is wrong."""
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ValueError("box is x0,y0,x1,y1: four numbers between 0 and 1")
        box = cls(*values)
        if not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError("box: each value is a fraction of the photo, between 0 and 1")
        if box.x1 <= box.x0 or box.y1 <= box.y0:
            raise ValueError("box: x1 must be right of x0 and y1 below y0")
        return box

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of an image of this size (at least one pixel each way)."""
        left, top = math.floor(self.x0 * width), math.floor(self.y0 * height)
        right = max(left + 1, math.ceil(self.x1 * width))
        bottom = max(top + 1, math.ceil(self.y1 * height))
        return left, top, min(right, width), min(bottom, height)

    def side_needed(self, side: int) -> int:
        """How many pixels the whole photo's shorter side needs for the box to hold ``side``."""
        return math.ceil(side / min(self.width, self.height))
