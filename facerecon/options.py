"""The reconstruction options and their limits, checked in one place for the CLI, batch, the web
app and the Python API.

Light on purpose (no numpy): the CLI checks its arguments before loading anything heavy.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from numbers import Integral, Real

from . import methods

TEXTURE_SIZE_RANGE = (64, 4096)      # pixels per side of the texture atlas
FOV_RANGE_DEG = (5.0, 120.0)         # a long telephoto lens to a wide phone camera, across the longer side
DEFAULT_TEXTURE_SIZE = 1024
FORMATS = ("obj", "glb", "ply")      # the mesh formats (each face also gets its JSON)
UNITS = ("m", "cm", "mm")            # of the OBJ and PLY files; the GLB is in metres, as glTF requires


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


def check_method(value: object, name: str = "method") -> str:
    return methods.spec(value, name).name


def check_formats(value: object, name: str = "formats") -> tuple[str, ...]:
    """A comma-separated text or a sequence of mesh formats: their ordered set, lower case."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        formats = tuple(dict.fromkeys(str(f).strip().lower() for f in items if str(f).strip()))
    except TypeError:
        formats = ()
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"{name} must be a comma-separated subset of {','.join(FORMATS)}, got {value!r}")
    return formats


def check_units(value: object, name: str = "units") -> str:
    if value not in UNITS:
        raise ValueError(f"{name} must be {', '.join(UNITS[:-1])} or {UNITS[-1]}, got {value!r}")
    return str(value)


def check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class ReconstructOptions:
    """What to reconstruct from each photo and which files to write: the options of ``facerecon
    reconstruct``, ``batch`` and ``video`` and of the web app, in one object. Checked when made: a
    ValueError names the bad option, by the CLI flag where ``names`` maps the field to it."""

    method: str = methods.DEFAULT_METHOD
    fov_deg: float | None = None        # across the longer side; None: EXIF, else camera.DEFAULT_FOV_DEG
    texture_size: int = DEFAULT_TEXTURE_SIZE
    max_faces: int | None = None        # per photo, best detection first
    formats: tuple[str, ...] = FORMATS
    units: str = "m"
    morph_targets: bool = True          # the GLB carries the 53 expression shapes and the pose
    overlay: bool = True                # overlay.png: the photo with the meshes and landmarks drawn
    turntable: bool = False             # face<k>_turntable.gif and .mp4
    names: InitVar[Mapping[str, str] | None] = None

    def __post_init__(self, names: Mapping[str, str] | None) -> None:
        names = names or {}
        for field, check in _CHECKS.items():
            object.__setattr__(self, field, check(getattr(self, field), names.get(field, field)))


_CHECKS = {"method": check_method, "fov_deg": check_fov_deg, "texture_size": check_texture_size,
           "max_faces": check_max_faces, "formats": check_formats, "units": check_units,
           "morph_targets": check_flag, "overlay": check_flag, "turntable": check_flag}
