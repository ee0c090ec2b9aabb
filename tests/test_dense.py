"""--method dense: the fine-tuned landmark network, a fit without sliding contour points, and the
fallback to Face Mesh when the network is unsure."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import EXAMPLE
import facerecon.methods.dense as dense
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
    fitter = run.get_method("dense").fitter
    assert len(fitter.contour_landmarks) == 0          # every point is a fixed surface point
    # its points and the fitted head agree (a few pixels on a 100 px face)
    assert face.fit.residual_px < 3.0
    # and the head is where Face Mesh's fit puts it: within a few per cent of its 1 m distance (the
    # two nets' points give heads of slightly different size, so mostly in depth)
    plain = run.reconstruct_face(photo, det, run.camera_for(photo), with_texture=False, method="fit")
    nose = run.model.landmarks68[30]
    offset = face.vertices_camera[nose] - plain.vertices_camera[nose]
    assert np.linalg.norm(offset[:2]) < 1.0 and abs(offset[2]) < 0.03 * plain.vertices_camera[nose][2]   # cm


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


def test_points_weigh_by_their_predicted_uncertainty():
    """Points the network calls unsure (large sigma) count less: on exact projections with noise of
    the stated sigma, the weighted fit's excess error over the noise-free fit's is a fraction of the
    unweighted one's (measured: 0.02 against 0.20 px)."""
    from facerecon.camera import Camera, rotation_from_angles
    from facerecon.fit import Fitter, load_correspondence
    from facerecon.geometry import surface_points
    from facerecon.model import load_model
    model = load_model()
    fitter = Fitter(model)
    corr = load_correspondence()
    rng = np.random.default_rng(5)
    identity = rng.standard_normal(model.n_identity) * 0.8
    head = model.shape(identity, np.zeros(model.n_expression))
    rot = rotation_from_angles(30, 5, 0)
    camera = Camera.for_image(512, 512)
    truth = surface_points(head, corr.vertices, corr.bary) @ rot.T + np.array([0.0, 0.0, 60.0])
    sigma = np.full(468, 0.3)
    sigma[rng.choice(468, 150, replace=False)] = 6.0
    observed = camera.project(truth) + rng.standard_normal((468, 2)) * sigma[:, None]
    weights = dense.uncertainty_weights(sigma)
    assert weights.mean() == pytest.approx(1.0) and weights.max() / weights.min() == pytest.approx(dense.SIGMA_RANGE ** 2)  # 6 px held at 3x the median
    assert dense.uncertainty_weights(None) is None

    def error(fit):
        """Mean pixel distance of the fitted head's points from the noise-free projections."""
        fitted = surface_points(fit.to_camera(fit.vertices(model)), corr.vertices, corr.bary)
        return np.linalg.norm(camera.project(fitted) - camera.project(truth), axis=1).mean()
    exact = error(fitter.fit(camera.project(truth), camera))
    plain, weighted = fitter.fit(observed, camera), fitter.fit(observed, camera, point_weights=weights)
    assert error(weighted) - exact < 0.3 * (error(plain) - exact), (exact, error(weighted), error(plain))
