"""Dense depth on the CPU: a plane sweep with ZNCC per reference view, then a geometric consistency
check between views.

For each reference view the neighbours' grey images are warped onto planes parallel to the
reference image, at depths spaced evenly in inverse depth between the sparse points' near and far
bounds (a plane's homography is exact, so one ``cv2.warpPerspective`` per plane and neighbour does
the whole image), and onto families of planes tilted left, right, up and down, so that a surface
seen obliquely is matched by windows warped as it is; each pixel takes the family that fits best.
The matching cost is the zero-mean normalised cross-correlation over a square window (box
filters); a pixel's score is the mean of its best ``best_of`` neighbours' ZNCC, which tolerates
a neighbour that sees something else there (occlusion). The best plane is refined to sub-plane
depth by a parabola through its neighbours' scores.

The consistency check keeps a depth when enough other views' depth maps agree: the point projected
into the other view, lifted with that view's depth and projected back, lands within ``max_px``
pixels and ``max_relative`` of the depth it started from.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import cv2
import numpy as np

from .cameras import ViewCamera, view_pairs


@dataclass(frozen=True)
class DepthSettings:
    planes: int = 96             # depth hypotheses per view
    window: int = 7              # ZNCC window side, pixels
    neighbours: int = 4          # views matched against each reference view
    best_of: int = 2             # a pixel's score: the mean of its best this many neighbours' ZNCC
    min_score: float = 0.55      # below this mean ZNCC a depth is dropped
    min_texture: float = 2.0     # grey-level standard deviation (0..255) a window needs to be matched
    max_px: float = 1.0          # consistency: reprojection error in pixels
    max_relative: float = 0.01   # consistency: relative depth difference
    min_consistent: int = 1      # consistency: views that must agree
    # Planes tilted this far left and right (3x the time) and up and down (5x) beside the ones facing
    # the camera: fronto-parallel windows misfit a surface seen obliquely (docs/scan.md, Measured).
    slant_deg: float = 40.0
    slant_up_down: bool = True


@dataclass
class DepthMap:
    """One view's depths at the dense resolution."""

    depth: np.ndarray      # (H, W) float32 depth along the camera axis, world units; 0 where unknown
    score: np.ndarray      # (H, W) float32 the ZNCC score of the chosen plane
    camera: ViewCamera     # the camera at this resolution


OUTSIDE = -1.0e6   # the warps' border value: far below any grey level


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _box(image: np.ndarray, window: int) -> np.ndarray:
    return cv2.boxFilter(image, -1, (window, window), borderType=cv2.BORDER_REFLECT)


def depth_bounds(camera: ViewCamera, points: np.ndarray, margin: float = 0.15) -> tuple[float, float] | None:
    """Near and far depths of the sparse points this camera sees (2nd and 98th percentiles, widened)."""
    if len(points) == 0:
        return None
    uv, z = camera.project(points)
    seen = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    if seen.sum() < 10:
        return None
    near, far = np.percentile(z[seen], [2, 98])
    span = far - near
    return max(near - margin * span, 0.2 * near), far + margin * span


def _mean_of_largest(values: np.ndarray, k: int) -> np.ndarray:
    """(n, H, W) -> (H, W): each pixel's mean of its k largest values over the first axis. Kept as k
    running maxima (a sorting network), many times faster than ``np.partition`` along that axis."""
    top = [np.full(values.shape[1:], -np.inf, values.dtype) for _ in range(k)]
    for value in values:
        for j in range(k):
            larger = np.maximum(top[j], value)
            value = np.minimum(top[j], value)
            top[j] = larger
    return np.stack(top).mean(0)


def plane_normals(slant_deg: float, slant_up_down: bool = True) -> list[np.ndarray]:
    """Plane normals in the reference camera's frame: facing the camera, and with ``slant_deg`` > 0
    also tilted that far to the left and right, and up and down."""
    normals = [np.array([0.0, 0.0, 1.0])]
    if slant_deg > 0:
        s, c = np.sin(np.radians(slant_deg)), np.cos(np.radians(slant_deg))
        normals += [np.array([s, 0.0, c]), np.array([-s, 0.0, c])]
        if slant_up_down:
            normals += [np.array([0.0, s, c]), np.array([0.0, -s, c])]
    return normals


def _sweep_one_normal(ref: np.ndarray, mean_r: np.ndarray, var_r: np.ndarray, camera: ViewCamera, rays: np.ndarray,
                      grey_sources: list[np.ndarray], relative: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                      inv_depths: np.ndarray, normal: np.ndarray, settings: DepthSettings
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One family of parallel planes with ``normal``, placed so that the image centre's ray meets them
    at ``inv_depths``: each pixel's best ZNCC, its inverse depth (parabola-refined) and whether the
    best plane lay inside the sweep (not at its ends). ``rays`` (H, W, 3): each pixel's ray (z = 1);
    ``relative``: per source its (K, R, t) from the reference camera's frame."""
    w, n = settings.window, len(inv_depths)
    height, width = ref.shape
    K_inv = np.linalg.inv(camera.K)
    centre_ray = K_inv @ np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
    # a pixel's inverse depth on a plane is the centre's times ratio (n . ray / n . centre ray)
    ratio = (rays @ normal) / (centre_ray @ normal)
    best_of = min(settings.best_of, len(grey_sources))
    scores = np.full((n, height, width), -1.0, np.float32)
    per_source = np.empty((len(grey_sources), height, width), np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for k, inv_depth in enumerate(inv_depths):
        for s, (src, (K, R, t)) in enumerate(zip(grey_sources, relative)):
            # the plane n . X = c (reference frame) with c = (n . centre ray) / inv_depth
            H = K @ (R + np.outer(t, normal * (inv_depth / (centre_ray @ normal)))) @ K_inv
            # off the source image the border's large negative value marks a pixel outside (any
            # interpolation weight beyond the image shows), and is then read as 0 in the windows
            warped = cv2.warpPerspective(src, H, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                         borderValue=OUTSIDE)
            outside = warped < -0.5
            np.maximum(warped, 0, out=warped)
            mean_s = _box(warped, w)
            var_s = np.maximum(_box(warped * warped, w) - mean_s ** 2, 0)
            cov = _box(warped * ref, w) - mean_s * mean_r
            zncc = cov / np.sqrt(var_r * var_s + 1e-6)
            zncc[outside | (var_s < settings.min_texture ** 2)] = -1.0
            per_source[s] = zncc
        scores[k] = per_source.mean(0) if best_of == len(grey_sources) else _mean_of_largest(per_source, best_of)
    best = np.argmax(scores, axis=0)
    rows, cols = np.indices(best.shape)
    score = scores[best, rows, cols]
    # parabola through the scores of the planes on either side of the best one
    lo, hi = np.clip(best - 1, 0, n - 1), np.clip(best + 1, 0, n - 1)
    s0, s2 = scores[lo, rows, cols], scores[hi, rows, cols]
    curvature = s0 - 2 * score + s2
    offset = np.where((curvature < 0) & (best > 0) & (best < n - 1), 0.5 * (s0 - s2) / np.minimum(curvature, -1e-6), 0)
    step = inv_depths[1] - inv_depths[0]
    inv = (inv_depths[best] + np.clip(offset, -0.5, 0.5) * step) * ratio
    return score, inv, (best > 0) & (best < n - 1) & (ratio > 0)


def plane_sweep(reference: np.ndarray, camera: ViewCamera, sources: list[np.ndarray],
                source_cameras: list[ViewCamera], near: float, far: float,
                settings: DepthSettings = DepthSettings()) -> DepthMap:
    """The reference view's depth map from ``sources`` (RGB uint8, their cameras at their size): the
    sweep on each family of ``plane_normals``, each pixel taking the family that matched it best."""
    ref = _grey(reference)
    mean_r = _box(ref, settings.window)
    var_r = np.maximum(_box(ref * ref, settings.window) - mean_r ** 2, 0)
    textured = var_r > settings.min_texture ** 2
    inv_depths = np.linspace(1.0 / near, 1.0 / far, settings.planes)
    grey_sources = [_grey(s) for s in sources]
    relative = []
    for source in source_cameras:
        R = source.R @ camera.R.T
        relative.append((source.K, R, source.t - R @ camera.t))
    height, width = ref.shape
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(camera.K).T
    score = inv = interior = None
    for normal in plane_normals(settings.slant_deg, settings.slant_up_down):
        found = _sweep_one_normal(ref, mean_r, var_r, camera, rays, grey_sources, relative, inv_depths, normal,
                                  settings)
        if score is None:
            score, inv, interior = found
        else:
            better = found[0] > score
            score, inv, interior = (np.where(better, a, b) for a, b in zip(found, (score, inv, interior)))
    depth = (1.0 / np.maximum(inv, 1e-12)).astype(np.float32)
    valid = textured & (score >= settings.min_score) & interior & (depth >= near) & (depth <= far)
    depth[~valid] = 0
    return DepthMap(depth, score.astype(np.float32), camera)


def backproject(depth_map: DepthMap) -> tuple[np.ndarray, np.ndarray]:
    """World points (P, 3) of the known depths, and their (P, 2) integer pixels (x, y)."""
    ys, xs = np.nonzero(depth_map.depth > 0)
    z = depth_map.depth[ys, xs].astype(np.float64)
    rays = np.stack([xs, ys, np.ones_like(xs)], axis=1) @ np.linalg.inv(depth_map.camera.K).T
    cam = rays * z[:, None]
    world = (cam - depth_map.camera.t) @ depth_map.camera.R
    return world, np.stack([xs, ys], axis=1)


def consistent(maps: list[DepthMap], neighbours: list[list[int]], settings: DepthSettings = DepthSettings()) -> list[DepthMap]:
    """Each map with the depths that fewer than ``min_consistent`` of its neighbours confirm set to 0."""
    out = []
    for i, dm in enumerate(maps):
        points, pixels = backproject(dm)
        z0 = dm.depth[pixels[:, 1], pixels[:, 0]]
        agree = np.zeros(len(points), np.int32)
        for j in neighbours[i]:
            other = maps[j]
            uv, _ = other.camera.project(points)
            xj, yj = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
            inside = (xj >= 0) & (xj < other.depth.shape[1]) & (yj >= 0) & (yj < other.depth.shape[0])
            dj = np.zeros(len(points))
            dj[inside] = other.depth[yj[inside], xj[inside]]
            has = dj > 0
            # lift along the exact ray (not the rounded pixel's): rounding alone moves a slanted point
            rays = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ np.linalg.inv(other.camera.K).T
            lifted = (rays * dj[:, None] - other.camera.t) @ other.camera.R
            back, zb = dm.camera.project(lifted)
            ok = has & (np.linalg.norm(back - pixels, axis=1) <= settings.max_px) & (
                np.abs(zb - z0) <= settings.max_relative * z0)
            agree += ok
        need = min(settings.min_consistent, len(neighbours[i]))
        depth = np.zeros_like(dm.depth)
        keep = agree >= max(need, 1)
        depth[pixels[keep, 1], pixels[keep, 0]] = z0[keep]
        out.append(DepthMap(depth, dm.score, dm.camera))
    return out


def dense_depth(images: list[np.ndarray], cameras: list[ViewCamera], points: np.ndarray, dense_side: int,
                settings: DepthSettings = DepthSettings(), progress=lambda done, total: None) -> list[DepthMap]:
    """Consistent depth maps of all views at ``dense_side`` pixels on the longer side. Views without
    neighbours or depth bounds get an empty map."""
    factor = [min(1.0, dense_side / max(im.shape[:2])) for im in images]
    small_cams = [c.scaled(f) for c, f in zip(cameras, factor)]
    small = [cv2.resize(im, (c.width, c.height), interpolation=cv2.INTER_AREA) for im, c in zip(images, small_cams)]
    neighbours = view_pairs(cameras, settings.neighbours)

    def sweep(i: int) -> DepthMap:
        camera = small_cams[i]
        bounds = depth_bounds(camera, points)
        if not neighbours[i] or bounds is None:
            return DepthMap(np.zeros((camera.height, camera.width), np.float32),
                            np.zeros((camera.height, camera.width), np.float32), camera)
        return plane_sweep(small[i], camera, [small[j] for j in neighbours[i]],
                           [small_cams[j] for j in neighbours[i]], *bounds, settings)

    # One view per core: most of a sweep is numpy and OpenCV calls on whole images, which release
    # the GIL, and one view at a time left the second core mostly idle.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [pool.submit(sweep, i) for i in range(len(small_cams))]
        for done, _ in enumerate(as_completed(futures), 1):
            progress(done, len(small_cams))
        maps = [f.result() for f in futures]
    return consistent(maps, neighbours, settings)
