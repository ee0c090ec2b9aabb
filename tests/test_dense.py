"""--method dense: the fine-tuned landmark network, a fit without sliding contour points, and the
fallback to Face Mesh when the network is unsure."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import EXAMPLE
import facerecon.methods.dense as dense
from facerecon.evaluation import synthetic
from facerecon.evaluation.protocols import base_texture
from facerecon.geometry import surface_points
from facerecon.landmarks import dense_surface_points
from facerecon.load import load_image


@pytest.fixture(scope="module")
def photo():
    return load_image(EXAMPLE)


def test_dense_reconstructs_with_fixed_surface_points(run, photo):
    (det,) = run.detect(photo).faces
    face = run.reconstruct_face(photo, det, run.camera_for(photo), with_texture=False, method="dense")
    data = face.to_dict()
    assert data["fit"]["method"] == "dense" and "fallback" not in data["fit"]
    assert data["fit"]["landmark_presence"] > 0.5
    assert len(data["landmarks"]["facemesh468"]["pixels"]) == 468
    # the network's per-point sigmas: positive, a few pixels on this 100 px face, varying by point
    sigma = np.array(data["landmarks"]["facemesh468"]["sigma_px"])
    assert sigma.shape == (468,) and sigma.min() > 0 and np.median(sigma) < 5.0 and sigma.max() > 1.5 * sigma.min()
    fitter = run.get_method("dense").fitter
    assert len(fitter.contour_landmarks) == 0          # every point is a fixed surface point
    # its points and the fitted head agree (a few pixels on a 100 px face)
    assert face.fit.residual_px < 3.0
    # and the head is where Face Mesh's fit puts it: its nose tip on the same pixels, at a distance
    # within a few per cent of that fit's 1 m (the two nets' points, and dense's weaker identity
    # prior on frontal faces, give heads of somewhat different size, which moves them in depth)
    plain = run.reconstruct_face(photo, det, run.camera_for(photo), with_texture=False, method="fit")
    nose = run.model.landmarks68[30]
    camera = run.camera_for(photo)
    ours, theirs = face.vertices_camera[nose], plain.vertices_camera[nose]
    assert np.linalg.norm(camera.project(ours[None]) - camera.project(theirs[None])) < 3.0    # px
    assert abs(ours[2] - theirs[2]) < 0.08 * theirs[2]


def test_a_frontal_face_is_fitted_once_with_the_frontal_settings(run, photo, monkeypatch):
    """The PnP yaw decides faces clear of FRONTAL_BELOW_YAW: the example's face is fitted once, with
    the weaker prior, to the same head the fitted yaw's rule gives; near the line the first fit
    decides, as before."""
    method = run.get_method("dense")
    (det,) = run.detect(photo).faces
    camera = run.camera_for(photo)
    landmarks = method.estimator.estimate(photo, det)
    assert abs(method.yaw(landmarks.points, camera)) < dense.FRONTAL_BELOW_YAW - dense.FRONTAL_YAW_MARGIN
    calls = []
    for name in ("fitter", "frontal_fitter"):
        fitter = getattr(method, name)
        monkeypatch.setattr(fitter, "fit", lambda *a, _fit=fitter.fit, _name=name: calls.append(_name) or _fit(*a))
    once = method.fit_landmarks(landmarks, camera)
    assert calls == ["frontal_fitter"]
    calls.clear()
    monkeypatch.setattr(dense, "FRONTAL_YAW_MARGIN", 90.0)     # every face near the line
    twice = method.fit_landmarks(landmarks, camera)
    assert calls == ["fitter", "frontal_fitter"]
    np.testing.assert_allclose(once.identity, twice.identity, atol=1e-6)


@pytest.fixture(scope="module")
def turned(run, tmp_path_factory):
    """A synthetic head (an identity the evaluation does not use) 75 degrees to the side, whose
    first reading is framed by the detection's box, not by its points."""
    (head,) = synthetic.make_heads(run.model, base_texture(run, 256), 1, first=104)
    return synthetic.render_sample(run.model, head, -75.0, 0.0, 256, tmp_path_factory.mktemp("turned"))


def test_a_turned_face_is_read_again_from_its_own_points_crop(run, photo, turned):
    """Past RECROP_FROM_YAW the points are read RECROP_PASSES more times, from crops of their own,
    and land nearer the true head's points (the seventh-stage network's first reading of this face is
    2.5 px off at the median, the sixth's over 3); a frontal face keeps its first reading."""
    method = run.get_method("dense")
    (det,) = run.detect(turned.image).faces
    first = method.estimator.estimate(turned.image, det)
    assert abs(method.yaw(first.points, turned.camera)) >= dense.RECROP_FROM_YAW
    placed = method.place(turned.image, det, turned.camera)
    again = method.estimator.recrop(turned.image, first, dense.RECROP_PASSES)
    np.testing.assert_array_equal(placed.points, again.points)
    assert placed.presence == first.presence and placed.sigma.shape == (468,)
    truth = turned.camera.project(surface_points(turned.vertices, *dense_surface_points()) @ turned.rotation.T
                                  + turned.translation)
    error = {name: np.median(np.linalg.norm(marks.points[:, :2] - truth, axis=1)) for name, marks in
             (("first", first), ("placed", placed))}
    assert error["placed"] < 0.9 * error["first"], error   # px, on a 256 px render
    (frontal,) = run.detect(photo).faces
    np.testing.assert_array_equal(method.place(photo, frontal, run.camera_for(photo)).points,
                                  method.estimator.estimate(photo, frontal).points)


def test_unsure_network_falls_back_to_face_mesh(run, photo, monkeypatch):
    monkeypatch.setattr(dense, "MIN_PRESENCE", 1.01)    # no crop is ever sure enough
    (det,) = run.detect(photo).faces
    face = run.reconstruct_face(photo, det, run.camera_for(photo), with_texture=False, method="dense")
    data = face.to_dict()
    assert data["fit"]["method"] == "fit"
    assert data["fit"]["fallback"].startswith("dense landmarks unsure")


def test_unknown_method_is_an_error(run, photo):
    (det,) = run.detect(photo).faces
    with pytest.raises(ValueError, match="method must be one of"):
        run.reconstruct_face(photo, det, run.camera_for(photo), method="fitt")

