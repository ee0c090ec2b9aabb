"""The scanned subject turning: the main job's turntable renderer, orbiting the way the views did.

A scan's world has no fixed axes (structure from motion's are arbitrary), so the turntable takes
them from the views: up is the cameras' mean up, the orbit starts at the cameras' mean side and
sweeps the arc they covered about the up axis (all the way round when they leave no gap over 60
degrees), so the frames show what was seen, not the unseen back.
"""
from __future__ import annotations

import numpy as np

from ..render.visualize import orbit_frames
from .bake import TexturedMesh
from .cameras import ViewCamera

FULL_CIRCLE_GAP_DEG = 60.0     # views around the subject leaving no larger gap: a full turn


def orbit_rotations(cameras: list[ViewCamera], centre: np.ndarray, n_frames: int) -> list[np.ndarray]:
    """World -> camera rotations (OpenCV axes) of ``n_frames`` cameras on the views' arc about the
    views' up axis through ``centre``, each looking at it."""
    up = -np.mean([c.R[1] for c in cameras], axis=0)
    up /= np.linalg.norm(up)
    offsets = np.array([c.centre - centre for c in cameras])
    flat = offsets - np.outer(offsets @ up, up)
    front = flat.mean(0)
    if np.linalg.norm(front) < 1e-9 * np.abs(flat).max():   # a full ring: start at the first view
        front = flat[0]
    front /= np.linalg.norm(front)
    side = np.cross(up, front)
    azimuth = np.sort(np.degrees(np.arctan2(flat @ side, flat @ front)))
    gaps = np.diff(np.concatenate([azimuth, azimuth[:1] + 360]))
    if gaps.max() <= FULL_CIRCLE_GAP_DEG:
        angles = np.linspace(0, 360, n_frames, endpoint=False)
    else:   # the arc the views cover runs from after the largest gap to before it
        last = int(np.argmax(gaps))
        start = azimuth[(last + 1) % len(azimuth)]
        angles = start + np.linspace(0, 360 - gaps[last], n_frames)
    rotations = []
    for angle in np.radians(angles):
        forward = -(np.cos(angle) * front + np.sin(angle) * side)
        y = -up
        rotations.append(np.stack([np.cross(y, forward), y, forward]))
    return rotations


def turntable_frames(mesh: TexturedMesh, cameras: list[ViewCamera], size: int = 512,
                     n_frames: int = 60) -> list[np.ndarray]:
    """``n_frames`` (size, size, 3) uint8 frames of the textured mesh turning (see the module)."""
    centre = (mesh.vertices.min(0) + mesh.vertices.max(0)) / 2
    radius = float(np.linalg.norm(mesh.vertices - centre, axis=1).max())
    return orbit_frames(mesh.vertices, mesh.faces, orbit_rotations(cameras, centre, n_frames), centre, radius,
                        uv=mesh.uv, texture=mesh.texture, size=size)
