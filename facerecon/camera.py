"""Pinhole camera in the OpenCV convention: x right, y down, z forward; pixel centres at integers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Without the photo's focal length (EXIF or --fov), 40 degrees across the longer side suits
# portraits and crops.
DEFAULT_FOV_DEG = 40.0
# The diagonal of 35 mm film (36 x 24 mm), by which EXIF's FocalLengthIn35mmFilm is defined.
FILM_35MM_DIAGONAL_MM = 43.2666

# Model frame (y up, z toward the viewer) to camera axes (y down, z away): a frontal head has R = FLIP.
FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Camera:
    focal: float   # pixels
    cx: float      # principal point, pixels
    cy: float
    width: int
    height: int
    # where the focal length came from: "assumed" (DEFAULT_FOV_DEG), "exif" or "given"
    source: str = field(default="assumed", compare=False)

    @classmethod
    def for_image(cls, width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG,
                  source: str = "assumed") -> "Camera":
        focal = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
        return cls(focal, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height), source)

    @classmethod
    def from_35mm_equivalent(cls, width: int, height: int, focal_35mm: float) -> "Camera":
        """The camera of a photo whose 35 mm-equivalent focal length (EXIF FocalLengthIn35mmFilm) is
        ``focal_35mm`` mm: that focal on the 43.27 mm film diagonal is this one on the image's."""
        focal = focal_35mm * math.hypot(width, height) / FILM_35MM_DIAGONAL_MM
        return cls(focal, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height), "exif")

    @property
    def fov_deg(self) -> float:
        """Field of view across the longer side, degrees."""
        return math.degrees(2 * math.atan(0.5 * max(self.width, self.height) / self.focal))

    @property
    def matrix(self) -> np.ndarray:
        """3x3 intrinsic matrix K."""
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1.0]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixel coordinates."""
        z = points[:, 2:3]
        return points[:, :2] / z * self.focal + np.array([self.cx, self.cy])

    def scaled(self, factor: float) -> "Camera":
        """The same view at an image ``factor`` times the size."""
        return Camera(self.focal * factor, (self.cx + 0.5) * factor - 0.5, (self.cy + 0.5) * factor - 0.5,
                      round(self.width * factor), round(self.height * factor), self.source)


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation (degrees) to a camera-frame rotation matrix ``R`` (X_cam = R @ X_model + t).

    Yaw turns the head about its vertical axis (positive: the face turns toward the image's right
    side, i.e. the subject's left), pitch about the ear-to-ear axis (positive: looking up), roll
    about the line of sight (positive: the head tilts clockwise in the image).
    """
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return FLIP_YZ @ rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_angles`: (yaw, pitch, roll) in degrees."""
    m = FLIP_YZ @ rotation  # = rz @ ry @ rx
    yaw = math.asin(float(np.clip(-m[2, 0], -1, 1)))
    pitch = math.atan2(m[2, 1], m[2, 2])
    roll = math.atan2(-m[1, 0], m[0, 0])
    return tuple(float(np.degrees(a)) for a in (yaw, pitch, roll))
