"""What this machine's CPU offers ONNX Runtime's int8 kernels: the processor's name and the
instruction sets that decide how int8 products are summed (an int8 graph's scores can differ
between CPUs, so its check records the CPU it ran on)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Literal

INT8_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
"""x86-64: AVX2 (pairs summed in 16 bits), AVX-512, VNNI and AMX (int8 dot products into 32
bits); Arm: the dot-product and matrix-multiply extensions."""

Int8Sums = Literal["exact", "16-bit pairs"]


@functools.cache
def _cpu() -> tuple[str, frozenset[str]]:
    """The processor's name and the int8-relevant features it lists."""
    name, flags = platform.processor() or platform.machine(), set[str]()
    info = Path("/proc/cpuinfo")
    text = info.read_text(errors="replace") if info.is_file() else ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    return name, frozenset(f for f in INT8_FEATURES if f in flags)


def cpu_description() -> str:
    """``<processor name> (<int8-relevant features>)``, e.g. ``AMD EPYC (avx2, avx512_vnni)``."""
    name, flags = _cpu()
    listed = [f for f in INT8_FEATURES if f in flags]
    return f"{name} ({', '.join(listed) or 'no int8 dot-product instructions listed'})"


def int8_sums() -> Int8Sums:
    """How ONNX Runtime sums uint8 x int8 products here: ``16-bit pairs`` on x86-64 CPUs with
    AVX2 but no VNNI (pairs of products saturate at 16 bits, so an int8 graph scores
    differently there), ``exact`` with VNNI or AMX, on Arm and on older x86 kernels."""
    flags = _cpu()[1]
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return "16-bit pairs" if "avx2" in flags and not vnni else "exact"
