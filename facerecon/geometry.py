"""Small geometry helpers shared by the stages: vertex normals, closest surface points, barycentric
points, similarity alignment (Umeyama)."""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) unit area-weighted vertex normals of the mesh ``points`` (N, 3), ``triangles`` (T, 3)
    (0 for unused vertices), in the points' dtype."""
    points = np.ascontiguousarray(points)
    out = np.empty(points.shape, np.float32)
    vertex_normals_into(points, np.ascontiguousarray(triangles), np.arange(len(points)), out)
    return out.astype(points.dtype, copy=False)


@numba.njit(cache=True, fastmath=True, nogil=True)
def vertex_normals_into(verts, tris, weld, out):
    """Area-weighted unit vertex normals of ``verts`` (N, 3) into ``out`` (N, 3); vertices with equal
    ``weld`` id (N,) share one normal (UV seams). A kernel, so the renderer's pipeline calls it too."""
    acc = np.zeros((weld.max() + 1, 3), np.float32)
    for t in range(tris.shape[0]):
        a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
        e1x, e1y, e1z = verts[b, 0] - verts[a, 0], verts[b, 1] - verts[a, 1], verts[b, 2] - verts[a, 2]
        e2x, e2y, e2z = verts[c, 0] - verts[a, 0], verts[c, 1] - verts[a, 1], verts[c, 2] - verts[a, 2]
        n0 = e1y * e2z - e1z * e2y
        n1 = e1z * e2x - e1x * e2z
        n2 = e1x * e2y - e1y * e2x
        for k in (a, b, c):
            g = weld[k]
            acc[g, 0] += n0
            acc[g, 1] += n1
            acc[g, 2] += n2
    for k in range(verts.shape[0]):
        g = weld[k]
        norm = np.sqrt(acc[g, 0] ** 2 + acc[g, 1] ** 2 + acc[g, 2] ** 2)
        inv = 1.0 / norm if norm > 0 else 0.0
        for j in range(3):
            out[k, j] = acc[g, j] * inv


def closest_on_surface(points: np.ndarray, surface: np.ndarray, triangles: np.ndarray,
                       candidates: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Snap (n, 3) points to the closest of their nearby triangles of a mesh.

    Returns the triangles' vertex indices (n, 3) int32 and barycentric weights (n, 3) float32.
    """
    from scipy.spatial import cKDTree   # imported here: the main job never needs it
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
