"""Finding every face in a photo with YuNet (libfacedetection, Apache-2.0: data/yunet_s.onnx,
licence and notice beside it), run by onnxruntime.

Passes:

1. Whole image, shrunk by area averaging to a longer side of at most ``DETECT_MAX_SIDE`` (YuNet finds
   faces of about 10 to 300 px; this keeps a close-up's face inside that range and the pass at most
   640x640), zero-padded to a multiple of 32 (the network's coarsest stride).
2. Only for group or far shots (the image was shrunk in pass 1 and no face was found or the
   smallest found face is under ``TILE_IF_FACE_BELOW`` px there): the same on 2x2 overlapping tiles,
   at up to twice the resolution.

Detections are merged by non-maximum suppression: a box is dropped when it overlaps a higher-scoring one
by IoU > ``NMS_IOU`` or when more than ``NMS_CONTAIN`` of the smaller box lies inside the other (half
faces cut by a tile edge). Boxes are mapped to MediaPipe-like boxes (``BOX_FROM_YUNET``).

A box scoring ``MIN_SCORE`` or more is kept. YuNet's scores at large yaw are uneven between a face and
its mirror image (on AFLW2000-3D-like profiles, 0.32 on the photo and 0.59 mirrored), so a box
scoring from ``UNSURE_SCORE`` to ``MIN_SCORE`` is kept when it, or the box overlapping it (IoU >
``MIRROR_IOU``) in the same pass on the mirror image, scores ``CONFIRM_SCORE`` or more; it keeps its
own score, so that a score under ``MIN_SCORE`` marks a face the detector was unsure of (the
landmark stage asks more of those). The mirror pass runs only where such a box is found. The thresholds are
calibrated on helen_train, synthetic renders at large yaw and the unlabelled photos
(scripts/measure_detector.py --calibrate).
Faces whose box side is under ``MIN_FACE_PX`` in the full image are dropped (too few pixels for
landmarks or texture) but counted.

Coordinates: pixels in the full image, pixel centres at integers. A FaceDetector is not
thread-safe; use one per thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .assets import PACKAGE_DATA
from .errors import NoFaceError
from .load import as_rgb8
from .sessions import onnx_session

YUNET_MODEL = "yunet_s.onnx"
DETECT_MAX_SIDE = 640
STRIDES = (8, 16, 32)
TILE_IF_FACE_BELOW = 24.0
TILE_OVERLAP = 0.25
MIN_SCORE = 0.5
UNSURE_SCORE = 0.2
CONFIRM_SCORE = 0.4
MIRROR_IOU = 0.5
NMS_IOU = 0.3
NMS_CONTAIN = 0.7
MIN_FACE_PX = 32
# YuNet's box spans forehead to chin. It is mapped onto the box MediaPipe's detectors gave, which the
# stages after detection were calibrated with (the landmark crop, the regressors' training boxes, the
# multi-view agreement test): on helen_train (290 faces, medians, measured before MediaPipe's removal)
# that box is 1.10 x YuNet's width and 0.83 x its height, centred 0.08 of its height lower. (Mapped
# onto the 68-point box instead, 1.03 / 0.76 / 0.115, the mvfnet front photo's leave-one-out ratio
# rose from 1.05 to 1.45, beyond the multi-view check's rejection ratio of the time; with this map
# it is 1.20.)
BOX_FROM_YUNET = (1.10, 0.83, 0.08)   # width scale, height scale, centre shift down (x height)

# YuNet's keypoint order: the subject's right eye (on the image's left in a frontal photo) first.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass(frozen=True)
class Detection:
    box: np.ndarray = field(repr=False)        # (4,) float32 [x0, y0, x1, y1], full-image pixels
    score: float                               # [0, 1]
    keypoints: np.ndarray = field(repr=False)  # (5, 2) float32 x, y pixels, order KEYPOINT_NAMES

    @property
    def size(self) -> float:
        """The box's longer side in pixels."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def box_detection(box: np.ndarray, score: float = 1.0) -> Detection:
    """A Detection from a known box (ground truth, a tracker), without keypoints (NaN)."""
    return Detection(np.asarray(box, np.float32), score, np.full((len(KEYPOINT_NAMES), 2), np.nan, np.float32))


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
    """YuNet, loaded once. Use as a context manager or call close()."""

    def __init__(self, min_score: float = MIN_SCORE, threads: int = 1, confirm_score: float = CONFIRM_SCORE) -> None:
        """``confirm_score`` >= ``min_score``: no mirror pass (every box under ``min_score`` is dropped)."""
        # one photo at a time; batch workers parallelise
        self._session = onnx_session(PACKAGE_DATA / YUNET_MODEL, threads)
        self.min_score, self.confirm_score = min_score, confirm_score

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session = None

    def detect(self, image_rgb: np.ndarray, max_faces: int | None = None) -> list[Detection]:
        """Faces in an (H, W, 3) RGB image, best score first (at most max_faces)."""
        return self.run(image_rgb, max_faces).faces

    def run(self, image_rgb: np.ndarray, max_faces: int | None = None) -> DetectionResult:
        """Like detect(), also counting the faces dropped as smaller than MIN_FACE_PX."""
        image = as_rgb8(image_rgb)
        scale = min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))
        found = self._run(image)
        smallest = min((d.size for d in found), default=0.0) * scale
        if scale < 1.0 and smallest < TILE_IF_FACE_BELOW:
            found += self._tiles(image)
        merged = _nms(found)
        kept = [d for d in merged if d.size >= MIN_FACE_PX]
        return DetectionResult(kept[:max_faces], len(merged) - len(kept))

    def _tiles(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        th, tw = (int(np.ceil(s / (2 - TILE_OVERLAP))) for s in (h, w))
        found = []
        for y0 in (0, h - th):
            for x0 in (0, w - tw):
                found += self._run(image[y0:y0 + th, x0:x0 + tw], (x0, y0))
        return found

    def _run(self, image: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[Detection]:
        """YuNet on one (sub)image; boxes and keypoints in the coordinates of the image it was cut from.
        Boxes scoring from ``UNSURE_SCORE`` to ``min_score`` are kept when the pass on the mirror
        image confirms them (module docstring)."""
        confirming = self.confirm_score < self.min_score
        boxes, scores, keypoints = self._pass(image, UNSURE_SCORE if confirming else self.min_score)
        sure = scores >= self.min_score
        # boxes under min_score that a sure box would suppress anyway need no confirming
        unsure = ~sure & np.array([not any(_overlapping(b, a) for a in boxes[sure]) for b in boxes], bool)
        if unsure.any():
            w = image.shape[1]
            mirror_boxes, mirror_scores, _ = self._pass(image, UNSURE_SCORE, mirrored=True)
            mirror_boxes = np.c_[w - 1 - mirror_boxes[:, 2], mirror_boxes[:, 1], w - 1 - mirror_boxes[:, 0], mirror_boxes[:, 3]]
            best = scores.copy()
            for i in np.flatnonzero(unsure):
                best[i] = max([scores[i], *(ms for mb, ms in zip(mirror_boxes, mirror_scores)
                                            if box_iou(boxes[i], mb) > MIRROR_IOU)])
            unsure &= best >= self.confirm_score
        keep = sure | unsure
        boxes = _landmark_box(boxes[keep]) + np.tile(np.asarray(offset, np.float64), 2)
        keypoints = keypoints[keep] + np.asarray(offset, np.float64)
        return [Detection(b.astype(np.float32), float(s), k.astype(np.float32))
                for b, s, k in zip(boxes, scores[keep], keypoints)]

    def _pass(self, image: np.ndarray, floor: float, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """YuNet's own (n, 4) boxes, (n,) scores >= floor and (n, 5, 2) keypoints, in ``image``'s pixels
        (with ``mirrored``, in the pixels of its left-right mirror image, which is made after the resize)."""
        h, w = image.shape[:2]
        if max(h, w) > DETECT_MAX_SIDE:
            size = DETECT_MAX_SIDE / max(h, w)
            image = cv2.resize(image, (round(w * size), round(h * size)), interpolation=cv2.INTER_AREA)
        sh, sw = image.shape[:2]
        scale = np.array([sw / w, sh / h])
        pad = STRIDES[-1]
        canvas = np.zeros((-(-sh // pad) * pad, -(-sw // pad) * pad, 3), np.float32)
        canvas[:sh, :sw] = image[:, ::-1, ::-1] if mirrored else image[:, :, ::-1]   # YuNet takes BGR, 0-255
        outputs = self._session.run(None, {"input": canvas.transpose(2, 0, 1)[None]})
        boxes, scores, keypoints = _decode(outputs, canvas.shape[:2])
        keep = scores >= floor
        # Resized pixel centres u map to full-image centres (u + 0.5) / scale - 0.5.
        shift = 0.5 / scale - 0.5
        return (boxes[keep] / np.tile(scale, 2) + np.tile(shift, 2), scores[keep].astype(np.float64),
                keypoints[keep] / scale + shift)


def _decode(outputs: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet's raw outputs (cls, obj, bbox, kps per stride) -> (n, 4) boxes, (n,) scores, (n, 5, 2)
    keypoints in input pixels, as OpenCV's FaceDetectorYN decodes them."""
    boxes, scores, keypoints = [], [], []
    n = len(STRIDES)
    for i, stride in enumerate(STRIDES):
        cols = shape[1] // stride
        cls, obj, bbox, kps = outputs[i][0, :, 0], outputs[n + i][0, :, 0], outputs[2 * n + i][0], outputs[3 * n + i][0]
        row, col = np.divmod(np.arange(len(cls)), cols)
        centre = (np.c_[col, row] + bbox[:, :2]) * stride
        half = np.exp(bbox[:, 2:]) * stride / 2
        boxes.append(np.c_[centre - half, centre + half])
        scores.append(np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1)))
        keypoints.append((kps.reshape(-1, 5, 2) + np.c_[col, row][:, None]) * stride)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(keypoints)


def _landmark_box(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) YuNet boxes -> MediaPipe-like boxes (BOX_FROM_YUNET)."""
    sx, sy, dy = BOX_FROM_YUNET
    size = boxes[:, 2:] - boxes[:, :2]
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:]) + np.c_[np.zeros(len(boxes)), dy * size[:, 1]]
    half = 0.5 * size * [sx, sy]
    return np.c_[centre - half, centre + half]


def _nms(detections: list[Detection]) -> list[Detection]:
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(not _overlapping(det.box, k.box) for k in kept):
            kept.append(det)
    return kept


def box_area(box: np.ndarray) -> float:
    """Area (px^2) of an (x0, y0, x1, y1) box."""
    return float((box[2] - box[0]) * (box[3] - box[1]))


def box_intersection(a: np.ndarray, b: np.ndarray) -> float:
    """Area (px^2) of the overlap of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(iw * ih)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = box_intersection(a, b)
    return inter / (box_area(a) + box_area(b) - inter)


def _overlapping(a: np.ndarray, b: np.ndarray) -> bool:
    inter, area_a, area_b = box_intersection(a, b), box_area(a), box_area(b)
    return inter > NMS_IOU * (area_a + area_b - inter) or inter > NMS_CONTAIN * min(area_a, area_b)
