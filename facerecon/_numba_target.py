"""Compile the numba kernels for a portable CPU target, so that the wheel can ship them compiled.

numba keys its on-disk cache by the CPU it compiles for (name and feature flags) and by the
source's content. Compiled for the host (numba's default), a cache made on one machine is useless
on any other, and the first run after installing compiles every kernel (about 20 s). Compiled for
``x86-64-v3`` (AVX2, FMA: x86 CPUs since 2013) on every machine that has it, the cache built into
the wheel (``scripts/build_numba_cache.py``) loads anywhere such a CPU runs the same numba and
Python. Other machines, or a process that set ``NUMBA_CPU_NAME`` itself or imported numba before
facerecon, keep numba's default and compile on the first run.
"""
from __future__ import annotations

import os
import platform
import sys

TARGET = "x86-64-v3"
# /proc/cpuinfo names of the x86-64-v3 level's features (v2's included)
V3_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave", "popcnt", "sse4_1",
            "sse4_2", "ssse3", "pni", "cx16", "lahf_lm"}


def host_has_v3(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return V3_FLAGS <= set(flags)


def use_portable_target() -> bool:
    """Set numba's CPU target to ``x86-64-v3`` (before numba loads) where that is safe."""
    if "numba" in sys.modules or "NUMBA_CPU_NAME" in os.environ or "NUMBA_CPU_FEATURES" in os.environ:
        return False
    if platform.machine().lower() not in ("x86_64", "amd64") or not host_has_v3():
        return False
    os.environ["NUMBA_CPU_NAME"] = TARGET
    os.environ["NUMBA_CPU_FEATURES"] = ""   # the target's own features, not the host's
    return True
