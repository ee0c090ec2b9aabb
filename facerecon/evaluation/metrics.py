"""Accuracy metrics with their normalisations spelled out."""
from __future__ import annotations

import numpy as np


def box_size(points: np.ndarray) -> float:
    """sqrt(width * height) of the bounding box of (n, 2+) points: the AFLW2000-3D normaliser."""
    span = points[:, :2].max(0) - points[:, :2].min(0)
    return float(np.sqrt(span[0] * span[1]))


def nme(predicted: np.ndarray, truth: np.ndarray, normaliser: float) -> float:
    """Mean point-to-point distance over (n, d) points divided by ``normaliser``."""
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / normaliser)


def yaw_bin(yaw_deg: float) -> str:
    """The standard AFLW2000-3D yaw bins by absolute yaw."""
    a = abs(yaw_deg)
    return "[0,30)" if a < 30 else "[30,60)" if a < 60 else "[60,90]"
