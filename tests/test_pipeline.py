"""The main job end to end through the Python API, on real photos."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facerecon.load import load_image
from facerecon.model import load_model

REQUIRED_JSON = {
    "source", "face_index", "image_size", "box", "score", "landmarks", "pose", "camera",
    "blendshapes_arkit", "expression_ict", "identity", "fit", "units", "timings_ms",
}


@pytest.fixture(scope="module")
def portrait(eval_dir):
    return eval_dir / "photos" / "prnet" / "0.jpg"


def test_group_photo_gives_two_heads(run, eval_dir):
    faces = run(eval_dir / "photos" / "3ddfa_v2" / "trump_hillary.jpg")
    assert len(faces) == 2
    centres = sorted(float(f.detection.box[0] + f.detection.box[2]) / 2 for f in faces)
    width = faces[0].image.shape[1]
    assert centres[0] < width / 2 < centres[1]
    for face in faces:
        assert face.texture.shape == (256, 256, 3)
        assert face.fit.residual < 0.05


def test_mirrored_photo_gives_mirrored_yaw(run, eval_dir):
    image = load_image(eval_dir / "aflw2000-3d-16" / "image00516.jpg")  # about 35 degrees of yaw
    yaw, pitch, roll = run(image)[0].fit.angles
    m_yaw, m_pitch, m_roll = run(image[:, ::-1].copy())[0].fit.angles
    assert abs(yaw) > 15
    assert abs(yaw + m_yaw) < 4.0, (yaw, m_yaw)
    assert abs(pitch - m_pitch) < 4.0
    assert abs(roll + m_roll) < 4.0


def test_head_is_metric_and_the_landmarks_project_onto_the_photo(run, portrait):
    face = run(portrait)[0]
    span = face.vertices[:9409].max(0) - face.vertices[:9409].min(0)
    assert 14 < span[0] < 24 and 20 < span[1] < 35  # face area width and height in cm
    px68, cm68 = face.landmarks68()
    box = face.detection.box
    inside = (px68[:, 0] > box[0] - 20) & (px68[:, 0] < box[2] + 20) & (px68[:, 1] > box[1] - 20) & (px68[:, 1] < box[3] + 20)
    assert inside.all()
    # the fitted 478 points reproject close to where Face Mesh put them
    proj = face.camera.project(face.fit.to_camera(face.landmarks478_model()))
    err = np.linalg.norm(proj[:468] - face.landmarks.points[:468, :2], axis=1)
    assert np.median(err) < 0.03 * (box[2] - box[0])


def test_save_writes_every_file_and_every_json_field(run, portrait, tmp_path):
    face = run(portrait)[0]
    paths = face.save(tmp_path, formats=("obj", "glb", "ply"))
    for kind in ("obj", "glb", "ply", "json"):
        assert paths[kind].is_file() and paths[kind].stat().st_size > 0
    data = json.loads(paths["json"].read_text())
    assert REQUIRED_JSON <= set(data)
    assert len(data["landmarks"]["mediapipe478"]["pixels"]) == 478
    assert len(data["landmarks"]["ibug68"]["pixels"]) == 68
    assert len(data["landmarks"]["ibug68"]["model_cm"]) == 68
    assert np.array(data["pose"]["model_to_camera"]).shape == (4, 4)
    assert {"yaw_deg", "pitch_deg", "roll_deg"} <= set(data["pose"])
    assert len(data["blendshapes_arkit"]) == 51 and "jawOpen" in data["blendshapes_arkit"]
    assert all(0.0 <= w <= 1.0 for w in data["blendshapes_arkit"].values())
    assert len(data["identity"]) == load_model().n_identity
    assert not list(tmp_path.glob("*.tmp*"))


def test_pose_matrix_agrees_with_angles(run, portrait):
    from facerecon.camera import rotation_from_angles
    face = run(portrait)[0]
    assert np.allclose(rotation_from_angles(*face.fit.angles), face.fit.pose_matrix[:3, :3], atol=1e-6)
