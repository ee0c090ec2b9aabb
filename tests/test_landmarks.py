"""LandmarkEstimator: coordinate conventions (checked against Face Mesh on the whole image, shifts,
scaling, mirroring, EXIF rotation) and picking the right face in group photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
import pytest
from PIL import Image

import facerecon.landmarks as landmarks_module
from facerecon.detect import Detection, FaceDetector
from facerecon.landmarks import N_POINTS, NOSE_TIP, Landmarks, LandmarkEstimator, landmarks_for_image
from facerecon.load import load_image


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


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


def test_agrees_with_face_mesh_on_the_whole_image(eval_dir, detector, estimator):
    """A small photo (262x250) is cropped at about 1:1, so both runs see the same pixels: the crop
    mapping and the pixel-centre convention must line up to a fraction of a pixel (a half-pixel slip
    gives a mean offset of 0.5)."""
    image = load_image(eval_dir / "photos" / "deep3d" / "000033.jpg")
    lm = _single(image, detector, estimator)
    h, w = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        face = mesh.process(image).multi_face_landmarks[0]
    direct = np.array([(p.x * w - 0.5, p.y * h - 0.5) for p in face.landmark])
    assert _mean_dist(lm.points, direct) < 0.6
    assert np.abs((lm.points[:, :2] - direct).mean(axis=0)).max() < 0.2


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


def test_near_profile_faces_are_rescued_by_other_crops(tmp_path, monkeypatch, detector, estimator):
    """Synthetic heads at 80 degrees of yaw: Face Mesh rejects several in the 2x crop (and its
    mirror); the fallback crops find more of them, with the nose tip where the head's is."""
    from facerecon.evaluation import synthetic
    from facerecon.evaluation.protocols import base_texture
    from facerecon.pipeline import Reconstructor

    with Reconstructor(texture_size=256) as run:
        heads = synthetic.make_heads(run.model, base_texture(run), 8)
        samples = [synthetic.render_sample(run.model, head, yaw, 0.0, 256, tmp_path)
                   for head in heads for yaw in (80.0, -80.0)]
    fallback, found = landmarks_module.CROP_SCALES, {}
    for scales in ((2.0,), fallback):
        monkeypatch.setattr(landmarks_module, "CROP_SCALES", scales)
        found[scales] = [(s, det, estimator.estimate(s.image, det))
                         for s in samples for det in detector.detect(s.image)[:1]]
    count = {scales: sum(lm is not None for _, _, lm in rows) for scales, rows in found.items()}
    assert count[fallback] > count[(2.0,)], count
    errors = []   # nose tip error / box width of every face found
    for s, det, lm in found[fallback]:
        if lm is not None:
            truth = s.camera.project(s.vertices @ s.rotation.T + s.translation)
            errors.append(np.linalg.norm(lm.points[1, :2] - truth[s.vertices[:, 2].argmax()]) / (det.box[2] - det.box[0]))
    assert np.median(errors) < 0.1, errors
