"""Where data assets live.

The ICT-FaceKit model ships in ``facerecon/data/ict_facekit.npz`` (the parts facerecon uses,
packed by ``scripts/pack_ict.py``). ``FACERECON_ICT_DIR``, when set, overrides it with a folder
holding the full ``ict_face_model.npz`` and ``vertex_indices.json``. ``FACERECON_SHARED`` points at
the shared folder of evaluation data (photos with ground truth, the peer). ``FACERECON_CACHE_DIR``
is where per-model data is kept between runs (``facerecon.diskcache``).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import AssetError

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
ICT_PACKED = PACKAGE_DATA / "ict_facekit.npz"

# The regressors' networks, where their loaders look. Only the first ships; `facerecon train CONFIG`
# writes the others here (they measured no better than the mean head: MODEL_CARD.md).
REGRESSOR_MODEL = PACKAGE_DATA / "regressor_uv128.onnx"
GUIDED_MODEL = PACKAGE_DATA / "regressor_guided128.onnx"
TWOVIEW_MODEL = PACKAGE_DATA / "regressor_twoview128.onnx"
VRN_MODEL = PACKAGE_DATA / "regressor_vrn64.onnx"
TRAIN_CONFIG = {REGRESSOR_MODEL.name: "configs/cpu.yaml", GUIDED_MODEL.name: "configs/guided_cpu.yaml",
                TWOVIEW_MODEL.name: "configs/twoview_cpu.yaml", VRN_MODEL.name: "configs/vrn_cpu.yaml"}


def shared_dir() -> Path:
    """The shared data folder: ``$FACERECON_SHARED``, else ``../shared`` beside the repository."""
    return Path(os.environ.get("FACERECON_SHARED", REPO_ROOT.parent / "shared")).resolve()


def ict_dir() -> Path | None:
    """``$FACERECON_ICT_DIR`` when set (checked to hold the model), else None: the packaged model."""
    if "FACERECON_ICT_DIR" not in os.environ:
        return None
    path = Path(os.environ["FACERECON_ICT_DIR"])
    if not (path / "ict_face_model.npz").is_file() or not (path / "vertex_indices.json").is_file():
        raise AssetError(
            f"ICT-FaceKit model not found at {path}/ict_face_model.npz (and vertex_indices.json); "
            "set FACERECON_ICT_DIR to the folder that holds them, or unset it for the packaged model"
        )
    return path


def cache_dir() -> Path | None:
    """``$FACERECON_CACHE_DIR`` (empty: no disk cache), else ``$XDG_CACHE_HOME/facerecon``, else
    ``~/.cache/facerecon``."""
    if "FACERECON_CACHE_DIR" in os.environ:
        return Path(os.environ["FACERECON_CACHE_DIR"]) if os.environ["FACERECON_CACHE_DIR"] else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facerecon"


def missing_network(path: str | Path) -> str | None:
    """None where the network file is there, else one line saying so and how to make it."""
    path = Path(path)
    if path.is_file():
        return None
    config = TRAIN_CONFIG.get(path.name)
    hint = f"; make it with `facerecon train {config}` (see MODEL_CARD.md)" if config else ""
    return f"network not found: {path}{hint}"
