"""``dense``: the landmark network fine-tuned on the ICT surface, then the model fit to its points.

Its 468 points are fixed surface points, so the fit slides no contour points, and they carry
identity that Face Mesh's do not, so the fit solves for every identity mode. Where the network is
unsure of its crop, Face Mesh and the ordinary fit are used instead, and the JSON says so.
"""
from __future__ import annotations

import time
from functools import cached_property

import cv2
import numpy as np

from ..camera import Camera, angles_from_rotation
from ..detect import Detection
from ..geometry import surface_points
from ..fit import Correspondence, Fitter, FitResult, FitSettings
from ..landmarks import DENSE_MODEL_FILE, LandmarkEstimator, Landmarks, dense_surface_points
from . import BaseMethod, Estimate, Shared
from .fit import LandmarkFit

# Four LM iterations, not the default eight: on the calibration data the last four moved helen_train
# NME by 0.015 % of the interocular distance (4.683 -> 4.698 %) and the renders' dense RMSE by 0.001 mm
# while halving the fit's time (scripts/calibrate_dense_prior.py --setting iterations --both).
DENSE_ITERATIONS = 4
FIT_SETTINGS = FitSettings(identity_modes=100, iterations=DENSE_ITERATIONS)
# Frontal faces (fitted yaw under FRONTAL_BELOW_YAW) are refitted with the identity held to the prior
# 8x more weakly: on the calibration data that measured better at every step down to 2.5e-4 for
# them (sixth-stage network: helen_train held-out NME 4.85 -> 4.68 %, renders' dense RMSE 4.34 ->
# 4.27 mm; 1.25e-4 within 0.5 % of it) and no better for renders turned 40 degrees or more (4.40 ->
# 4.43 mm), whose landmarks are noisier (scripts/calibrate_dense_prior.py, docs/landmarks.md).
FRONTAL_FIT_SETTINGS = FitSettings(identity_modes=100, identity_prior=2.5e-4, iterations=DENSE_ITERATIONS)
FRONTAL_BELOW_YAW = 40.0
# The mean head posed on the network's points by PnP gives the yaw within 4.4 degrees of the first
# fit's on every calibration face (scripts/calibrate_auto_method.py prints the gap), so only faces
# this near FRONTAL_BELOW_YAW need the first fit to choose their settings: the others are fitted once.
FRONTAL_YAW_MARGIN = 5.0
# A turned face's crop, drawn from points the network placed on a face it saw partly in profile,
# sits off the face; reading the points again from crops of their own converges in two more passes
# (renders of heads 100.., 68-point NME at PnP yaw 50-65 degrees 2.72 -> 2.06 %, 65-95: 3.01 ->
# 2.39 %; no gain below 50 degrees, where helen_train's frontal faces got slightly worse:
# scripts/calibrate_recrop.py, docs/landmarks.md).
RECROP_FROM_YAW = 50.0
RECROP_PASSES = 2
MIN_PRESENCE = 0.5      # below this face-presence probability the network's crop is not trusted


class DenseLandmarkFit(BaseMethod):
    name = "dense"
    network_attributes = ("estimator", "fitter", "frontal_fitter", "mean_points")

    def __init__(self, shared: Shared):
        super().__init__(shared)
        self.face_mesh = LandmarkFit(shared)

    @cached_property
    def estimator(self) -> LandmarkEstimator:
        return LandmarkEstimator(DENSE_MODEL_FILE, refiner_file=None)

    @cached_property
    def fitter(self) -> Fitter:
        return Fitter(self.model, FIT_SETTINGS, correspondence=dense_correspondence())

    @cached_property
    def frontal_fitter(self) -> Fitter:
        return Fitter(self.model, FRONTAL_FIT_SETTINGS, correspondence=dense_correspondence())

    @cached_property
    def mean_points(self) -> np.ndarray:
        """(468, 3) float64 cm: the network's points on the mean head (model frame)."""
        vertices, bary = dense_surface_points()
        return surface_points(self.model.shape().astype(np.float64), vertices, bary)

    def yaw(self, points: np.ndarray, camera: Camera) -> float:
        """Degrees of yaw of the mean head posed onto the network's points ``points`` (468, 2+) px
        (PnP: a millisecond, against a fit's ten)."""
        ok, rvec, _ = cv2.solvePnP(self.mean_points, points[:, :2].astype(np.float64), camera.matrix,
                                   None, flags=cv2.SOLVEPNP_SQPNP)
        return angles_from_rotation(cv2.Rodrigues(rvec)[0])[0] if ok else 0.0

    def place(self, image: np.ndarray, detection: Detection, camera: Camera) -> Landmarks | None:
        landmarks = self.network_landmarks(image, detection, camera)
        return landmarks if landmarks is not None and landmarks.presence >= MIN_PRESENCE else None

    def network_landmarks(self, image: np.ndarray, detection: Detection, camera: Camera) -> Landmarks | None:
        """The network's points, however unsure (None: it found no face); a face turned
        RECROP_FROM_YAW or more (PnP yaw) is read RECROP_PASSES more times, each on its own points' crop."""
        landmarks = self.estimator.estimate(image, detection)
        if (landmarks is not None and landmarks.presence >= MIN_PRESENCE and RECROP_PASSES
                and abs(self.yaw(landmarks.points, camera)) >= RECROP_FROM_YAW):
            landmarks = self.estimator.recrop(image, landmarks, RECROP_PASSES)
        return landmarks

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        t0 = time.perf_counter()
        landmarks = self.network_landmarks(image, detection, camera)
        t1 = time.perf_counter()
        if landmarks is None or landmarks.presence < MIN_PRESENCE:
            found = self.face_mesh.estimate(image, detection, camera)
            if found is not None:
                presence = 0.0 if landmarks is None else landmarks.presence
                found.fit.extra["fallback"] = (f"dense landmarks unsure (face presence {presence:.2f} < "
                                               f"{MIN_PRESENCE}); Face Mesh and the fit used instead")
                found.landmarks_ms += (t1 - t0) * 1000
            return found
        fit = self.fit_landmarks(landmarks, camera)
        fit.extra["method"] = "dense"
        return Estimate(fit, landmarks, (t1 - t0) * 1000)

    def fit_landmarks(self, landmarks: Landmarks, camera: Camera) -> FitResult:
        """The model fitted to the network's points, all weighted alike: weighting them by their
        predicted sigma (1 / sigma^2, held within 1.5-10x of the median) scored worse on the
        calibration data (docs/landmarks.md), so the sigmas are reported, not used. A frontal face
        (the fitted yaw under FRONTAL_BELOW_YAW) is fitted with the weaker identity prior
        (FRONTAL_FIT_SETTINGS); the PnP yaw decides where it is clear of that by the margin."""
        yaw = abs(self.yaw(landmarks.points, camera))
        if abs(yaw - FRONTAL_BELOW_YAW) > FRONTAL_YAW_MARGIN:
            return (self.frontal_fitter if yaw < FRONTAL_BELOW_YAW else self.fitter).fit(landmarks.points, camera)
        fit = self.fitter.fit(landmarks.points, camera)
        if abs(fit.angles[0]) < FRONTAL_BELOW_YAW:
            fit = self.frontal_fitter.fit(landmarks.points, camera)
        return fit


def dense_correspondence() -> Correspondence:
    """The surface points the network was trained on (not the fit's correspondence, which is
    re-derived for Face Mesh's points), all fixed: no contour slides."""
    vertices, bary = dense_surface_points()
    return Correspondence(vertices, bary, np.zeros(0, np.int64), np.zeros((0, 1), np.int64))
