"""Evaluation data in the shared folder, read into plain arrays."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ..assets import shared_dir


@dataclass(frozen=True)
class AnnotatedFace:
    image_path: Path
    points: np.ndarray        # (68, 2 or 3) ground-truth landmarks, 0-based pixels (z in pixels if 3D)
    box: np.ndarray           # (4,) x0, y0, x1, y1 of the ground-truth points
    yaw_deg: float | None = None


def aflw2000_3d(folder: Path | None = None) -> list[AnnotatedFace]:
    """AFLW2000-3D samples: ``pt3d_68`` (1-based in the .mat) and the yaw of ``Pose_Para``."""
    folder = folder or shared_dir() / "eval" / "aflw2000-3d-16"
    faces = []
    for image in sorted(folder.glob("*.jpg")):
        mat = scipy.io.loadmat(image.with_suffix(".mat"))
        points = mat["pt3d_68"].T.astype(np.float64)
        points[:, :2] -= 1.0
        yaw = math.degrees(float(mat["Pose_Para"][0, 1]))
        box = np.r_[points[:, :2].min(0), points[:, :2].max(0)]
        faces.append(AnnotatedFace(image, points, box, yaw))
    return faces
