"""Small geometry helpers shared by the stages: vertex normals, closest surface points, barycentric
points, similarity alignment (Umeyama)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) unit area-weighted vertex normals (0 for unused vertices)."""
    face_n = np.cross(points[triangles[:, 1]] - points[triangles[:, 0]],
                      points[triangles[:, 2]] - points[triangles[:, 0]])
    # bincount is several times faster than np.add.at; the GLB computes 54 sets per head.
    out = np.stack([sum(np.bincount(triangles[:, k], face_n[:, c], len(points)) for k in range(3))
                    for c in range(3)], axis=1)
    return (out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)).astype(points.dtype)


def closest_on_surface(points: np.ndarray, surface: np.ndarray, triangles: np.ndarray,
                       candidates: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Snap (n, 3) points to the closest of their nearby triangles of a mesh.

    Returns the triangles' vertex indices (n, 3) int32 and barycentric weights (n, 3) float32.
    """
    tree = cKDTree(surface[triangles].mean(1))
    _, cand = tree.query(points, k=candidates)                      # (n, k)
    a, b, c = (surface[triangles[cand, k]] for k in range(3))       # (n, k, 3)
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    p = points[:, None, :]
    q = p - np.sum((p - a) * normal, -1, keepdims=True) * normal    # projection onto the plane
    v0, v1, v2 = b - a, c - a, q - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = d00 * d11 - d01 * d01 + 1e-18
    wb, wc = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - wb - wc, wb, wc], -1), 0, None)    # clipped into the triangle
    bary /= bary.sum(-1, keepdims=True)
    snapped = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
    best = np.argmin(np.linalg.norm(snapped - p, axis=-1), axis=1)
    rows = np.arange(len(points))
    return triangles[cand[rows, best]].astype(np.int32), bary[rows, best].astype(np.float32)


def surface_points(vertices: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Points given as barycentric combinations of mesh vertices: corners (n, 3), bary (n, 3) -> (n, 3)."""
    return np.einsum("nk,nkc->nc", bary, vertices[corners])


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
