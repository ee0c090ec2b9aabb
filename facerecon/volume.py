"""Occupancy volumes (VRN): the geometry shared by the volumetric regressor's training and inference.

A volume is (D, R, R) in the crop frame of ``posmap`` (R = half the input size): column (row y,
column x) is crop pixel (2x + 0.5, 2y + 0.5) at half resolution, and depth bin k holds crop-frame
z = -1 + (k + 0.5) * 2 / D, i.e. one crop half-side in front of and behind the face's mean depth.
A voxel is occupied between the head surface nearest the camera and the farthest one along its
column; the face and head/neck surface is not closed, so the far side is the back of the head
where it is in range. Inference uses only the visible side of the surface: marching cubes' vertices
that face the camera, or the first occupied bin per column.
"""
from __future__ import annotations

import numpy as np

from .errors import require
from .model import HeadModel
from .posmap import map_triangles
from .render.raster import rasterize

Z_RANGE = 1.0     # crop-frame depth covered: [-Z_RANGE, Z_RANGE]
_LIFT = 10.0      # the rasteriser wants positive depth: shift crop-frame z by this


def bin_centres(bins: int) -> np.ndarray:
    return (-Z_RANGE + (np.arange(bins) + 0.5) * 2 * Z_RANGE / bins).astype(np.float32)


def occupancy(points: np.ndarray, model: HeadModel, resolution: int, bins: int) -> np.ndarray:
    """Crop-frame vertex positions (V, 3) of a head -> (bins, R, R) float32 occupancy in {0, 1}."""
    index = model.export_topology[0]
    tris = map_triangles(model)
    pts = points[index]
    xy = (pts[:, :2] + 1.0) * resolution / 2 - 0.5
    front = rasterize(xy, pts[:, 2] + _LIFT, tris, resolution, resolution).depth - _LIFT
    back = _LIFT - rasterize(xy, _LIFT - pts[:, 2], tris, resolution, resolution).depth
    z = bin_centres(bins)[:, None, None]
    return ((z >= front[None]) & (z <= back[None])).astype(np.float32)


def front_surface(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(D, R, R) occupancy probabilities -> (n, 3) crop-frame points: per column, where the
    probability first crosses ``threshold`` (linear between bins); columns never crossing it give none."""
    bins, res = prob.shape[0], prob.shape[1]
    above = prob >= threshold
    hit = above.any(0)
    first = np.argmax(above, axis=0)
    ys, xs = np.nonzero(hit)
    k = first[ys, xs]
    z = bin_centres(bins)
    p1 = prob[k, ys, xs]
    p0 = np.where(k > 0, prob[np.maximum(k - 1, 0), ys, xs], 0.0)
    frac = np.clip((threshold - p0) / np.maximum(p1 - p0, 1e-6), 0.0, 1.0)
    step = 2 * Z_RANGE / bins
    depth = np.where(k > 0, z[k] - step * (1.0 - frac), z[0])
    return np.column_stack([(xs + 0.5) * 2 / res - 1.0, (ys + 0.5) * 2 / res - 1.0, depth]).astype(np.float32)


def marching_cubes_surface(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(D, R, R) occupancy probabilities -> (n, 3) crop-frame points: the vertices of the
    ``threshold`` iso-surface (scikit-image's marching cubes, as VRN extracts its mesh) whose outward
    normal faces the camera, i.e. the visible side of the surface."""
    marching_cubes = require("skimage.measure", "eval", "--method vrn").marching_cubes   # only vrn needs it
    bins, res = prob.shape[0], prob.shape[1]
    if prob.max() < threshold or prob.min() >= threshold:
        return np.zeros((0, 3), np.float32)
    # pad with empty space so that surfaces cut by the volume's faces still close
    verts, _, normals, _ = marching_cubes(np.pad(prob, 1), threshold, gradient_direction="descent")
    verts -= 1.0
    visible = normals[:, 0] < 0          # outward normal pointing toward smaller depth: the camera
    k, y, x = verts[visible].T
    inside = (k > 0) & (k < bins - 1)     # drop the caps the padding adds at the depth range's ends
    k, y, x = k[inside], y[inside], x[inside]
    depth = -Z_RANGE + (k + 0.5) * 2 * Z_RANGE / bins
    return np.column_stack([(x + 0.5) * 2 / res - 1.0, (y + 0.5) * 2 / res - 1.0, depth]).astype(np.float32)
