"""facerecon: textured, metric 3D heads from ordinary photos, fast on a CPU.

    import facerecon
    faces = facerecon.reconstruct("photo.jpg")      # one FaceReconstruction per face
    faces[0].save("out/")                            # OBJ + MTL + PNG, GLB, PLY, JSON
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._numba_target import use_portable_target

use_portable_target()   # before any module loads numba: the kernels the wheel ships are for this target

__version__ = "0.1.0"
__all__ = ["reconstruct", "Reconstructor", "FaceReconstruction", "__version__"]

if TYPE_CHECKING:
    from .pipeline import FaceReconstruction, Reconstructor, reconstruct


def __getattr__(name: str):
    # Lazy: `facerecon --help` and argument errors should not pay for loading the models.
    if name in {"reconstruct", "Reconstructor", "FaceReconstruction"}:
        from . import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
