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
    # the fitted 468 points reproject close to where Face Mesh put them
    proj = face.camera.project(face.fit.to_camera(face.landmarks468_model()))
    err = np.linalg.norm(proj[:468] - face.landmarks.points[:468, :2], axis=1)
    assert np.median(err) < 0.03 * (box[2] - box[0])


def test_save_writes_every_file_and_every_json_field(run, portrait, tmp_path):
    face = run(portrait)[0]
    paths = face.save(tmp_path, formats=("obj", "glb", "ply"))
    for kind in ("obj", "glb", "ply", "json"):
        assert paths[kind].is_file() and paths[kind].stat().st_size > 0
    data = json.loads(paths["json"].read_text())
    assert REQUIRED_JSON <= set(data)
    assert len(data["landmarks"]["facemesh468"]["pixels"]) == 468
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


@pytest.mark.parametrize("options, name", [
    ({"texture_size": 10}, "texture_size"), ({"texture_size": 5000}, "texture_size"),
    ({"texture_size": 256.0}, "texture_size"), ({"max_faces": 0}, "max_faces"),
    ({"fov_deg": 200.0}, "fov_deg"), ({"fov_deg": float("nan")}, "fov_deg"), ({"fov_deg": 1.0}, "fov_deg"),
])
def test_reconstructor_refuses_what_the_cli_refuses(options, name):
    from facerecon.pipeline import Reconstructor
    with pytest.raises(ValueError, match=name):
        Reconstructor(**options)


def test_a_face_without_a_texture_saves_with_one_baked_then(run, portrait, tmp_path):
    image = load_image(portrait)
    detection = run.detect(image).faces[0]
    face = run.reconstruct_face(image, detection, run.camera_for(image), with_texture=False)
    assert face.texture is None
    paths = face.save(tmp_path, formats=("obj", "glb", "ply"), texture_size=128)
    assert all(paths[kind].stat().st_size > 0 for kind in ("obj", "png", "glb", "ply", "json"))
    assert face.texture.shape == (128, 128, 3) and face.texture.std() > 10     # the photo, not a blank


@pytest.mark.parametrize("points", [
    np.full((478, 3), 100.0, np.float32),                                        # one point
    np.stack([np.linspace(0, 100, 478), np.zeros(478), np.zeros(478)], 1),      # a line: the fit was NaN
    np.full((478, 3), np.nan, np.float32),
])
def test_degenerate_landmarks_are_a_fit_error(run, portrait, monkeypatch, points):
    from facerecon.errors import FitError
    from facerecon.landmarks import Landmarks
    monkeypatch.setattr(run.estimator, "estimate", lambda image, det: Landmarks(points.astype(np.float32), det))
    with pytest.raises(FitError, match=r"0.jpg: the landmarks are degenerate \(they span"):
        run(portrait)


def test_a_fit_that_does_not_converge_is_a_fit_error(run, portrait, monkeypatch):
    import dataclasses

    from facerecon.errors import FitError
    real_fit = run.fitter.fit
    monkeypatch.setattr(run.fitter, "fit", lambda *args, **kwargs: dataclasses.replace(
        real_fit(*args, **kwargs), translation=np.full(3, np.nan)))
    with pytest.raises(FitError, match="0.jpg: the fit of this face did not converge"):
        run(portrait)


def test_a_solver_failure_is_a_fit_error(run, portrait, monkeypatch):
    import cv2

    from facerecon.errors import FitError

    def failing_pnp(*args, **kwargs):
        raise cv2.error("(-215:Assertion failed) point_coordinate_variance >= POINT_VARIANCE_THRESHOLD")

    monkeypatch.setattr(cv2, "solvePnP", failing_pnp)
    with pytest.raises(FitError, match="0.jpg: the head could not be fitted to this face .*error"):
        run(portrait)


def test_reconstruct_takes_the_fov_and_runs_one_call_at_a_time_across_threads(monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from facerecon import pipeline

    class Probe:    # stands in for the Reconstructor: records its options and overlapping calls
        made: list[tuple] = []
        inside, most = 0, 0
        lock = threading.Lock()

        def __init__(self, texture_size, max_faces, fov_deg=None):
            self.made.append((texture_size, max_faces, fov_deg))
            self.closed = False

        def __call__(self, photo):
            with self.lock:
                Probe.inside += 1
                Probe.most = max(Probe.most, Probe.inside)
            time.sleep(0.02)
            with self.lock:
                Probe.inside -= 1
            return [self]

        def close(self):
            self.closed = True

    monkeypatch.setattr(pipeline, "Reconstructor", Probe)
    monkeypatch.setattr(pipeline, "_default", {})
    with ThreadPoolExecutor(6) as threads:
        results = list(threads.map(lambda _: pipeline.reconstruct("x.jpg", fov_deg=30.0)[0], range(12)))
    assert Probe.made == [(1024, None, 30.0)] and Probe.most == 1
    assert len({id(r) for r in results}) == 1
    other = pipeline.reconstruct("x.jpg", texture_size=256)[0]
    assert Probe.made[-1] == (256, None, None) and results[0].closed and not other.closed
    with pytest.raises(ValueError, match="fov_deg"):
        pipeline.reconstruct("x.jpg", fov_deg=500.0)
