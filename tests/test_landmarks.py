"""LandmarkEstimator: the ONNX networks against MediaPipe's own output, coordinate conventions
(shifts, scaling, mirroring, EXIF rotation), near-profile faces and picking the right face in group
photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import EXAMPLE
from facerecon.detect import Detection, FaceDetector
from facerecon.landmarks import (INPUT_SIZE, MODEL_FILE, N_POINTS, NOSE_TIP, REFINER_FILE, Landmarks,
                                  LandmarkEstimator, Roi, _session, crop_batch, crop_roi, landmarks_for_image)
from facerecon.load import load_image


@pytest.fixture(scope="module")
def estimator():
    with LandmarkEstimator() as est:
        yield est


@pytest.fixture(scope="module")
def photo_path(eval_dir: Path) -> Path:
    return eval_dir / "photos" / "deep3d" / "000002.jpg"  # 423x594 portrait, frontal


@pytest.fixture(scope="module")
def photo(photo_path: Path) -> np.ndarray:
    return load_image(photo_path)


def _single(image: np.ndarray, detector: FaceDetector, estimator: LandmarkEstimator) -> Landmarks:
    (det,) = detector.detect(image)
    lm = estimator.estimate(image, det)
    assert lm is not None
    return lm


def _mean_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean())


def test_shape_and_placement(photo, detector, estimator):
    lm = _single(photo, detector, estimator)
    assert lm.points.shape == (N_POINTS, 3) and lm.points.dtype == np.float32
    box = lm.detection.box
    nose = lm.points[NOSE_TIP]
    assert box[0] < nose[0] < box[2] and box[1] < nose[1] < box[3]
    # The nose tip is about the point nearest the camera (z negative toward it) in a frontal photo.
    z = lm.points[:, 2]
    assert nose[2] - z.min() < 0.05 * np.ptp(z)
    # Depth is in pixels: the face's z range is a sizeable fraction of its width.
    width = np.ptp(lm.points[:, 0])
    assert 0.2 * width < np.ptp(lm.points[:, 2]) < 1.5 * width


STORED = Path(__file__).parent / "data"


@pytest.mark.parametrize("model_file, stored", [(MODEL_FILE, "tflite"), (REFINER_FILE, "attention")])
def test_network_reproduces_mediapipe(model_file, stored):
    """A converted network on a stored crop gives MediaPipe 0.10.21's output (stored when the model
    was converted: the TFLite interpreter's for the plain net, MediaPipe's graph with its custom ops
    and refinement for the attention net's 478 points) to within 2e-4 px, and the same face-presence logit."""
    crop = np.asarray(Image.open(STORED / "astronaut_crop192.png"))
    reference = np.load(STORED / "astronaut_facemesh.npz")
    points, flag = _session(model_file).run(None, {"image": crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0})
    assert np.abs(points.reshape(-1, 3) - reference[f"{stored}_points"]).max() < 2e-4
    assert abs(float(flag[0, 0]) - float(reference[f"{stored}_face_flag"][0])) < 1e-3


def test_close_to_the_mediapipe_solution_it_replaces(detector, estimator):
    """On the example photo the estimator lands within 1 % of the face box, on average, of what the
    MediaPipe Face Mesh solution (attention model, its own detector and crop) gave before it was
    removed (stored): the plain network's crops, the same network refining, mirror averaging."""
    image = load_image(EXAMPLE)
    lm = _single(image, detector, estimator)
    reference = np.load(STORED / "astronaut_facemesh.npz")
    box = reference["box"]
    assert _mean_dist(lm.points, reference["mediapipe_solution_points"]) < 0.01 * max(box[2] - box[0], box[3] - box[1])


def test_crop_mapping_at_one_to_one(photo, estimator):
    """A level 192 px region at an integer offset is cut out pixel for pixel, and the points map back
    by that offset with pixel centres at integers (a half-pixel slip would show as 0.5)."""
    x0, y0 = 100, 150
    roi = Roi(np.array([x0 + INPUT_SIZE / 2, y0 + INPUT_SIZE / 2]), float(INPUT_SIZE), 0.0)
    crop = crop_roi(photo, roi)
    assert np.array_equal(crop, photo[y0:y0 + INPUT_SIZE, x0:x0 + INPUT_SIZE])
    raw, _ = estimator._net.run(None, {"image": crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0})
    points, _, _ = estimator._run(crop_batch(photo, roi, mirror=False), roi)
    assert np.abs(points[:, :2] - (raw.reshape(-1, 3)[:N_POINTS, :2] + [x0 - 0.5, y0 - 0.5])).max() < 1e-3


def test_the_mirror_beside_the_crop_gives_the_batch_of_two(photo):
    """The dense net's crop and mirror run as two batch-1 calls on a side thread where a core is
    spare: the points, presence and sigma are those of one batch of two."""
    from concurrent.futures import ThreadPoolExecutor

    from facerecon.landmarks import DENSE_MODEL_FILE
    roi = Roi(np.array([260.0, 240.0]), 300.0, 0.2)
    with LandmarkEstimator(DENSE_MODEL_FILE, refiner_file=None) as estimator:
        batch = crop_batch(photo, roi, mirror=True)
        if estimator._side is None:   # a one-core machine: give it the thread a spare core would
            estimator._side = ThreadPoolExecutor(1)
        estimator._mirror_beside = True
        beside = estimator._run(batch, roi)
        estimator._mirror_beside = False
        together = estimator._run(batch, roi)
    assert np.allclose(beside[0], together[0], atol=1e-3)
    assert beside[1] == pytest.approx(together[1], abs=1e-5)
    assert np.allclose(beside[2], together[2], rtol=1e-4)


@pytest.mark.parametrize("angle", [0.0, 0.4])
def test_a_shrunk_crop_reads_only_its_part_of_the_photo(photo, angle):
    """Crops k times the input size are area-shrunk over their own part of the photo only: the same
    pixels as shrinking the whole photo by k x k blocks first (its size made a multiple of k), at
    the photo's edges too, where the part the crop reads is cut."""
    k = 3
    image = np.ascontiguousarray(photo[:photo.shape[0] // k * k, :photo.shape[1] // k * k])
    h, w = image.shape[:2]
    whole = cv2.resize(image, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
    for centre in ([w / 2, h / 2], [40.0, 60.0], [w - 30.0, h - 20.0]):
        roi = Roi(np.array(centre), k * INPUT_SIZE + 10.0, angle)
        matrix = roi.to_image() / k
        matrix[:, 2] += matrix[:, :2] @ np.full(2, 0.5) - 0.5
        expected = cv2.warpAffine(whole, matrix, (INPUT_SIZE, INPUT_SIZE),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        crop = crop_roi(image, roi)
        assert np.abs(crop.astype(int) - expected).max() <= 1 and (crop != 0).mean() > 0.2


def test_shift_and_padding(photo, detector, estimator):
    """Cutting the photo so the face touches the border (the crop is padded) shifts the points only."""
    lm = _single(photo, detector, estimator)
    x0 = int(lm.detection.box[0]) + 10
    shifted = _single(np.ascontiguousarray(photo[15:, x0:]), detector, estimator)
    expected = lm.points[:, :2] - [x0, 15]
    visible = expected[:, 0] > 10  # points cut off with the image are guessed, not measured
    assert _mean_dist(shifted.points[visible], expected[visible]) < 3.0


def test_large_image_scales_points(photo, detector, estimator):
    """4x upscaled photo (the crop is area-shrunk first): points scale about pixel centres."""
    lm = _single(photo, detector, estimator)
    big = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    scaled = _single(big, detector, estimator)
    expected = (lm.points[:, :2] + 0.5) * 4 - 0.5
    assert _mean_dist(scaled.points, expected) < 0.01 * 4 * lm.detection.size


def test_mirrored_nose_tip(photo, detector, estimator):
    lm = _single(photo, detector, estimator)
    mirrored = _single(np.ascontiguousarray(photo[:, ::-1]), detector, estimator)
    nose, width = lm.points[NOSE_TIP], photo.shape[1]
    assert np.abs(mirrored.points[NOSE_TIP, :2] - [width - 1 - nose[0], nose[1]]).max() < 3.0


def test_exif_rotated_copy_gives_same_landmarks(tmp_path, photo, detector, estimator):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the stored pixels are rotated back
    path = tmp_path / "sideways.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(photo, 1))).save(path, quality=95, exif=exif)
    upright = load_image(path)
    assert upright.shape == photo.shape
    reference = _single(photo, detector, estimator).points
    assert _mean_dist(_single(upright, detector, estimator).points, reference) < 1.5


def test_group_photo_landmarks_belong_to_their_faces(eval_dir, detector, estimator):
    image = load_image(eval_dir / "photos" / "3ddfa_v2" / "trump_hillary.jpg")
    result = landmarks_for_image(image, detector, estimator, max_faces=None)
    assert len(result) == 2
    for lm in result:
        box = lm.detection.box
        centre = lm.points[:, :2].mean(axis=0)
        assert box[0] < centre[0] < box[2] and box[1] < centre[1] < box[3]
    assert abs(result[0].points[NOSE_TIP, 0] - result[1].points[NOSE_TIP, 0]) > 300
    assert len(landmarks_for_image(image, detector, estimator, max_faces=1)) == 1


def test_neighbour_in_crop_is_not_returned(eval_dir, detector, estimator):
    """Small faces packed together: each crop holds several faces; every mesh must sit in its own box."""
    image = load_image(eval_dir / "photos-68pt" / "dlib" / "2008_004176.jpg")
    result = landmarks_for_image(image, detector, estimator)
    assert len(result) >= 7   # the seven people (YuNet also finds an Elvis picture on the wall)
    noses = np.array([lm.points[NOSE_TIP, :2] for lm in result])
    for lm in result:
        box = lm.detection.box
        centre = lm.points[:, :2].mean(axis=0)
        assert box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]
    gaps = np.linalg.norm(noses[:, None] - noses[None], axis=2) + np.eye(len(noses)) * 1e9
    assert gaps.min() > 15  # no two detections were given the same face


def test_no_face_in_crop_gives_none(estimator):
    image = np.full((400, 400, 3), 128, np.uint8)
    fake = Detection(np.array([150, 150, 250, 250], np.float32), 0.9, np.full((6, 2), 200, np.float32))
    assert estimator.estimate(image, fake) is None


def test_near_profile_faces(tmp_path, detector, estimator):
    """Synthetic heads at 80 degrees of yaw (roll within 5): most are accepted, and every final crop
    is upright (within 60 degrees: a profile's forehead-to-chin line leans by up to about 30). A
    profile's eye keypoints cross over, and a crop levelled on them was turned upside down (180),
    with the points then off by half the box or more. How close the
    points come at this yaw is measured by the evaluation, not here (the network's error there is
    bimodal: 0.03-0.1 of the box width on about half the faces, 0.2-0.9 on the rest)."""
    from facerecon.evaluation import synthetic
    from facerecon.evaluation.protocols import base_texture
    from facerecon.landmarks import landmark_roi
    from facerecon.pipeline import Reconstructor

    with Reconstructor(texture_size=256) as run:
        heads = synthetic.make_heads(run.model, base_texture(run), 8)
        samples = [synthetic.render_sample(run.model, head, yaw, 0.0, 256, tmp_path)
                   for head in heads for yaw in (80.0, -80.0)]
    found = [estimator.estimate(s.image, det) for s in samples for det in detector.detect(s.image)[:1]]
    accepted = [lm for lm in found if lm is not None]
    assert len(accepted) >= 0.75 * len(samples), (len(accepted), len(samples))
    angles = [np.degrees(landmark_roi(lm.points).angle) for lm in accepted]
    assert max(abs(a) for a in angles) < 60.0, np.round(angles, 1)
