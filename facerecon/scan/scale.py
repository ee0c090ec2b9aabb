"""The scan's scale: metric from a printed ArUco marker seen in two views or more (its side given in
mm), or from a known length of the subject (``--scale-mm``: its longest side), else arbitrary, as
structure from motion leaves it (the JSON says so)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ScanInputError
from .cameras import ViewCamera

MARKER_DICTIONARY = cv2.aruco.DICT_4X4_50


@dataclass(frozen=True)
class Scale:
    """World units -> metres, and how that was found."""

    metres_per_unit: float | None    # None: arbitrary
    source: str                      # "marker", "known length", "arbitrary"
    detail: str

    @property
    def metric(self) -> bool:
        return self.metres_per_unit is not None

    def as_json(self) -> dict:
        return {"metric": self.metric, "source": self.source, "detail": self.detail,
                "metres_per_unit": self.metres_per_unit}


ARBITRARY = Scale(None, "arbitrary", "no marker and no known length: the mesh's units are the cameras' "
                                     "(structure from motion or the camera file), not metres")


def detect_markers(images: list[np.ndarray]) -> dict[int, list[tuple[int, np.ndarray]]]:
    """ArUco markers (4x4, ids 0-49) per id: the views that show it and its (4, 2) corners there."""
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(MARKER_DICTIONARY),
                                       cv2.aruco.DetectorParameters())
    found: dict[int, list[tuple[int, np.ndarray]]] = {}
    for v, image in enumerate(images):
        corners, ids, _ = detector.detectMarkers(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        for corner, marker_id in zip(corners, [] if ids is None else ids.ravel()):
            found.setdefault(int(marker_id), []).append((v, corner.reshape(4, 2).astype(np.float64)))
    return found


def triangulate(observations: list[tuple[ViewCamera, np.ndarray]]) -> np.ndarray:
    """(3,) the point seen at pixel (2,) in each of the cameras (linear least squares, DLT)."""
    rows = []
    for camera, (x, y) in observations:
        P = camera.K @ np.hstack([camera.R, camera.t[:, None]])
        rows += [x * P[2] - P[0], y * P[2] - P[1]]
    _, _, vt = np.linalg.svd(np.array(rows))
    return vt[-1, :3] / vt[-1, 3]


def marker_scale(images: list[np.ndarray], cameras: list[ViewCamera], marker_mm: float) -> Scale | None:
    """The scale from the markers seen in two views or more, or None when no marker is."""
    sides = []
    for seen in detect_markers(images).values():
        if len(seen) < 2:
            continue
        corners = np.array([triangulate([(cameras[v], c[k]) for v, c in seen]) for k in range(4)])
        sides.append(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).mean())
    if not sides:
        return None
    side = float(np.median(sides))
    return Scale(marker_mm / 1000.0 / side, "marker",
                 f"{len(sides)} ArUco marker(s) ({marker_mm:g} mm) triangulated in two views or more")


def length_scale(vertices: np.ndarray, length_mm: float) -> Scale:
    """The scale that makes the subject's longest side (of its principal-axes box) ``length_mm``."""
    if length_mm <= 0:
        raise ScanInputError(f"--scale-mm must be positive, got {length_mm:g}")
    centred = vertices - vertices.mean(0)
    _, _, axes = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    extent = np.ptp(centred @ axes.T, axis=0).max()
    return Scale(length_mm / 1000.0 / float(extent), "known length",
                 f"the subject's longest side (principal axes) is {length_mm:g} mm, as given")
