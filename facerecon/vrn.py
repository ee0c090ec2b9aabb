"""Reconstruct by volumetric regression (VRN): a CNN predicts an occupancy volume, the ICT model is
registered to its front surface.

``facerecon/data/regressor_vrn64.onnx`` (``facerecon train configs/vrn_cpu.yaml``) maps the same
128 px crop as the position-map regressor to occupancy logits (64 depth bins x 64 x 64, see
``facerecon.volume``). The surface is extracted by marching cubes (scikit-image) at 0.5, as VRN
does, keeping the side that faces the camera (the back of the head is never seen); reading the
first bin past 0.5 per column (``extraction="columns"``) is the measured alternative (AFLW2000-3D-16
NME 54.0 % against 49.1 %). The volume carries no correspondence, so the ICT head is registered by
ICP:

1. rigid-with-scale ICP from the surface points to the mean head's camera-facing vertices, from
   five yaw starts (-70..70 degrees); the start with the lowest mean distance wins;
   (in the camera frame: the points are lifted at a guessed distance, and the scale found sets the
   face's true distance, as in ``regress``);
2. four rounds of: closest points, similarity (scale back into distance), ridge least squares for
   identity and expression on the matched vertices (``regress.RegressSettings`` priors).

Kept as a measured alternative (``--method vrn``); see MODEL_CARD.md.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .assets import VRN_MODEL
from .camera import Camera, rotation_from_angles
from .detect import Detection
from .fit import FitResult
from .geometry import umeyama, vertex_normals
from .landmarks import Landmarks
from .model import FACE_AREA, HeadModel
from .posmap import crop_image, crop_window, from_crop_frame, uv_layout
from .regress import RegressSettings, fitted_landmarks, onnx_session
from .volume import front_surface, marching_cubes_surface

DEFAULT_MODEL = VRN_MODEL
YAW_STARTS = (-70.0, -35.0, 0.0, 35.0, 70.0)
ICP_ITERATIONS = 10
SHAPE_ROUNDS = 4
MIN_SURFACE_POINTS = 50
# How the surface comes out of the volume: "marching_cubes" (VRN's: the visible side of the 0.5
# iso-surface, scikit-image) or "columns" (the first bin past 0.5 per column).
EXTRACTIONS = {"marching_cubes": marching_cubes_surface, "columns": front_surface}
DEFAULT_EXTRACTION = "marching_cubes"
CM_PER_UNIT_GUESS = 15.5


class VolumeRegressor:
    """Loads the ONNX occupancy network once; :meth:`fit` reconstructs one detected face."""

    def __init__(self, model: HeadModel, path: str | Path = DEFAULT_MODEL,
                 settings: RegressSettings = RegressSettings(), stride: int = 4,
                 extraction: str = DEFAULT_EXTRACTION):
        if extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {extraction!r}")
        self.extract = EXTRACTIONS[extraction]
        self.path, self._session = path, None
        self.model, self.settings = model, settings
        layout = uv_layout(model, 128)
        self.vertices = layout.vertices[layout.reliable][::stride]     # face and head/neck, spread out
        self.mean = model.neutral[self.vertices].astype(np.float64)
        normals = vertex_normals(model.neutral.astype(np.float64), model.triangles)
        # ICT's winding makes these point into the head; outward is what faces the camera
        if normals[FACE_AREA, 2].mean() < 0:
            normals = -normals
        self.normals = normals[self.vertices]
        basis = np.concatenate([model.identity_basis[:, self.vertices], model.expression_basis[:, self.vertices]], 0)
        self.basis = np.ascontiguousarray(np.moveaxis(basis, 0, -1), np.float64)   # (n, 3, identity + 53)

    @property
    def session(self):
        """The network, loaded on first use (the registration alone needs none)."""
        if self._session is None:
            self._session = onnx_session(self.path, self.settings.threads)
        return self._session

    def surface(self, image: np.ndarray, detection: Detection):
        """The predicted front surface (n, 3) in the crop frame, and the crop window."""
        window = crop_window(detection.box)
        x = (crop_image(image, window, int(self.session.get_inputs()[0].shape[2])).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        logits = self.session.run(None, {"image": np.ascontiguousarray(x)})[0][0]
        return self.extract(1.0 / (1.0 + np.exp(-logits))), window

    def _pairs(self, shape, rotation, translation, scale, points):
        """Each surface point with its nearest camera-facing head vertex: (vertex rows, distances).
        Surface to head, not head to surface: the volume is cut by the crop and its depth range,
        the head is whole, so only this direction has a true partner for every point."""
        front = np.flatnonzero((self.normals @ rotation.T)[:, 2] < 0)    # camera z looks into the scene
        dist, idx = cKDTree(scale * shape[front] @ rotation.T + translation).query(points)
        return front[idx], dist

    def _icp(self, points, scale, rotation, translation):
        """Similarity ICP of the mean head onto ``points``; returns (mean distance, scale, R, t)."""
        for _ in range(ICP_ITERATIONS):
            rows, dist = self._pairs(self.mean, rotation, translation, scale, points)
            keep = dist < max(3 * np.median(dist), 1e-3)
            placed = umeyama(self.mean[rows[keep]], points[keep])
            scale, rotation, translation = placed.scale, placed.rotation, placed.translation
        _, dist = self._pairs(self.mean, rotation, translation, scale, points)
        return float(dist.mean()), scale, rotation, translation

    def fit(self, image: np.ndarray, detection: Detection, camera: Camera) -> tuple[FitResult, Landmarks] | None:
        """Reconstruct the face in ``detection``; None if the volume holds too little surface."""
        points, window = self.surface(image, detection)
        if len(points) < MIN_SURFACE_POINTS:
            return None
        fit = self.register(points, window, camera)
        return fit, fitted_landmarks(fit, self.model, camera, detection)

    def register(self, points: np.ndarray, window, camera: Camera) -> FitResult:
        """The ICT head registered to crop-frame surface points (see the module docstring)."""
        # Lift into the camera frame at a guessed distance (about 15.5 cm per crop unit: the face box
        # is ~0.45 of the crop): registering in the crop frame, whose x, y are perspective-divided
        # and z is not, biases yaw. A wrong distance only scales the points, which ICP's scale absorbs.
        ref_depth = CM_PER_UNIT_GUESS * camera.focal / (window.side / 2)
        target = from_crop_frame(points.astype(np.float64), camera.focal, camera.cx, camera.cy, window, ref_depth)
        best = None
        spread = np.sqrt(target[:, :2].var(0).sum())
        for yaw in YAW_STARTS:
            rotation = rotation_from_angles(yaw, 0.0, 0.0)
            front = (self.normals @ rotation.T)[:, 2] < 0
            src = self.mean[front] @ rotation.T
            scale = spread / np.sqrt(src[:, :2].var(0).sum())
            translation = target.mean(0) - scale * src.mean(0)
            result = self._icp(target, scale, rotation, translation)
            if best is None or result[0] < best[0]:
                best = result
        _, scale, rotation, translation = best
        target, translation = target / scale, translation / scale   # the scale goes into the distance
        shape = self.mean

        m, s = self.model, self.settings
        coeffs = np.zeros(m.n_identity + m.n_expression)
        prior = np.r_[np.full(m.n_identity, s.identity_prior), np.full(m.n_expression, s.expression_prior)]
        for _ in range(SHAPE_ROUNDS):
            rows, dist = self._pairs(shape, rotation, translation, 1.0, target)
            keep = dist < max(3 * np.median(dist), 0.05)
            rows, matched = rows[keep], target[keep]
            placed = umeyama(shape[rows], matched)
            k, rotation, translation = placed.scale, placed.rotation, placed.translation
            target, translation, matched = target / k, translation / k, matched / k
            local = (matched - translation) @ rotation - self.mean[rows]
            basis = self.basis[rows].reshape(-1, self.basis.shape[2])
            normal = basis.T @ basis + np.diag(prior * len(rows))
            coeffs = np.linalg.solve(normal, basis.T @ local.ravel())
            coeffs[m.n_identity:] = np.clip(coeffs[m.n_identity:], 0.0, 1.0)
            shape = self.mean + self.basis @ coeffs
        placed = umeyama(shape[rows], matched)
        k, rotation, translation = placed.scale, placed.rotation, placed.translation
        target, translation, matched = target / k, translation / k, matched / k
        residual = np.linalg.norm(camera.project(shape[rows] @ rotation.T + translation) - camera.project(matched), axis=1)
        pixels = camera.project(target)
        size = float(np.sqrt(np.prod(pixels.max(0) - pixels.min(0))))
        return FitResult(identity=coeffs[:m.n_identity].astype(np.float32),
                         expression=coeffs[m.n_identity:].astype(np.float32), rotation=rotation,
                         translation=translation, camera=camera, residual_px=float(residual.mean()),
                         residual=float(residual.mean() / size), iterations=SHAPE_ROUNDS, extra={"method": "vrn"})
