"""Pictures for people: reconstructed heads drawn over the photo, and turntable animations."""
from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import cv2
import numba
import numpy as np
from PIL import Image

from ..camera import Camera, rotation_from_angles
from ..model import HeadModel
from . import lighting
from .renderer import render_batch, render_mesh

OVERLAY_OPACITY = 0.6
OVERLAY_LIGHT = lighting.frontal(key=0.5, ambient_level=0.35)    # light grey clay, never blown out
OVERLAY_MAX_SUPERSAMPLED_PIXELS = 2_000_000                       # beyond this, edges are fine at 1x
LANDMARK_COLOR = (40, 255, 40)

TURNTABLE_FOV_DEG = 20.0          # a long lens, so the head is not distorted by perspective
TURNTABLE_MARGIN = 1.05           # bounding sphere radius to half the frame
TURNTABLE_BACKGROUND = (0.3, 0.3, 0.3)   # dark grey: apart from both clay and skin tones
TURNTABLE_LIGHT = lighting.frontal(key=0.4, ambient_level=0.6)    # soft: mostly ambient
CLAY_ALBEDO = 0.85                # an untextured head
TURNTABLE_BATCH = 8               # frames rendered together; bounds memory at 512 px, 2x2 samples


def overlay(image: np.ndarray, meshes: Sequence[np.ndarray], camera: Camera, model: HeadModel,
            landmarks: np.ndarray | Sequence[np.ndarray] | None = None,
            opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """The photo (H, W, 3) uint8 with each head drawn as semi-transparent lit grey clay.

    meshes: camera-frame vertices (V, 3) cm in the model's vertex order, one per face; they share
    one z-buffer so nearer heads hide farther ones. landmarks: (M, 2) pixel points, or one such
    array per face, drawn as dots. Returns a new (H, W, 3) uint8 image.
    """
    height, width = image.shape[:2]
    if (camera.width, camera.height) != (width, height):
        raise ValueError(f"camera is {camera.width}x{camera.height}, image is {width}x{height}")
    out = image.copy()
    # Render only the boxes the heads project into (photos are large, faces often small), one box
    # per group of heads whose boxes overlap: those share a z-buffer, so nearer heads hide farther ones.
    boxes = [_projected_box(np.asarray(m, np.float32), model, camera) for m in meshes]
    n_verts = model.neutral.shape[0]
    for group in _overlapping_groups(boxes):
        x0, y0, x1, y1 = _union(boxes[i] for i in group)
        verts = np.concatenate([np.asarray(meshes[i], np.float32) for i in group])
        tris = np.concatenate([model.triangles + k * n_verts for k in range(len(group))])
        crop = Camera(camera.focal, camera.cx - x0, camera.cy - y0, int(x1 - x0), int(y1 - y0))
        ss = 2 if crop.width * crop.height * 4 <= OVERLAY_MAX_SUPERSAMPLED_PIXELS else 1
        result = render_mesh(verts, tris, crop, sh=OVERLAY_LIGHT, supersample=ss)
        _blend_into(out[y0:y1, x0:x1], result.image, result.alpha, np.float32(opacity))
    if landmarks is not None and len(landmarks):
        points = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in
                                 ([landmarks] if np.ndim(landmarks) == 2 else landmarks)])
        radius = max(1, round(min(height, width) / 300))
        shift = 4  # cv2 draws at sub-pixel positions given in 1/16 pixel
        for x, y in np.round(points * (1 << shift)).astype(int):
            cv2.circle(out, (int(x), int(y)), radius << shift, LANDMARK_COLOR, -1, cv2.LINE_AA, shift)
    return out


@numba.njit(cache=True, nogil=True)
def _blend_into(photo, clay, alpha, opacity):
    """photo (H, W, 3) uint8 <- photo * (1 - a) + 255 * clay * a, a = opacity * alpha, in float32,
    rounded; only where the clay covers the photo (alpha > 0), the rest stays as it is."""
    one, full, half = np.float32(1.0), np.float32(255.0), np.float32(0.5)
    for y in range(photo.shape[0]):
        for x in range(photo.shape[1]):
            if alpha[y, x] <= 0:
                continue
            a = opacity * alpha[y, x]
            for c in range(3):
                value = photo[y, x, c] * (one - a) + full * clay[y, x, c] * a + half
                photo[y, x, c] = np.uint8(min(max(value, np.float32(0.0)), full))


def _projected_box(vertices: np.ndarray, model: HeadModel, camera: Camera) -> tuple[int, int, int, int] | None:
    """The pixel box (x0, y0, x1, y1), clipped to the image, of a head's vertices in front of the
    camera, one pixel wider on each side; None when none of it is in view."""
    used = vertices[model.used_vertices]
    used = used[used[:, 2] > 0]
    if not len(used):
        return None
    xy = camera.project(used)
    x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + 2, [camera.width, camera.height])
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def _union(boxes) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = zip(*boxes)
    return min(x0), min(y0), max(x1), max(y1)


def _overlapping_groups(boxes: Sequence[tuple[int, int, int, int] | None]) -> list[list[int]]:
    """Indices of ``boxes`` (None: left out) grouped so that no group's union box overlaps
    another's: groups are merged until they are apart."""
    groups = [([i], b) for i, b in enumerate(boxes) if b is not None]
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                (ia, ba), (ib, bb) = groups[a], groups[b]
                if ba[0] < bb[2] and bb[0] < ba[2] and ba[1] < bb[3] and bb[1] < ba[3]:
                    groups[a] = (ia + ib, _union([ba, bb]))
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    return [sorted(i) for i, _ in groups]


def turntable_frames(model: HeadModel, vertices_model: np.ndarray, texture: np.ndarray | None,
                     size: int = 512, n_frames: int = 60) -> list[np.ndarray]:
    """The head turning from yaw -90 to +90 degrees: n_frames (size, size, 3) uint8 images.

    vertices_model: (V, 3) cm, model frame. texture: (S, S, 3) uint8 atlas, or None for grey clay.
    The head turns about the centre of its bounding box, framed by its bounding sphere.
    """
    used = vertices_model[model.used_vertices]
    centre = (used.min(0) + used.max(0)) / 2
    radius = float(np.linalg.norm(used - centre, axis=1).max())
    index, uv, triangles = model.export_topology
    rotations = [rotation_from_angles(yaw, 0.0, 0.0) for yaw in np.linspace(-90.0, 90.0, n_frames)]
    return orbit_frames(vertices_model[index], triangles, rotations, centre, radius, uv=uv, texture=texture,
                        weld=index, size=size)


def orbit_frames(vertices: np.ndarray, triangles: np.ndarray, rotations: Sequence[np.ndarray], centre: np.ndarray,
                 radius: float, *, uv: np.ndarray | None = None, texture: np.ndarray | None = None,
                 weld: np.ndarray | None = None, size: int = 512) -> list[np.ndarray]:
    """A mesh seen by one camera per rotation (world -> camera, OpenCV axes), each looking at
    ``centre`` from where the sphere of ``radius`` about it fills the frame: (size, size, 3) uint8
    frames. vertices: (N, 3) in any unit; uv, texture as ``render_batch``; no texture is grey clay."""
    camera = Camera.for_image(size, size, TURNTABLE_FOV_DEG)
    distance = TURNTABLE_MARGIN * radius / math.sin(math.radians(TURNTABLE_FOV_DEG) / 2)
    clay = None if texture is not None else np.full((len(vertices), 3), CLAY_ALBEDO, np.float32)
    vertices = np.asarray(vertices, np.float32)
    frames = []
    for start in range(0, len(rotations), TURNTABLE_BATCH):
        batch = [np.asarray(r, np.float32) for r in rotations[start:start + TURNTABLE_BATCH]]
        verts = np.stack([vertices @ r.T + (np.array([0, 0, distance], np.float32) - r @ np.asarray(centre, np.float32))
                          for r in batch])
        result = render_batch(verts, triangles, camera, uv=uv, texture=texture, vertex_colors=clay,
                              sh=TURNTABLE_LIGHT, background=TURNTABLE_BACKGROUND, supersample=2,
                              weld=weld)
        frames.extend(np.round(result.image * 255).astype(np.uint8))
    return frames


def _write_atomically(path: Path, write) -> None:
    """Call ``write(temp_path)`` on a hidden file beside ``path``, then rename it onto ``path``."""
    # The temporary name keeps the suffix, which imageio and Pillow use to pick the format.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_turntable(frames: Sequence[np.ndarray], gif_path: str | Path | None = None,
                   mp4_path: str | Path | None = None, fps: int = 30) -> None:
    """Write frames (H, W, 3) uint8 as a looping GIF and/or an H.264 MP4; each appears whole or not at all."""
    video = np.stack(frames)  # raises before anything is written if the frames differ in size
    if video.ndim != 4 or video.shape[3] != 3 or video.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8, got {video.shape[1:]} {video.dtype}")
    if gif_path is not None:
        # One palette for all frames (from the middle one) keeps colours from flickering and is
        # much faster than quantising each frame on its own.
        palette = Image.fromarray(video[len(video) // 2]).quantize(256, method=Image.Quantize.MEDIANCUT)
        images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in video]
        _write_atomically(Path(gif_path), lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
            loop=0))
    if mp4_path is not None:
        def write_mp4(tmp: str) -> None:
            import imageio.v2 as imageio   # imported here: 0.05 s that a photo's overlay does not need
            # yuv420p (what players accept) needs even sizes; macro_block_size=2 rounds odd ones up.
            writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=7,
                                        pixelformat="yuv420p", macro_block_size=2)
            try:
                for frame in video:
                    writer.append_data(frame)
            finally:
                # The context manager would leave ffmpeg running on an error, writing the file later.
                writer.close()
        _write_atomically(Path(mp4_path), write_mp4)
