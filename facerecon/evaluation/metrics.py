"""Accuracy metrics with their normalisations spelled out."""
from __future__ import annotations

import numpy as np

YAW_BINS = ("[0,30)", "[30,60)", "[60,90]")
# iBUG 68-point indices of the outer eye corners: the "outer interocular" normaliser.
OUTER_EYE_CORNERS = (36, 45)


def box_size(points: np.ndarray) -> float:
    """sqrt(width * height) of the bounding box of (n, 2+) points: the AFLW2000-3D normaliser."""
    span = points[:, :2].max(0) - points[:, :2].min(0)
    return float(np.sqrt(span[0] * span[1]))


def box_diagonal(points: np.ndarray) -> float:
    """Diagonal of the axis-aligned bounding box of (n, d) points (the dense-3D normaliser)."""
    return float(np.linalg.norm(points.max(0) - points.min(0)))


def interocular(points68: np.ndarray) -> float:
    """Outer interocular distance of (68, d) iBUG points (corners 36 and 45)."""
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(points68[a] - points68[b]))


def nme(predicted: np.ndarray, truth: np.ndarray, normaliser: float) -> float:
    """Mean point-to-point distance over (n, d) points divided by ``normaliser``."""
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / normaliser)


def rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Root mean square point-to-point distance over (n, d) points, in their units."""
    return float(np.sqrt((np.sum((predicted - truth) ** 2, axis=1)).mean()))


def yaw_bin(yaw_deg: float) -> str:
    """The standard AFLW2000-3D yaw bins by absolute yaw."""
    a = abs(yaw_deg)
    return "[0,30)" if a < 30 else "[30,60)" if a < 60 else "[60,90]"


def finite_mean(values) -> float:
    """The mean of the finite values (NaN where there are none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")
