"""Does the subject move? A video's consecutive keyframes against the cameras structure from motion found.

Structure from motion registers a clip's keyframes on what holds still, which is the room when an
animal walks through it. A point that holds still maps, between two registered views, onto its
epipolar segment: the pixel's ray seen in the other view between the scene's near and far depths.
Dense optical flow (OpenCV's DIS) between consecutive keyframes, kept where it is reliable (textured,
forward and backward flows agree), is measured against those segments: a subject that moves on its
own is a coherent region of flow off its segments, while a still scene leaves only scattered pixels
(mismatches, reflections). The segment, not the epipolar line alone, keeps the test whole when the
camera barely moves (its lines then say nothing; its segments shrink to a point). Keyframe pairs
with such a region "move"; the longest run of still pairs is a still stretch, scanned on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ScanInputError
from .cameras import CameraSet, ViewCamera
from .depth import depth_bounds
from .views import Views

FLOW_SIDE = 320          # frames are compared at this size on the longer side
GRID = 4                 # flow sampled every this many pixels
MAX_FB_PX = 0.5          # forward-backward disagreement above this: the flow is not trusted
MIN_GRADIENT = 6.0       # grey gradient (0..255 per pixel) below this: too flat to trust the flow
MOVING_PX = 2.0          # flow this far off its epipolar segment is motion the camera's does not explain
MOVING_REGION = 0.02     # the largest such region, as a share of the reliable flow, that makes a pair move
MIN_STILL_VIEWS = 8      # a still stretch shorter than this many keyframes is not worth scanning


@dataclass
class PairMotion:
    """How much of one keyframe pair's reliable flow no still scene explains."""

    moving_share: float     # the largest connected region of unexplained flow / the reliable flow
    reliable: int           # grid points with trusted flow

    @property
    def moves(self) -> bool:
        return self.moving_share >= MOVING_REGION


def _grey(image: np.ndarray, side: int) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = side / max(grey.shape)
    return cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def _segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) the distance of points q (N, 2) from the segments a-b (N, 2 each)."""
    ab = b - a
    t = np.clip(np.einsum("nc,nc->n", q - a, ab) / np.maximum(np.einsum("nc,nc->n", ab, ab), 1e-12), 0, 1)
    return np.linalg.norm(a + t[:, None] * ab - q, axis=1)


def pair_motion(first: np.ndarray, second: np.ndarray, camera_first: ViewCamera, camera_second: ViewCamera,
                near: float, far: float) -> PairMotion:
    """The flow from ``first`` to ``second`` (RGB, at their cameras' size) that no still point between
    depths ``near`` and ``far`` of the first camera explains."""
    side = min(FLOW_SIDE, max(first.shape[:2]))
    a, b = _grey(first, side), _grey(second, side)
    cam_a = camera_first.scaled(a.shape[1] / first.shape[1])
    cam_b = camera_second.scaled(b.shape[1] / second.shape[1])
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    forward, backward = dis.calc(a, b, None), dis.calc(b, a, None)
    height, width = a.shape
    ys, xs = np.mgrid[GRID // 2:height:GRID, GRID // 2:width:GRID]
    p = np.stack([xs, ys], axis=-1).astype(np.float32)
    q = p + forward[ys, xs]
    back = cv2.remap(backward, q[..., 0], q[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(1e3, 1e3))
    gx, gy = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3) / 8
    gradient = cv2.GaussianBlur(np.hypot(gx, gy), (0, 0), 1.5)[ys, xs]
    reliable = (np.linalg.norm(forward[ys, xs] + back, axis=-1) < MAX_FB_PX) & (gradient > MIN_GRADIENT)
    count = int(reliable.sum())
    if count < 50:
        return PairMotion(0.0, count)
    src, dst = p[reliable].astype(np.float64), q[reliable].astype(np.float64)
    rays = np.column_stack([src, np.ones(len(src))]) @ np.linalg.inv(cam_a.K).T
    (near_uv, near_z), (far_uv, far_z) = (cam_b.project((rays * depth - cam_a.t) @ cam_a.R) for depth in (near, far))
    # a near end behind the other camera: the segment from the far end alone
    distance = _segment_distance(dst, np.where(near_z[:, None] > 0, near_uv, far_uv), far_uv)
    unexplained = np.zeros(reliable.shape, np.uint8)
    unexplained[reliable] = (distance > MOVING_PX) | (far_z <= 0)
    # the region must hold together: scattered mismatches are not a subject
    unexplained = cv2.morphologyEx(unexplained, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    sizes = cv2.connectedComponentsWithStats(unexplained, connectivity=8)[2]
    largest = int(sizes[1:, cv2.CC_STAT_AREA].max()) if len(sizes) > 1 else 0
    return PairMotion(largest / count, count)


def keyframe_motion(views: Views, cameras: CameraSet) -> list[PairMotion]:
    """The motion between each two consecutive registered keyframes (``cameras.keep`` order)."""
    motions = []
    for k in range(len(cameras.keep) - 1):
        camera = cameras.cameras[k]
        bounds = depth_bounds(camera, cameras.points, margin=0.5) or (1e-3, 1e3)
        motions.append(pair_motion(views.images[cameras.keep[k]], views.images[cameras.keep[k + 1]], camera,
                                   cameras.cameras[k + 1], *bounds))
    return motions


def still_stretch(views: Views, cameras: CameraSet, log=lambda line: None) -> CameraSet:
    """The cameras of a video's keyframes where the subject holds still: all of them, or the longest
    run of consecutive keyframes with no motion between them (at least ``MIN_STILL_VIEWS``). Raises
    ScanInputError when the subject moves throughout."""
    motions = keyframe_motion(views, cameras)
    moving = [m.moves for m in motions]
    if not any(moving):
        return cameras
    runs, start = [], 0
    for k, moves in enumerate(moving + [True]):
        if moves:
            runs.append((start, k))     # keyframes start..k of cameras.keep, joined by still pairs
            start = k + 1
    first, last = max(runs, key=lambda r: r[1] - r[0])
    length = last - first + 1
    summary = (f"{sum(moving)} of {len(moving)} keyframe pairs show motion the camera's does not explain "
               f"(up to {100 * max(m.moving_share for m in motions):.0f} % of the tracked pixels)")
    if length < MIN_STILL_VIEWS:
        raise ScanInputError(f"the subject moves: {summary}; the longest still stretch has {length} keyframe(s) "
                             f"and a scan needs {MIN_STILL_VIEWS}: a walking animal cannot be scanned")
    names = [views.names[i] for i in cameras.keep[first:last + 1]]
    log(f"the subject moves: {summary}; scanning the still stretch {names[0]} .. {names[-1]} ({length} keyframes)")
    return CameraSet(cameras.cameras[first:last + 1], cameras.points, cameras.source, cameras.keep[first:last + 1],
                     cameras.reprojection_px)
