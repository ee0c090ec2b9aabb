"""Dense 478-point landmarks (MediaPipe Face Mesh with iris refinement) for each detected face.

Face Mesh's built-in detector is short range and misses faces under about 30 px, so each face is cut
out around its detection first: a square ``CROP_SCALES[0]`` times the box's longer side, centred on the box,
padded with black outside the image, resampled to ``CROP_SIZE`` px (so the face is about half the crop,
where the built-in detector and the 192 px landmark network both work well, whatever the photo's size).
Face Mesh then looks for up to ``MESH_MAX_FACES`` faces in the crop, and the mesh whose centre lies
inside the detection box, nearest its centre, is kept: a neighbour in a group photo is never returned.

The crop is also run mirrored and the two meshes averaged (each point with its mirror partner),
which evens out Face Mesh's left-right bias at large yaw and makes a mirrored photo give exactly
mirrored landmarks. When neither is accepted, tighter and looser crops are tried (``CROP_SCALES``).

Coordinates: x, y in full-image pixels with pixel centres at integers (normalised x maps to
left + x * side - 0.5 for a crop spanning [left, left + side)); z is MediaPipe's relative depth scaled
by the crop side into the same pixels, negative toward the camera. An estimator is not thread-safe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import mediapipe as mp
import numpy as np

from .assets import PACKAGE_DATA
from .detect import Detection, FaceDetector
from .load import as_rgb8

N_POINTS = 478
NOSE_TIP = 1
# Crop sides (times the box's longer side) tried in turn until Face Mesh accepts the face: its own
# detector often rejects near-profile faces (80 degrees of yaw) in the 2x crop but accepts them in a
# tighter or looser one (synthetic heads at 80 degrees: 31 % -> 69 % found).
CROP_SCALES = (2.0, 1.4, 2.6)
CROP_SIZE = 256
MESH_MAX_FACES = 3
# Average Face Mesh on the crop and on its mirror image (points swapped left-right): on AFLW2000-3D-16
# this cut the 68-point NME from 5.61% to 5.07%, mostly at large yaw, for one more Face Mesh run.
MIRROR_AVERAGE = True


@dataclass(frozen=True)
class Landmarks:
    points: np.ndarray = field(repr=False)  # (478, 3) float32: x, y full-image pixels; z same scale
    detection: Detection


class LandmarkEstimator:
    """MediaPipe Face Mesh (static images, iris refinement), loaded once. A context manager."""

    def __init__(self) -> None:
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=True, max_num_faces=MESH_MAX_FACES,
            min_detection_confidence=0.5,
        )

    def __enter__(self) -> "LandmarkEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def estimate(self, image_rgb: np.ndarray, detection: Detection) -> Landmarks | None:
        """Landmarks of the face in ``detection``; None if Face Mesh finds no face there."""
        image = as_rgb8(image_rgb)
        box = detection.box.astype(np.float64)
        for scale in CROP_SCALES:
            side = scale * max(box[2] - box[0], box[3] - box[1])
            # Crop edges in continuous coordinates (pixel i spans [i, i + 1]); box coordinates are centres.
            left = 0.5 * (box[0] + box[2]) + 0.5 - side / 2
            top = 0.5 * (box[1] + box[3]) + 0.5 - side / 2
            crop = _crop(image, left, top, side)
            found = self._mesh_near_box(crop, left, top, side, box, mirrored=False)
            partner = None
            if found is None or MIRROR_AVERAGE:
                partner = self._mesh_near_box(np.ascontiguousarray(crop[:, ::-1]), left, top, side, box, mirrored=True)
            if partner is not None:
                # the mirrored mesh's point i is the partner of point i: reorder it to Face Mesh order
                partner = partner[_mirror_permutation()]
                found = partner if found is None else 0.5 * (found + partner)
            if found is not None:
                return Landmarks(found.astype(np.float32), detection)
        return None

    def _mesh_near_box(self, crop, left, top, side, box, mirrored: bool) -> np.ndarray | None:
        """Face Mesh on a crop (optionally the mirrored crop): the mesh nearest the box centre, in
        full-image pixels, or None."""
        result = self._mesh.process(crop)
        best, best_dist = None, math.inf
        for face in result.multi_face_landmarks or []:
            norm = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float64)
            if mirrored:  # continuous coordinates flip exactly: x -> 1 - x
                norm[:, 0] = 1.0 - norm[:, 0]
            points = np.column_stack([left + norm[:, 0] * side - 0.5, top + norm[:, 1] * side - 0.5, norm[:, 2] * side])
            cx, cy = points[:, :2].mean(axis=0)
            if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
                dist = math.hypot(cx - 0.5 * (box[0] + box[2]), cy - 0.5 * (box[1] + box[3]))
                if dist < best_dist:
                    best, best_dist = points, dist
        return best


@lru_cache(maxsize=1)
def _mirror_permutation() -> np.ndarray:
    """(478,) each Face Mesh point's left-right partner (derived by scripts/derive_correspondence.py)."""
    return np.load(PACKAGE_DATA / "mediapipe_ict.npz")["mirror"]


def landmarks_for_image(
    image: np.ndarray, detector: FaceDetector, estimator: LandmarkEstimator, max_faces: int | None = None
) -> list[Landmarks]:
    """Landmarks for every face Face Mesh confirms, in the detector's order (best score first)."""
    image = as_rgb8(image)
    found = (estimator.estimate(image, det) for det in detector.detect(image, max_faces))
    return [lm for lm in found if lm is not None]


def _crop(image: np.ndarray, left: float, top: float, side: float) -> np.ndarray:
    """The square [left, left + side)^2 (continuous coordinates) resampled to CROP_SIZE, black outside."""
    h, w = image.shape[:2]
    x0, y0 = max(0, math.floor(left)), max(0, math.floor(top))
    x1, y1 = min(w, math.ceil(left + side)), min(h, math.ceil(top + side))
    region = image[y0:y1, x0:x1]
    scale = CROP_SIZE / side
    # Bilinear warping aliases when shrinking more than 2x; first area-average by an integer factor
    # (given as fx/fy, OpenCV's fast path).
    k = max(1, math.floor(1 / scale))
    if k > 1:
        region = cv2.resize(region, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
    # Region pixel j (centre) spans continuous [x0 + k*j, x0 + k*(j + 1)); crop pixel u spans
    # [left + u/scale, ...). Hence u = k*scale*j + (x0 + k/2 - left)*scale - 0.5.
    matrix = np.array([
        [k * scale, 0.0, (x0 + k / 2 - left) * scale - 0.5],
        [0.0, k * scale, (y0 + k / 2 - top) * scale - 0.5],
    ])
    return cv2.warpAffine(region, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
