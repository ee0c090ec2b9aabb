"""The fit recovers known heads from their exact landmark projections, and behaves on real photos."""
from __future__ import annotations

import numpy as np
import pytest

from facerecon.assets import PACKAGE_DATA
from facerecon.camera import Camera, rotation_from_angles
from facerecon.fit import Fitter, load_correspondence
from facerecon.model import PARTS, load_model
from facerecon.geometry import surface_points


@pytest.fixture(scope="module")
def fitter():
    return Fitter(load_model())


def synthetic_landmarks(model, identity, expression, yaw, pitch, roll, camera, distance=60.0):
    """Exact projections of the 468 Face Mesh surface points of a posed head."""
    corr = load_correspondence()
    head = model.shape(identity, expression)
    rot = rotation_from_angles(yaw, pitch, roll)
    points = surface_points(head, corr.vertices, corr.bary) @ rot.T + np.array([1.0, -2.0, distance])
    return camera.project(points), rot, head


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (25, -10, 5), (-40, 15, -10)])
def test_pose_recovered_from_exact_landmarks(fitter, yaw, pitch, roll):
    model = fitter.model
    rng = np.random.default_rng(7)
    identity = rng.standard_normal(model.n_identity) * 0.8
    expression = np.zeros(model.n_expression)
    expression[model.expression_names.index("jawOpen")] = 0.3
    camera = Camera.for_image(640, 480)
    observed, rot, head = synthetic_landmarks(model, identity, expression, yaw, pitch, roll, camera)
    fit = fitter.fit(observed, camera)
    assert fit.residual < 0.008  # of the face size (turned faces weigh their landmarks less: see landmark_weight)
    got = np.array(fit.angles)
    assert np.abs(got - [yaw, pitch, roll]).max() < 4.0, got
    # the fitted face surface lies close to the true one (after removing the translation offset)
    face = np.arange(6706)
    true_cam = head[face] @ rot.T
    got_cam = fit.to_camera(fit.vertices(model)[face]) - fit.translation
    offset = (got_cam - true_cam).mean(0)
    rmse = np.sqrt(np.mean(np.sum((got_cam - offset - true_cam) ** 2, axis=1)))
    assert rmse < 0.35, f"face surface RMSE {rmse:.3f} cm"
    assert fit.expression.min() >= 0 and fit.expression.max() <= 1


def test_expression_weights_stay_sparse_on_neutral(fitter):
    model = fitter.model
    camera = Camera.for_image(512, 512)
    observed, _, _ = synthetic_landmarks(model, None, None, 10, 0, 0, camera)
    fit = fitter.fit(observed, camera)
    assert np.sum(fit.expression > 0.1) <= 3


def test_outlier_landmarks_do_not_drag_the_fit(fitter):
    model = fitter.model
    camera = Camera.for_image(512, 512)
    observed, _, _ = synthetic_landmarks(model, None, None, 15, 5, 0, camera)
    clean = fitter.fit(observed, camera)
    corrupted = observed.copy()
    rng = np.random.default_rng(3)
    bad = rng.choice(468, 25, replace=False)
    corrupted[bad] += rng.normal(0, 40, (25, 2))
    robust = fitter.fit(corrupted, camera)
    assert np.abs(np.array(robust.angles) - np.array(clean.angles)).max() < 3.0


def test_contour_slides_to_the_silhouette_at_large_yaw(fitter):
    """At 70 degrees, the far-side contour landmarks lie on the silhouette; the fit still finds the yaw."""
    model = fitter.model
    camera = Camera.for_image(512, 512)
    corr = load_correspondence()
    head = model.shape()
    rot = rotation_from_angles(70, 0, 0)
    t = np.array([0.0, 0.0, 60.0])
    points = surface_points(head, corr.vertices, corr.bary) @ rot.T + t
    observed = camera.project(points)
    # replace each contour landmark by the outermost projected vertex of its candidate strip
    for lm, cand in zip(corr.contour_landmarks, corr.contour_candidates):
        cand = cand[cand >= 0]
        pix = camera.project(head[cand] @ rot.T + t)
        outward = np.sign(head[corr.vertices[lm, 0], 0]) * rot[:2, 0]
        observed[lm] = pix[np.argmax(pix @ outward)]
    fit = fitter.fit(observed, camera)
    assert abs(fit.angles[0] - 70) < 5.0, fit.angles


def test_only_the_leading_identity_modes_are_fitted(fitter):
    model = fitter.model
    camera = Camera.for_image(512, 512)
    identity = np.zeros(model.n_identity)
    identity[:5] = [1.5, -1.0, 0.8, -0.6, 0.5]
    observed, _, head = synthetic_landmarks(model, identity, None, -20, 5, 0, camera)
    fit = fitter.fit(observed, camera)
    n = fitter.settings.identity_modes
    assert fit.identity.shape == (model.n_identity,)
    assert np.all(fit.identity[n:] == 0)
    # the fitted face is closer to the true one than the mean face is (up to scale and offset,
    # which a single view cannot separate from distance)
    face = np.arange(6706)

    def misfit(shape):
        a, b = shape[face] - shape[face].mean(0), head[face] - head[face].mean(0)
        return np.sqrt(np.mean(np.sum((a * (np.sum(a * b) / np.sum(a * a)) - b) ** 2, axis=1)))

    assert misfit(fit.vertices(model)) < 0.75 * misfit(model.neutral)  # 0.59 now; 1 if unfitted


def test_eye_landmarks68_lie_on_the_eyelid_margins():
    """Calibrated eye corners and lid points sit near ICT's own eye landmarks, not on the brow or cheek.

    Lid annotations often land on the eyeball; the calibration keeps those hits and snaps them to
    the face surface, so a bug there would move eye points onto the eyeball or off the eye.
    """
    model = load_model()
    cal = np.load(PACKAGE_DATA / "landmarks68_ict.npz")
    points = surface_points(model.neutral, cal["vertices"], cal["bary"])
    eyes = np.arange(36, 48)
    gap = np.linalg.norm(points[eyes] - model.neutral[model.landmarks68[eyes]], axis=1)
    assert gap.max() < 1.0, gap  # cm; the eye opening is about 1 cm high
    assert np.all(cal["vertices"][eyes] <= PARTS["face"][1])


def test_landmarks_weigh_less_for_turned_faces():
    """A view's landmarks weigh by 1 / Face Mesh's noise variance at the face's yaw (1 when frontal)."""
    from facerecon.fit import LANDMARK_NOISE, landmark_weight

    assert landmark_weight(0.0) == 1.0
    assert landmark_weight(-30.0) == landmark_weight(30.0) < 1.0
    assert landmark_weight(60.0) == pytest.approx((LANDMARK_NOISE[0] / LANDMARK_NOISE[2]) ** 2)
    assert landmark_weight(85.0) == landmark_weight(60.0)      # held beyond the last measured yaw


def test_a_single_photo_is_a_one_view_joint_fit(fitter):
    """Fitter.fit is Fitter.fit_views of one view from the PnP pose: refitting its result as one view
    (weighted by its landmark weight) barely moves it, and a held identity stays exactly as given."""
    from facerecon.fit import landmark_weight

    model = fitter.model
    identity = np.random.default_rng(3).standard_normal(model.n_identity) * 0.8
    camera = Camera.for_image(640, 480)
    observed, _, _ = synthetic_landmarks(model, identity, np.zeros(model.n_expression), 25.0, 5.0, 0.0, camera)
    alone = fitter.fit(observed, camera)
    again = fitter.fit_views([observed], [camera], [alone], np.array([landmark_weight(25.0)])).fits[0]
    assert np.abs(again.identity - alone.identity).max() < 0.05
    assert again.residual <= alone.residual * 1.01
    held = fitter.fit(observed, camera, identity=identity)
    assert np.array_equal(held.identity, identity.astype(np.float32))


def test_real_photo_refinement_moves_only_inner_points_and_only_a_little():
    data = np.load(PACKAGE_DATA / "mediapipe_ict.npz")
    model = load_model()
    refined = surface_points(model.neutral, data["vertices"], data["bary"])
    rendered = surface_points(model.neutral, data["render_vertices"], data["render_bary"])
    moved = np.linalg.norm(refined - rendered, axis=1) * 10.0           # mm
    fixed = data["contour_landmarks"]      # the sliding contour points
    assert np.all(moved[fixed] == 0.0)
    inner = np.setdiff1d(np.arange(468), data["contour_landmarks"])
    assert 0.3 < np.median(moved[inner]) < 3.0 and moved.max() < 20.0
    assert np.all(data["vertices"][inner] <= PARTS["face"][1])         # still on the face surface


def test_points_weigh_by_their_weights(fitter):
    """``point_weights``: on exact projections with noise of a known sigma per point, weights
    1 / sigma^2 (capped at 9x the others) bring the fit's excess error over the noise-free fit's to
    a fraction of the unweighted one's (measured: 0.02 against 0.20 px)."""
    model = fitter.model
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
    weights = 1.0 / np.minimum(sigma, 0.9) ** 2
    weights /= weights.mean()

    def error(fit):
        """Mean pixel distance of the fitted head's points from the noise-free projections."""
        fitted = surface_points(fit.to_camera(fit.vertices(model)), corr.vertices, corr.bary)
        return np.linalg.norm(camera.project(fitted) - camera.project(truth), axis=1).mean()
    exact = error(fitter.fit(camera.project(truth), camera))
    plain, weighted = fitter.fit(observed, camera), fitter.fit(observed, camera, point_weights=weights)
    assert error(weighted) - exact < 0.3 * (error(plain) - exact), (exact, error(weighted), error(plain))
