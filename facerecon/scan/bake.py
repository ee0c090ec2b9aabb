"""The scanned mesh's texture: an xatlas unwrap, then every texel's colour blended from the views
that see its point, with the head texture's view weights (``facerecon.texture``: none at grazing
angles, full from about 60 degrees, the most head-on view winning where several overlap) and
per-view exposure gains matched on what the views see in common. Texels no view sees, and the
gutter around the UV islands, copy the nearest seen texel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import require
from ..geometry import vertex_normals
from ..render.raster import Fragments, rasterize
from ..texture import COS_FULL, COS_NONE, FUSE_GAIN_RANGE, FUSE_OVERLAP_WEIGHT, FUSE_POWER, sample_image
from .cameras import ViewCamera


@dataclass
class TexturedMesh:
    """A mesh with one texture: positions and UVs share one index (split at UV seams)."""

    vertices: np.ndarray     # (N, 3) float32 world units
    uv: np.ndarray           # (N, 2) float32, v up (OBJ's convention); texture row 0 is v = 1
    faces: np.ndarray        # (F, 3) int32, counter-clockwise seen from outside
    texture: np.ndarray      # (S, S, 3) uint8 RGB
    seen: float              # share of the surface's texels that some view sees


def rasterize_view(vertices: np.ndarray, faces: np.ndarray, camera: ViewCamera) -> Fragments:
    """The mesh's z-buffer (triangle, barycentric weights, depth) in ``camera``'s image."""
    xy, z = camera.project(np.asarray(vertices, np.float64))
    # points behind the camera are dropped by the rasteriser (z <= 0); keep their xy finite
    xy = np.where(z[:, None] > 0, xy, 0.0)
    return rasterize(xy.astype(np.float32), z.astype(np.float32), faces, camera.height, camera.width)


def unwrap(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas: the split vertices' source index (N,), UVs (N, 2) in [0, 1] and faces (F, 3)."""
    xatlas = require("xatlas", "scan", "the scan's texture unwrap")
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    charts = xatlas.ChartOptions()
    # one growing pass and a looser cost: a scanned surface is bumpy, and xatlas's defaults cut it
    # into thousands of charts, slowly
    charts.max_iterations, charts.max_cost = 1, 8.0
    atlas.generate(charts, xatlas.PackOptions())
    mapping, indices, uv = atlas[0]
    return mapping.astype(np.int64), uv.astype(np.float32), indices.astype(np.int32)


def _view_weight(cos: np.ndarray) -> np.ndarray:
    t = np.clip((cos - COS_NONE) / (COS_FULL - COS_NONE), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bake(vertices: np.ndarray, faces: np.ndarray, images: list[np.ndarray], cameras: list[ViewCamera],
         size: int = 1024) -> TexturedMesh:
    """Unwrap the mesh (V, 3) / (F, 3) and bake a ``size`` x ``size`` texture from the views."""
    mapping, uv, uv_faces = unwrap(vertices, faces)
    positions = np.asarray(vertices, np.float64)[mapping]
    normals = vertex_normals(positions, uv_faces).astype(np.float64)
    texel_xy = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1)
    layout = rasterize(texel_xy, np.ones(len(uv), np.float32), uv_faces, size, size)
    covered = layout.mask
    corners = uv_faces[layout.triangle[covered]]
    bary = layout.bary[covered].astype(np.float64)
    points = np.einsum("nk,nkc->nc", bary, positions[corners])
    point_normals = np.einsum("nk,nkc->nc", bary, normals[corners])
    point_normals /= np.linalg.norm(point_normals, axis=1, keepdims=True) + 1e-12
    edge = float(np.median(np.linalg.norm(positions[uv_faces[:, 0]] - positions[uv_faces[:, 1]], axis=1)))

    colours, weights = [], []
    for image, camera in zip(images, cameras):
        xy, z = camera.project(points)
        ray = camera.centre - points
        cos = np.einsum("nc,nc->n", point_normals, ray) / (np.linalg.norm(ray, axis=1) + 1e-12)
        weight = _view_weight(cos)
        zbuffer = rasterize_view(positions, uv_faces, camera).depth
        col, row = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
        inside = (z > 0) & (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
        visible = np.zeros(len(points), bool)
        visible[inside] = z[inside] <= zbuffer[row[inside], col[inside]] + 2.0 * edge
        weight = np.where(visible, weight, 0.0)
        colours.append(sample_image(image, xy.astype(np.float32)))
        weights.append(weight.astype(np.float32))
    C = np.array(colours)                       # (views, N, 3) uint8
    W = np.array(weights)                       # (views, N)
    blend = W ** FUSE_POWER
    total = blend.sum(0)
    gains = np.ones((len(images), 3), np.float32)
    for _ in range(2):                          # exposure: each view's gain towards the blend of all
        mean = _blend(C, gains, blend, total)
        for v in range(len(images)):
            both = (W[v] >= FUSE_OVERLAP_WEIGHT) & (total > blend[v] + 1e-9)
            if both.sum() >= 200:
                ratio = np.median(mean[both], axis=0) / np.maximum(np.median(C[v, both], axis=0), 1.0)
                gains[v] = np.clip(ratio, *FUSE_GAIN_RANGE)
    colour = _blend(C, gains, blend, total)
    seen = total > 0
    flat = np.zeros((size * size, 3))
    has = np.zeros(size * size, bool)
    index = np.flatnonzero(covered.ravel())
    flat[index[seen]] = colour[seen]
    has[index[seen]] = True
    if has.any():
        _, nearest = ndimage.distance_transform_edt(~has.reshape(size, size), return_indices=True)
        flat = flat.reshape(size, size, 3)[nearest[0], nearest[1]].reshape(-1, 3)
    texture = np.clip(flat, 0, 255).round().astype(np.uint8).reshape(size, size, 3)
    return TexturedMesh(positions.astype(np.float32), uv, uv_faces, texture, float(seen.mean()) if len(seen) else 0.0)


def _blend(colours: np.ndarray, gains: np.ndarray, blend: np.ndarray, total: np.ndarray) -> np.ndarray:
    """(N, 3) the views' colours (V, N, 3) times their gains (V, 3), weighted by ``blend`` (V, N)."""
    out = np.zeros(colours.shape[1:], np.float32)
    for c, g, b in zip(colours, gains, blend):
        out += (b[:, None] * g) * c
    return out / np.maximum(total, 1e-12)[:, None]
