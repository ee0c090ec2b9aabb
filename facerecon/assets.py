"""Where data assets live.

The ICT-FaceKit model is not shipped with the package (it is kept in ``../shared`` beside the
repository during development). ``FACERECON_ICT_DIR`` points at the folder holding
``ict_face_model.npz``; ``FACERECON_SHARED`` points at the shared folder as a whole.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import AssetError

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def shared_dir() -> Path:
    """The shared data folder: ``$FACERECON_SHARED``, else ``../shared`` beside the repository."""
    return Path(os.environ.get("FACERECON_SHARED", REPO_ROOT.parent / "shared")).resolve()


def ict_dir() -> Path:
    """The ICT-FaceKit folder: ``$FACERECON_ICT_DIR``, else ``<shared>/assets/ict-facekit``."""
    path = Path(os.environ.get("FACERECON_ICT_DIR", shared_dir() / "assets" / "ict-facekit"))
    if not (path / "ict_face_model.npz").is_file():
        raise AssetError(
            f"ICT-FaceKit model not found at {path}/ict_face_model.npz; "
            "set FACERECON_ICT_DIR to the folder that holds it"
        )
    return path
