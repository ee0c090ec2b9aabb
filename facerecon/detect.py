"""Finding every face in a photo with MediaPipe's two legacy BlazeFace detectors.

Passes (chosen by measurements on the shared eval photos):

1. Whole image, shrunk by an integer factor to a longer side of at most ``DETECT_MAX_SIDE`` (the
   networks see 128 or 192 px anyway; area averaging avoids the aliasing of their internal bilinear
   resize), through both models: short range (close-ups and strong yaw, which full range misses) and full range (faces down
   to about 7 % of the longer side, which short range misses or covers with one box over several faces).
2. Only for group or far shots (image longer side >= ``TILE_MIN_SIDE`` and no face found or the
   smallest found face under ``TILE_IF_FACE_BELOW`` of the longer side): full range on 2x2 overlapping
   tiles, finding faces down to about 4 % of the longer side. A portrait costs pass 1 only.

No low-light pass: on 52 eval photos darkened by gamma 2.5/4 or -2/-4/-5/-6 EV, a CLAHE-on-luminance
retry when nothing was found recovered no photo (gamma 4 left 3 photos faceless with or without it);
the detectors are nearly invariant to global exposure.

Detections are merged by non-maximum suppression: a box is dropped when it overlaps a higher-scoring one
by IoU > ``NMS_IOU`` or when more than ``NMS_CONTAIN`` of the smaller box lies inside the other (half
faces cut by a tile edge, short-range boxes spanning several small faces).

Thresholds: full range ``MIN_SCORE_FULL``; short range ``MIN_SCORE_SHORT`` (higher because its false
hits on far faces, torsos and a dog scored up to 0.65). Faces whose box side is under ``MIN_FACE_PX``
in the full image are dropped (too few pixels for landmarks or texture) but counted.

Coordinates: pixels in the full image, pixel centres at integers (MediaPipe's normalised x maps to
x * W - 0.5). A FaceDetector is not thread-safe; use one per thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import mediapipe as mp
import numpy as np

from .errors import NoFaceError
from .load import as_rgb8

DETECT_MAX_SIDE = 1280
TILE_MIN_SIDE = 640
TILE_IF_FACE_BELOW = 0.15
TILE_OVERLAP = 0.25
MIN_SCORE_FULL = 0.5
MIN_SCORE_SHORT = 0.7
NMS_IOU = 0.3
NMS_CONTAIN = 0.7
MIN_FACE_PX = 32

# MediaPipe's keypoint order (the subject's right eye is on the image's left in a frontal photo).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Detection:
    box: np.ndarray = field(repr=False)        # (4,) float32 [x0, y0, x1, y1], full-image pixels
    score: float                               # [0, 1]
    keypoints: np.ndarray = field(repr=False)  # (6, 2) float32 x, y pixels, order KEYPOINT_NAMES

    @property
    def size(self) -> float:
        """The box's longer side in pixels."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(frozen=True)
class DetectionResult:
    faces: list[Detection]  # kept faces, best score first, at most max_faces
    too_small: int          # faces found but dropped for a box side under MIN_FACE_PX

    def raise_if_empty(self, source: str) -> None:
        """Raise NoFaceError (with a message saying why) if no face was kept."""
        if self.faces:
            return
        if self.too_small:
            raise NoFaceError(
                f"{source}: {self.too_small} face(s) found but all smaller than {MIN_FACE_PX} px; "
                "use a higher-resolution photo or a closer crop"
            )
        raise NoFaceError(f"{source}: no face found")


class FaceDetector:
    """Both MediaPipe face detectors, loaded once. Use as a context manager or call close()."""

    def __init__(self) -> None:
        solution = mp.solutions.face_detection
        # The solutions filter at the lower of our two thresholds; _run applies each model's own.
        self._short = solution.FaceDetection(model_selection=0, min_detection_confidence=MIN_SCORE_FULL)
        self._full = solution.FaceDetection(model_selection=1, min_detection_confidence=MIN_SCORE_FULL)

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._short.close()
        self._full.close()

    def detect(self, image_rgb: np.ndarray, max_faces: int | None = None) -> list[Detection]:
        """Faces in an (H, W, 3) RGB image, best score first (at most max_faces)."""
        return self.run(image_rgb, max_faces).faces

    def run(self, image_rgb: np.ndarray, max_faces: int | None = None) -> DetectionResult:
        """Like detect(), also counting the faces dropped as smaller than MIN_FACE_PX."""
        image = as_rgb8(image_rgb)
        found = self._whole_image(image)
        longer = max(image.shape[:2])
        smallest = min((d.size for d in found), default=0.0)
        if longer >= TILE_MIN_SIDE and smallest < TILE_IF_FACE_BELOW * longer:
            found += self._tiles(image)
        merged = _nms(found)
        kept = [d for d in merged if d.size >= MIN_FACE_PX]
        return DetectionResult(kept[:max_faces], len(merged) - len(kept))

    def _whole_image(self, image: np.ndarray) -> list[Detection]:
        return _run(self._short, image, MIN_SCORE_SHORT) + _run(self._full, image, MIN_SCORE_FULL)

    def _tiles(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        th, tw = (int(np.ceil(s / (2 - TILE_OVERLAP))) for s in (h, w))
        found = []
        for y0 in (0, h - th):
            for x0 in (0, w - tw):
                found += _run(self._full, image[y0:y0 + th, x0:x0 + tw], MIN_SCORE_FULL, (x0, y0))
        return found


def _run(model, image: np.ndarray, min_score: float, offset: tuple[int, int] = (0, 0)) -> list[Detection]:
    """One model on one (sub)image; boxes and keypoints in the coordinates of the image it was cut from."""
    h, w = image.shape[:2]
    factor = -(-max(h, w) // DETECT_MAX_SIDE)
    if factor > 1:
        # An integer factor given as fx/fy takes OpenCV's fast area-averaging path (1-4 ms, not 20).
        image = cv2.resize(image, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
    result = model.process(np.ascontiguousarray(image))
    out = []
    for det in result.detections or []:
        score = float(det.score[0])
        if score < min_score:
            continue
        rel = det.location_data.relative_bounding_box
        box = np.array([rel.xmin, rel.ymin, rel.xmin + rel.width, rel.ymin + rel.height]) * [w, h, w, h]
        kps = np.array([[k.x * w, k.y * h] for k in det.location_data.relative_keypoints])
        shift = np.array(offset, np.float64) - 0.5  # pixel centres at integers
        box, kps = (box + np.tile(shift, 2)).astype(np.float32), (kps + shift).astype(np.float32)
        out.append(Detection(box, score, kps))
    return out


def _nms(detections: list[Detection]) -> list[Detection]:
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(not _overlapping(det.box, k.box) for k in kept):
            kept.append(det)
    return kept


def _overlapping(a: np.ndarray, b: np.ndarray) -> bool:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter > NMS_IOU * (area_a + area_b - inter) or inter > NMS_CONTAIN * min(area_a, area_b)
