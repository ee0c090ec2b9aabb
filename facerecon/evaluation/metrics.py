"""Accuracy metrics with their normalisations spelled out, and similarity alignment (Umeyama)."""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation, on (n, 3) row points."""

    scale: float
    rotation: np.ndarray     # (3, 3) proper rotation
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def then(self, other: "Similarity") -> "Similarity":
        """The composition: first ``self``, then ``other``."""
        return Similarity(other.scale * self.scale, other.rotation @ self.rotation,
                          other.scale * other.rotation @ self.translation + other.translation)


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True,
            weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity (Umeyama 1991) taking (n, 3) ``source`` onto corresponding ``target``.

    A proper rotation is enforced (no reflections), so mirrored inputs are not "aligned" by a flip.
    """
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rotation = u @ np.diag(d) @ vt
    var_s = float(w @ np.sum(xs ** 2, axis=1))
    scale = float(sig @ d / var_s) if with_scale else 1.0
    return Similarity(scale, rotation, mu_d - scale * rotation @ mu_s)
