"""UV position maps (PRNet): the geometry shared by the regressor's training and its inference.

A position map is an (N, N, 3) image in the model's square texture atlas (``model.ATLAS``): each
texel inside the face and head/neck UV islands holds the position of the surface point at that UV,
in the *crop frame* of the input image:

    x, y = (pixel - crop centre) / (crop side / 2)          (image axes: x right, y down)
    z    = (depth - ref depth) * focal / ref depth / (crop side / 2)

where ref depth is the mean camera depth of the face-area vertices. Near the reference depth this
is a similarity of the camera frame, so x, y line up with the pixels and z is depth on the same
scale. The texel -> (triangle, barycentric) raster is fixed, so building a map is one sparse
product with the vertices, and reading the mesh back is one bilinear lookup per vertex.

The crop (:func:`crop_window`) is a square around a detection box; training builds its boxes to
look like the detector's, so the same function serves both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy.spatial import cKDTree

from .camera import Camera
from .model import EXPORTED_PARTS, PARTS, HeadModel, in_face_area, uv_to_texel
from .render.raster import rasterize

MAP_PARTS = ("face", "head_neck")   # the rest (sockets, eyeballs) is inside or hidden; the model fit restores it
# Crop side / detector box side, and the crop centre's offset from the box centre (fraction of the
# box side, +y down). MediaPipe's box spans brows to mouth; 2.2 sides keep the chin and most of the
# head in view, and the offset centres the crop a little lower, on the whole face.
CROP_SCALE = 2.2
CROP_SHIFT_Y = 0.08
# Loss weights by region (PRNet's weight mask): eyes, nose and mouth, then the rest of the face,
# then the head and neck, whose back is never seen.
WEIGHT_FEATURES, WEIGHT_FACE, WEIGHT_HEAD = 4.0, 2.0, 0.5
FEATURE_RADIUS_CM = 1.2
RELIABLE_CM = 0.15


@dataclass(frozen=True)
class CropWindow:
    """A square crop: centre (pixel-centre coordinates) and side in image pixels."""
    cx: float
    cy: float
    side: float

    def to_crop(self, size: int) -> np.ndarray:
        """2x3 affine: image pixel -> crop pixel of a (size, size) crop (pixel centres at integers)."""
        k = size / self.side
        return np.array([[k, 0.0, size / 2 - 0.5 - k * self.cx], [0.0, k, size / 2 - 0.5 - k * self.cy]])


def detector_like_box(vertices_cam: np.ndarray, camera: Camera, model: HeadModel) -> np.ndarray:
    """[x0, y0, x1, y1]: the box of a head's projected 68 landmark vertices (camera-frame vertices
    (V, 3)), which MediaPipe's face box matches on our renders (scripts/measure_regress_boxes.py):
    training crops around it, and so does a synthetic view that no detector has seen."""
    pixels = camera.project(vertices_cam[model.landmarks68])
    return np.r_[pixels.min(0), pixels.max(0)]


def crop_window(box: np.ndarray) -> CropWindow:
    """The regressor's crop for a detection box [x0, y0, x1, y1] (training uses it too)."""
    box = np.asarray(box, np.float64)
    side = max(box[2] - box[0], box[3] - box[1])
    return CropWindow(0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]) + CROP_SHIFT_Y * side,
                      CROP_SCALE * side)


def crop_image(image: np.ndarray, window: CropWindow, size: int) -> np.ndarray:
    """(size, size, 3) crop of ``image``, black outside it; area-averaged first when shrinking
    more than 2x, since bilinear warping alone aliases there."""
    h, w = image.shape[:2]
    half = window.side / 2
    x0, y0 = max(0, math.floor(window.cx - half)), max(0, math.floor(window.cy - half))
    x1, y1 = min(w, math.ceil(window.cx + half + 1)), min(h, math.ceil(window.cy + half + 1))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8)
    region = image[y0:y1, x0:x1]
    k = max(1, math.floor(window.side / size / 2))
    if k > 1:
        region = cv2.resize(region, (max(1, region.shape[1] // k), max(1, region.shape[0] // k)),
                            interpolation=cv2.INTER_AREA)
    # region pixel j (centre) covers image pixels [x0 + k*j, x0 + k*j + k), centre x0 + k*j + (k-1)/2
    to_crop = window.to_crop(size)
    region_to_image = np.array([[k, 0.0, x0 + (k - 1) / 2], [0.0, k, y0 + (k - 1) / 2], [0.0, 0.0, 1.0]])
    matrix = to_crop @ region_to_image
    return cv2.warpAffine(region, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def to_crop_frame(vertices_cam: np.ndarray, focal: float, cx: float, cy: float, window: CropWindow,
                  ref_depth: float) -> np.ndarray:
    """Camera-frame points (n, 3) cm -> crop-frame points (n, 3) (see the module docstring)."""
    z = vertices_cam[:, 2]
    half = window.side / 2
    out = np.empty(vertices_cam.shape, np.float32)
    out[:, 0] = (vertices_cam[:, 0] / z * focal + cx - window.cx) / half
    out[:, 1] = (vertices_cam[:, 1] / z * focal + cy - window.cy) / half
    out[:, 2] = (z - ref_depth) * focal / ref_depth / half
    return out


def from_crop_frame(points: np.ndarray, focal: float, cx: float, cy: float, window: CropWindow,
                    ref_depth: float) -> np.ndarray:
    """Inverse of :func:`to_crop_frame` for a given reference depth; a wrong reference depth scales
    the result about the camera centre (the projections stay right)."""
    half = window.side / 2
    z = ref_depth * (1.0 + points[:, 2] * half / focal)
    px = points[:, 0] * half + window.cx
    py = points[:, 1] * half + window.cy
    return np.column_stack([(px - cx) * z / focal, (py - cy) * z / focal, z])


@dataclass(frozen=True)
class UVLayout:
    """The fixed texel <-> surface correspondence of an (N, N) position map."""
    size: int
    mask: np.ndarray            # (N, N) bool, texels on the surface
    weights: np.ndarray         # (N, N) float32 loss weight (0 off the surface)
    texel_vertices: np.ndarray  # (M, 3) int32 model vertex indices of the texel's triangle (M = mask.sum())
    texel_bary: np.ndarray      # (M, 3) float32
    vertices: np.ndarray        # (n,) int32 model vertices read back from the map
    sample_index: np.ndarray    # (n, 4) int32 flat texel indices of the bilinear corners
    sample_weight: np.ndarray   # (n, 4) float32 bilinear weights over valid texels (rows sum to 1)
    reliable: np.ndarray        # (n,) bool, vertices the map reproduces within RELIABLE_CM

    def render(self, vertices: np.ndarray) -> np.ndarray:
        """(V, 3) per-vertex values (all model vertices) -> (N, N, 3) map, 0 off the surface."""
        out = np.zeros((self.size * self.size, vertices.shape[1]), np.float32)
        out[self.mask.ravel()] = np.einsum("mk,mkc->mc", self.texel_bary, vertices[self.texel_vertices])
        return out.reshape(self.size, self.size, -1)

    def sample(self, posmap: np.ndarray) -> np.ndarray:
        """(N, N, C) map -> (n, C) values at ``self.vertices``' UVs."""
        flat = posmap.reshape(self.size * self.size, -1)
        return np.einsum("nk,nkc->nc", self.sample_weight, flat[self.sample_index])


def _feature_vertices(model: HeadModel) -> np.ndarray:
    """The 68-landmark vertices of the eyes (36-47), nose (27-35) and mouth (48-67)."""
    return model.landmarks68[27:68]


_LAYOUTS: dict[tuple[int, int], UVLayout] = {}


def uv_layout(model: HeadModel, size: int) -> UVLayout:
    """The layout of a (size, size) map, built once per model and size (about a second)."""
    key = (id(model), size)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _build_layout(model, size)
    return _LAYOUTS[key]


def map_triangles(model: HeadModel) -> np.ndarray:
    """(T, 3) indices into ``model.export_topology`` of the triangles a position map covers: the
    face and head/neck parts (by part and by vertex: a few head/neck triangles reach into the mouth
    socket, whose UV island overlaps theirs)."""
    index, _, tris = model.export_topology
    parts = [EXPORTED_PARTS.index(p) for p in MAP_PARTS]
    return tris[np.isin(model.triangle_part, parts) & np.all(index[tris] <= PARTS[MAP_PARTS[-1]][1], axis=1)]


def _build_layout(model: HeadModel, size: int) -> UVLayout:
    index, uv, _ = model.export_topology
    tris = map_triangles(model)
    xy = uv_to_texel(uv, size)
    frags = rasterize(xy, np.ones(len(uv), np.float32), tris, size, size)
    mask = frags.mask
    texel_vertices = index[tris[frags.triangle[mask]]].astype(np.int32)
    texel_bary = frags.bary[mask].astype(np.float32)

    # region weights from the neutral surface point under each texel
    points = np.einsum("mk,mkc->mc", texel_bary, model.neutral[texel_vertices])
    near = cKDTree(model.neutral[_feature_vertices(model)]).query(points)[0] < FEATURE_RADIUS_CM
    in_face = np.all(in_face_area(texel_vertices), axis=1)
    weights = np.zeros((size, size), np.float32)
    weights[mask] = np.where(near & in_face, WEIGHT_FEATURES, np.where(in_face, WEIGHT_FACE, WEIGHT_HEAD))

    # read-back: one UV per vertex (any copy at a seam gives the same point), bilinear over valid texels
    used = np.unique(index[tris])
    first = np.full(len(model.neutral), -1, np.int64)
    first[index[::-1]] = np.arange(len(index))[::-1]
    corner_uv = uv[first[used]]
    fx, fy = uv_to_texel(corner_uv, size).T
    x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
    ax, ay = fx - x0, fy - y0
    cols = np.stack([x0, x0 + 1, x0, x0 + 1], 1)
    rows = np.stack([y0, y0, y0 + 1, y0 + 1], 1)
    w = np.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], 1)
    inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    cols, rows = np.clip(cols, 0, size - 1), np.clip(rows, 0, size - 1)
    valid = inside & mask[rows, cols]
    w = np.where(valid, w, 0.0)
    total = w.sum(1, keepdims=True)
    flat = rows * size + cols
    # a vertex with no valid texel around it (a sliver triangle) takes the nearest valid texel
    lonely = total[:, 0] < 1e-6
    if lonely.any():
        valid_rc = np.argwhere(mask)
        nearest = valid_rc[cKDTree(valid_rc).query(np.column_stack([fy[lonely], fx[lonely]]))[1]]
        flat[lonely] = (nearest[:, 0] * size + nearest[:, 1])[:, None]
        w[lonely] = [1.0, 0.0, 0.0, 0.0]
        total[lonely] = 1.0
    layout = UVLayout(size, mask, weights, texel_vertices, texel_bary, used.astype(np.int32),
                      flat.astype(np.int32), (w / total).astype(np.float32), np.ones(len(used), bool))
    # Where UV islands are squeezed (lid and lip rims) a few texels stand for many vertices and the
    # read-back is off by more than the map can carry; the model fit leaves those vertices out.
    error = np.linalg.norm(layout.sample(layout.render(model.neutral)) - model.neutral[used], axis=1)
    return replace(layout, reliable=error < RELIABLE_CM)


def landmark_heatmaps(pixels: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """(K, 2) crop pixels -> (K, size, size) float32 Gaussians with peak 1."""
    grid = np.arange(size, dtype=np.float32)
    gx = np.exp(-((grid[None, :] - pixels[:, :1]) ** 2) / (2 * sigma ** 2))
    gy = np.exp(-((grid[None, :] - pixels[:, 1:]) ** 2) / (2 * sigma ** 2))
    return (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
