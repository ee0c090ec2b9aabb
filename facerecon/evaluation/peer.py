"""The 3DDFA_V2 (MobileNet x0.5) peer, loaded from the shared folder at evaluation time only.

Its bases are BFM-derived (academic use): it is never a dependency of facerecon nor shipped with it.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..assets import shared_dir

PEER_NAME = "3DDFA_V2 mb05 (peer)"


def peer_path() -> Path:
    return shared_dir() / "peers" / "3ddfa_v2_mb05" / "peer.py"


@lru_cache(maxsize=1)
def _module():
    spec = importlib.util.spec_from_file_location("peer_3ddfa_v2", peer_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_landmarks68(image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The peer's 68 points from a face box (x0, y0, x1, y1): (68, 3) x, y pixels and z (pixels,
    toward the viewer, as AFLW2000-3D's ground truth)."""
    bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    return np.asarray(_module().landmarks68(bgr, tuple(float(v) for v in box)), np.float64).T
