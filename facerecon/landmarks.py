"""Dense 468-point landmarks for each detected face: MediaPipe Face Mesh's network, run by ONNX Runtime.

``data/face_landmark.onnx`` is MediaPipe 0.10.21's ``face_landmark.tflite`` (Apache-2.0, see
``data/NOTICE.md``) converted by ``scripts/convert_mediapipe.py``; it maps a 192 x 192 crop of an
upright face to 468 points and a face-presence logit. The graph MediaPipe wrapped around it is
written here:

1. A region of interest from the detection: the box centre, turned so that the eyes (the
   detection's first two keypoints) are level (upright when they are too close to tell, near
   profile), a square ``DETECTION_ROI_SCALES[0]`` times the box's longer side.
2. The network on that crop; then a second region from its own points, as MediaPipe's tracking
   does (the landmarks' box in the frame where the face's forehead-to-chin axis is vertical,
   ``LANDMARK_ROI_SCALE`` times its longer side, the size the network was trained on), and the
   network again.
3. The last pass runs on the crop and on its mirror image, and the two meshes are averaged (each
   point with its left-right partner): that evens out the network's bias at large yaw and makes a
   mirrored photo give exactly mirrored landmarks.
4. The points are then read again from that last crop and its mirror, averaged the same way (in a
   second thread, beside step 3's pass), by the refiner: ``data/face_landmark_attention.onnx``, MediaPipe's attention model
   (``face_landmark_with_attention.tflite``, converted by the same script). Its 468 mesh points
   carry lip and eye contours refined from patches of its own features (its 10 iris points are
   not used). It only refines: its face-presence output is less reliable than the plain net's (on
   32 synthetic heads, identities 1000.., at 80 degrees of yaw at least 8 scored under
   ``MIN_PRESENCE`` against 6; on 200 object crops its 95th percentile was 0.18 against 0.05), so
   the crops and the presence stay the plain net's.

First-pass crops of other sizes (``DETECTION_ROI_SCALES``) are tried while the network's
face-presence probability stays under ``CONFIDENT_PRESENCE``, and the most confident one is kept. A
face is rejected when the probability is under ``MIN_PRESENCE`` on every crop: the network is
unsure of near-profile faces (on 16 synthetic heads at 80 degrees of yaw its best probability was
0.09 to 1.0), but crops of objects and backgrounds (200 random crops of the dino and fox frames in
``eval/multiview-objects``) scored under 0.013 in 95 % of cases.

Coordinates: x, y in full-image pixels with pixel centres at integers; z is the network's relative
depth in the same pixels, negative toward the camera. An estimator may be shared between threads.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
import onnxruntime as ort

from .assets import PACKAGE_DATA
from .detect import Detection, FaceDetector
from .load import as_rgb8
from .sessions import onnx_session

N_POINTS = 468
NOSE_TIP = 1
INPUT_SIZE = 192
# The face's vertical axis for levelling the second crop: forehead centre to chin. MediaPipe levels
# the outer eye corners (33, 263) instead, which cross over near profile views.
FOREHEAD, CHIN = 10, 152
# Below this eye distance (times the box side) the detector's eye keypoints give no reliable angle
# (a face near profile) and the first crop is taken upright.
MIN_EYE_DISTANCE = 0.2
LANDMARK_ROI_SCALE = 1.5
# First-pass crops (times the detection box's longer side), tried in turn while the network is unsure.
DETECTION_ROI_SCALES = (1.5, 1.2, 2.0)
CONFIDENT_PRESENCE = 0.5
MIN_PRESENCE = 0.05
MODEL_FILE = "face_landmark.onnx"
REFINER_FILE = "face_landmark_attention.onnx"
# The plain network fine-tuned so that its points land where the ICT correspondence's surface points
# project, visible or not (facerecon/training/landmark_data.py; MODEL_CARD.md): ``--method dense``.
DENSE_MODEL_FILE = "face_landmark_ict.onnx"
# Its points: the ICT surface points it was trained to (the correspondence of that time, frozen
# with it when the fit's correspondence was re-derived for the refiner's points).
DENSE_POINTS_FILE = "face_landmark_ict_points.npz"


@dataclass(frozen=True)
class Landmarks:
    points: np.ndarray = field(repr=False)  # (468, 3) float32: x, y full-image pixels; z same scale
    detection: Detection
    presence: float = 1.0                   # the network's face-presence probability, [0, 1]
    # (468,) float32: each point's predicted standard deviation (x and y alike), full-image pixels;
    # None from a network without an uncertainty output
    sigma: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Roi:
    """A square region of the image, turned by ``angle`` (radians, counter-clockwise on screen)."""

    centre: np.ndarray  # (2,) continuous pixel coordinates (pixel i spans [i, i + 1])
    side: float         # pixels
    angle: float

    def to_image(self) -> np.ndarray:
        """(2, 3) affine matrix: continuous crop coordinates [0, INPUT_SIZE) -> continuous image ones."""
        s = self.side / INPUT_SIZE
        c, n = math.cos(self.angle), math.sin(self.angle)
        # Crop axes turned by -angle in the image: the face's eye line maps to the crop's horizontal.
        linear = s * np.array([[c, n], [-n, c]])
        offset = self.centre - linear @ np.full(2, INPUT_SIZE / 2)
        return np.column_stack([linear, offset])


def _session(model_file: str) -> ort.InferenceSession:
    # a 192 px net: one thread is as fast and leaves cores to the caller
    return onnx_session(PACKAGE_DATA / model_file, threads=1)


def _spare_core() -> bool:
    """Whether this process may use a second core (a batch worker's share may be one)."""
    return min(os.cpu_count() or 1, int(os.environ.get("OMP_NUM_THREADS", 2))) > 1


class LandmarkEstimator:
    """The Face Mesh network (or another of its shape: ``model_file`` in ``facerecon/data``) and the
    refiner (``refiner_file``, whose first 468 points are Face Mesh's; None: the points are
    ``model_file``'s own), loaded once. A context manager; safe to share between threads."""

    def __init__(self, model_file: str = MODEL_FILE, refiner_file: str | None = REFINER_FILE) -> None:
        self._net = _session(model_file)
        self._refiner = None if refiner_file is None else _session(refiner_file)
        # One side thread: the refiner's pass beside the plain net's; without a refiner, the net's
        # pass on the mirror beside the crop's, where a core is spare (4.6 -> about 2.3 ms for the pair
        # on this CPU; two intra-op threads on one batch of 2 gave 3.4 ms, and their spinning slowed
        # the calls that followed).
        self._mirror_beside = refiner_file is None and _spare_core()
        self._side = ThreadPoolExecutor(1) if self._refiner is not None or self._mirror_beside else None

    def __enter__(self) -> "LandmarkEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the side thread (ONNX Runtime frees the sessions with the object)."""
        if self._side is not None:
            self._side.shutdown()

    def estimate(self, image_rgb: np.ndarray, detection: Detection) -> Landmarks | None:
        """Landmarks of the face in ``detection``; None if the network finds no face there."""
        image = as_rgb8(image_rgb)
        first, first_presence = None, -1.0
        for scale in DETECTION_ROI_SCALES:
            roi = detection_roi(detection, scale)
            points, presence, _ = self._run(crop_batch(image, roi, mirror=False), roi)
            if presence > first_presence:
                first, first_presence = points, presence
            if presence >= CONFIDENT_PRESENCE:
                break
        points, presence, sigma = self._final_pass(image, first)
        if max(presence, first_presence) < MIN_PRESENCE:
            return None
        return Landmarks(points.astype(np.float32), detection, presence,
                         None if sigma is None else sigma.astype(np.float32))

    def recrop(self, image_rgb: np.ndarray, landmarks: Landmarks, passes: int) -> Landmarks:
        """``landmarks`` read again ``passes`` times by :meth:`estimate`'s last pass (crop and
        mirror, refined), each time on the crop the previous points ask for. The presence stays
        ``landmarks``' own: this only moves points."""
        image = as_rgb8(image_rgb)
        points, sigma = landmarks.points.astype(np.float64), landmarks.sigma
        for _ in range(passes):
            points, _, sigma = self._final_pass(image, points)
        return replace(landmarks, points=points.astype(np.float32),
                       sigma=None if sigma is None else sigma.astype(np.float32))

    def _final_pass(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        """The network on the crop ``points`` ask for and on its mirror, the refiner's points where
        there is one: (468, 3) points, presence, sigma as :meth:`_run` gives them."""
        roi = landmark_roi(points)
        batch = crop_batch(image, roi, mirror=True)
        if self._refiner is None:
            return self._run(batch, roi)
        # the refiner beside the plain net (ONNX Runtime releases the GIL)
        refined = self._side.submit(self._run, batch, roi, self._refiner)
        _, presence, _ = self._run(batch, roi)
        return refined.result()[0], presence, None

    def glance(self, image_rgb: np.ndarray, detection: Detection) -> Landmarks:
        """The first pass alone (one crop of the detection, no mirror, no refiner): rough points
        for a quick look at the pose, about a tenth of :meth:`estimate`'s time."""
        roi = detection_roi(detection, DETECTION_ROI_SCALES[0])
        points, presence, _ = self._run(crop_batch(as_rgb8(image_rgb), roi, mirror=False), roi)
        return Landmarks(points.astype(np.float32), detection, presence)

    def _run(self, batch: np.ndarray, roi: Roi,
             net: ort.InferenceSession | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
        """A network (default: the model's) on ``crop_batch``'s batch for ``roi`` (the crop, and its
        mirror when the batch holds two): (468, 3) image points, the presence probability and the
        (468,) sigma in image pixels (None when the network has no uncertainty output)."""
        net = net or self._net
        mirror = len(batch) == 2
        if mirror and net is self._net and self._mirror_beside:
            mirrored = self._side.submit(net.run, None, {"image": batch[1:]})
            raw, flag, *rest = (np.concatenate(pair) for pair in zip(net.run(None, {"image": batch[:1]}), mirrored.result()))
        else:
            raw, flag, *rest = net.run(None, {"image": batch})
        raw = raw.reshape(len(batch), -1, 3)[:, :N_POINTS].astype(np.float64)  # the refiner's irises unused
        presence = 1.0 / (1.0 + np.exp(-flag[:, 0].astype(np.float64)))
        raw = 0.5 * (raw[0] + mirror_points(raw[1], INPUT_SIZE)) if mirror else raw[0]
        matrix = roi.to_image()
        xy = raw[:, :2] @ matrix[:, :2].T + matrix[:, 2] - 0.5  # pixel centres at integers
        z = raw[:, 2] * roi.side / INPUT_SIZE
        sigma = None
        if rest:   # log sigma in crop pixels; the mirror's point i is point i's partner
            log_sigma = rest[0].astype(np.float64)
            log_sigma = 0.5 * (log_sigma[0] + log_sigma[1][mirror_permutation()]) if mirror else log_sigma[0]
            sigma = np.exp(log_sigma) * roi.side / INPUT_SIZE
        return np.column_stack([xy, z]), float(presence.mean()), sigma


def detection_roi(detection: Detection, scale: float) -> Roi:
    """The first crop: the box centre, eyes levelled, ``scale`` times the box's longer side."""
    box = detection.box.astype(np.float64)
    side = max(box[2] - box[0], box[3] - box[1])
    right_eye, left_eye = detection.keypoints[:2].astype(np.float64)
    level = np.linalg.norm(left_eye - right_eye) >= MIN_EYE_DISTANCE * side
    return Roi(0.5 * (box[:2] + box[2:]) + 0.5, scale * side, _level_angle(right_eye, left_eye) if level else 0.0)


def landmark_roi(points: np.ndarray) -> Roi:
    """The crop the network's own points ask for: their box in the levelled frame, scaled."""
    down = points[CHIN, :2] - points[FOREHEAD, :2]
    angle = _level_angle(np.zeros(2), np.array([down[1], -down[0]]))  # the down axis turned to the right
    c, s = math.cos(angle), math.sin(angle)
    to_level = np.array([[c, -s], [s, c]])  # turns the face's axis vertical
    level = points[:, :2] @ to_level.T
    lo, hi = level.min(axis=0), level.max(axis=0)
    centre = to_level.T @ (0.5 * (lo + hi)) + 0.5
    return Roi(centre, LANDMARK_ROI_SCALE * float(max(hi - lo)), angle)


def _level_angle(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """The image angle of the line from the subject's right eye to the left (0 for a level face)."""
    dx, dy = left_eye - right_eye
    return -math.atan2(dy, dx)


def crop_batch(image: np.ndarray, roi: Roi, mirror: bool) -> np.ndarray:
    """(1, 3, INPUT_SIZE, INPUT_SIZE) float32 in [0, 1]: the network's input for ``roi``; with
    ``mirror`` (2, ...), the crop and its left-right mirror."""
    crop = crop_roi(image, roi)
    return np.stack([crop, crop[:, ::-1]] if mirror else [crop]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def crop_roi(image: np.ndarray, roi: Roi) -> np.ndarray:
    """(INPUT_SIZE, INPUT_SIZE, 3) uint8: the region resampled, black outside the image."""
    to_image = roi.to_image()
    # Bilinear warping aliases when shrinking more than 2x: area-average by an integer factor first
    # (k x k blocks, OpenCV's fast path), over the part of the photo the crop reads only: a large
    # photo shrunk whole for every crop cost more than the networks.
    k = max(1, math.floor(roi.side / INPUT_SIZE))
    corners = to_image @ np.array([[0, INPUT_SIZE, 0, INPUT_SIZE], [0, 0, INPUT_SIZE, INPUT_SIZE], [1, 1, 1, 1]])
    h, w = image.shape[:2]
    x0, y0 = (max(0, (math.floor(v) - 2 * k) // k * k) for v in corners.min(1))
    x1, y1 = (min(size, -(-(math.ceil(v) + 2 * k) // k) * k) for v, size in zip(corners.max(1), (w, h)))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    region = image[y0:y1, x0:x1]
    to_image = to_image - np.array([[0, 0, x0], [0, 0, y0]])
    if k > 1:
        # a part block at the photo's far edge is completed with its edge pixels, so every block is k x k
        pad_y, pad_x = -region.shape[0] % k, -region.shape[1] % k
        if pad_y or pad_x:
            region = cv2.copyMakeBorder(region, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
        region = cv2.resize(region, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
        to_image = to_image / k
    # crop pixel centre u + 0.5 -> continuous image point -> pixel index (centre at integer)
    matrix = to_image.copy()
    matrix[:, 2] += to_image[:, :2] @ np.full(2, 0.5) - 0.5
    return cv2.warpAffine(region, matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def mirror_points(points: np.ndarray, width: float) -> np.ndarray:
    """(468, 3) points seen in a left-right mirrored crop of ``width`` px, as points of the original:
    continuous x flips exactly (x -> width - x) and the mirror's point i is point i's partner."""
    out = points[mirror_permutation()].copy()
    out[:, 0] = width - out[:, 0]
    return out


@lru_cache(maxsize=1)
def mirror_permutation() -> np.ndarray:
    """(468,) each Face Mesh point's left-right partner (derived by scripts/derive_correspondence.py)."""
    return np.load(PACKAGE_DATA / "mediapipe_ict.npz")["mirror"][:N_POINTS]


@lru_cache(maxsize=1)
def dense_surface_points() -> tuple[np.ndarray, np.ndarray]:
    """The dense net's 468 points on the ICT head: triangle vertex indices (468, 3) int32 and
    barycentric weights (468, 3) float32, read once (training reads them for every sample) and
    shared, so read-only."""
    data = np.load(PACKAGE_DATA / DENSE_POINTS_FILE)
    vertices, bary = data["vertices"], data["bary"]
    for array in (vertices, bary):
        array.setflags(write=False)
    return vertices, bary


def landmarks_for_image(
    image: np.ndarray, detector: FaceDetector, estimator: LandmarkEstimator, max_faces: int | None = None
) -> list[Landmarks]:
    """Landmarks for every face the network confirms, in the detector's order (best score first)."""
    image = as_rgb8(image)
    found = (estimator.estimate(image, det) for det in detector.detect(image, max_faces))
    return [lm for lm in found if lm is not None]
