"""The limits on the reconstruction options, checked in one place for the CLI and the Python API.

Light on purpose (no numpy): the CLI checks its arguments before loading anything heavy.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

TEXTURE_SIZE_RANGE = (64, 4096)      # pixels per side of the texture atlas
FOV_RANGE_DEG = (5.0, 120.0)         # a long telephoto lens to a wide phone camera, across the longer side


def check_texture_size(value: object, name: str = "texture_size") -> int:
    lo, hi = TEXTURE_SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number between {lo} and {hi}, got {value!r}")
    return int(value)


def check_max_faces(value: object, name: str = "max_faces") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def check_fov_deg(value: object, name: str = "fov_deg") -> float | None:
    if value is None:
        return None
    lo, hi = FOV_RANGE_DEG
    if isinstance(value, bool) or not isinstance(value, Real) or not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be between {lo:g} and {hi:g} degrees, got {value!r}")
    return float(value)
