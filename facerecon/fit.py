"""Reconstruct by fitting: the ICT head model fitted to dense 2D landmarks.

Unknowns: rotation and translation of the head in the camera frame (cm), the leading 40 of the 100
identity coefficients (standard-normal prior; the later PCA modes move the landmarks by well under a
pixel, and leaving them out halves the fit time) and 53 ARKit expression weights in [0, 1] (L1 sparsity prior).
The cost is the robust (Huber) reprojection error of the 468 Face Mesh points, normalised by the
face size so that the priors mean the same for any image size. It is minimised by
Levenberg-Marquardt on the analytic Jacobian, after a PnP start. Jaw and cheek contour points
slide along a strip of candidate vertices to wherever the head's silhouette is at the current
pose, which keeps large-yaw fits from pulling the far cheek out to the image contour.

The landmark -> surface correspondence is ``facerecon/data/mediapipe_ict.npz`` made by
``scripts/derive_correspondence.py`` and refined on real photos by ``scripts/refine_correspondence.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .assets import PACKAGE_DATA
from .camera import Camera, angles_from_rotation
from .errors import FitError
from .model import HeadModel

N_FACE_POINTS = 468
# Face Mesh's mean landmark error (fraction of the face size, inner points) against their surface
# points on synthetic renders (scripts/measure_landmark_noise.py: 8 identities, 256 px; the plain net
# finding the crop, the attention net refining it), by yaw:
# turned faces are much noisier and biased. The fit weighs its priors by the noise variance at the
# face's yaw (a MAP fit whose data term is |r|^2 / sigma^2), and the multi-view fit weighs views by
# 1 / sigma^2. When introduced: dense face RMSE 4.66 -> 4.28 mm on 8 synthetic heads at yaw 0..80
# (80 degrees: 5.76 -> 4.91 mm), 68-point NME unchanged.
LANDMARK_NOISE_YAW = (0.0, 30.0, 60.0)
LANDMARK_NOISE = (0.0146, 0.0201, 0.0375)


def prior_scale(yaw_deg: float) -> float:
    """(sigma(yaw) / sigma(0))^2: how much more the priors weigh for a face turned by ``yaw_deg``."""
    return float((np.interp(abs(yaw_deg), LANDMARK_NOISE_YAW, LANDMARK_NOISE) / LANDMARK_NOISE[0]) ** 2)


@dataclass(frozen=True)
class FitSettings:
    iterations: int = 8               # later iterations change the landmarks by < 0.1% of the face
    tolerance: float = 1e-4           # relative cost decrease below which the fit has converged
    identity_modes: int = 40          # leading (PCA) identity modes; the rest barely move landmarks
    identity_prior: float = 2e-3      # weight of |identity|^2 against the normalised squared error
    # Weight of |expression|^2. A weak prior lets the 53 shapes soak up what the landmarks'
    # convention and the identity prior leave over: a neutral face got eyeSquint 0.6, jawRight 0.4.
    # 2e-4 -> 1e-2 (chosen on synthetic renders, flat from 5e-3 to 1e-1): synthetic dense RMSE
    # 4.05 -> 3.88 mm (6 heads, 512 px), james scan 1.83 / 1.80 -> 1.53 / 1.81 mm, 68-point NME
    # unchanged (AFLW2000-3D-16 5.05 -> 5.11 %, held-out photos 9.26 -> 9.10 %).
    expression_prior: float = 1e-2
    expression_l1: float = 4e-4       # weight of sum(expression): most ARKit shapes stay at 0
    huber: float = 0.02               # residual (fraction of face size) beyond which weight falls off
    contour_weight: float = 0.5       # silhouette points are less precise than inner ones


@dataclass
class FitResult:
    """A fitted head. ``rotation``/``translation`` map model-frame cm to camera-frame cm."""

    identity: np.ndarray        # (n_identity,) float32: 40 with the packaged model
    expression: np.ndarray      # (53,) float32 in [0, 1]
    rotation: np.ndarray        # (3, 3)
    translation: np.ndarray     # (3,) cm
    camera: Camera
    residual_px: float          # mean reprojection error of the inner landmarks, pixels
    residual: float             # the same, as a fraction of the face size
    iterations: int = 0
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees, see :func:`facerecon.camera.rotation_from_angles`."""
        return angles_from_rotation(self.rotation)

    @property
    def pose_matrix(self) -> np.ndarray:
        """4x4 model-to-camera transform (OpenCV camera axes, cm)."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.rotation, self.translation
        return m

    def vertices(self, model: HeadModel) -> np.ndarray:
        """(V, 3) head vertices in the model frame, cm."""
        return model.shape(self.identity, self.expression)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return points @ self.rotation.T.astype(np.float32) + self.translation.astype(np.float32)


@dataclass(frozen=True)
class Correspondence:
    vertices: np.ndarray            # (468, 3) int32
    bary: np.ndarray                # (468, 3) float32
    contour_landmarks: np.ndarray   # (C,) landmark indices that slide
    contour_candidates: np.ndarray  # (C, K) vertex indices, -1 padded


@lru_cache(maxsize=1)
def load_correspondence() -> Correspondence:
    data = np.load(PACKAGE_DATA / "mediapipe_ict.npz")
    return Correspondence(data["vertices"], data["bary"], data["contour_landmarks"],
                          data["contour_candidates"])


def _skew(v: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3, 3) cross-product matrices."""
    out = np.zeros(v.shape + (3,), v.dtype)
    out[:, 0, 1], out[:, 0, 2] = -v[:, 2], v[:, 1]
    out[:, 1, 0], out[:, 1, 2] = v[:, 2], -v[:, 0]
    out[:, 2, 0], out[:, 2, 1] = -v[:, 1], v[:, 0]
    return out


class Fitter:
    """Fits the head model to Face Mesh landmarks. Build once, call :meth:`fit` per face."""

    def __init__(self, model: HeadModel, settings: FitSettings = FitSettings(),
                 correspondence: Correspondence | None = None):
        """``correspondence``: where the landmarks lie on the head (default: the shipped one)."""
        self.model, self.settings = model, settings
        corr = correspondence or load_correspondence()
        self.n_id = n_id = min(settings.identity_modes, model.n_identity)
        self.n_shape = n_id + model.n_expression
        verts = corr.vertices[:N_FACE_POINTS]
        bary = corr.bary[:N_FACE_POINTS].astype(np.float64)
        # only the vertices that landmarks use: (S, n, 3) bases of the leading identity modes and all expressions
        used = np.unique(np.concatenate([verts.ravel(), corr.contour_candidates[corr.contour_candidates >= 0]]))
        lookup = np.zeros(len(model.neutral), np.int64)
        lookup[used] = np.arange(len(used))
        basis = np.concatenate([model.identity_basis[:n_id, used], model.expression_basis[:, used]], 0)
        basis = basis.astype(np.float64)
        neutral = model.neutral[used].astype(np.float64)
        # (L, 3) mean and (L, 3, S) basis of each landmark's surface point
        self.mean = np.einsum("lk,lkc->lc", bary, neutral[lookup[verts]])
        # (3, L, S): one matrix product rotates all of it into the camera frame
        self.basis = np.ascontiguousarray(np.einsum("lk,slkc->cls", bary, basis[:, lookup[verts]]))
        self.contour_landmarks = corr.contour_landmarks
        cand = corr.contour_candidates
        self.contour_valid = cand >= 0
        cand = lookup[np.where(self.contour_valid, cand, used[0])]
        self.cand_mean = neutral[cand]                                                 # (C, K, 3)
        self.cand_basis = np.ascontiguousarray(np.moveaxis(basis[:, cand], 0, -1))     # (C, K, 3, S)
        self.contour_index = np.ix_(np.arange(3), self.contour_landmarks)
        self.cand_basis_2d = self.cand_basis.reshape(-1, self.n_shape)
        self.contour_side = np.sign(self.mean[self.contour_landmarks, 0])
        self.is_contour = np.zeros(N_FACE_POINTS, bool)
        self.is_contour[self.contour_landmarks] = True
        self.weights = np.where(self.is_contour, settings.contour_weight, 1.0)
        self.prior = np.concatenate([np.full(n_id, settings.identity_prior),
                                     np.full(model.n_expression, settings.expression_prior)])

    # -- pieces of the model at the current shape ------------------------------------------
    def _landmark_points(self, coeffs: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                         camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """Landmark model points (L, 3) with the contour points slid, and which candidate each took."""
        points = self.mean + (self.basis @ coeffs).T
        cand = self.cand_mean + (self.cand_basis_2d @ coeffs).reshape(self.cand_mean.shape)
        cam = cand @ rotation.T + translation
        pix = cam[..., :2] / cam[..., 2:] * camera.focal
        # outward in the image: the model's x axis (ear to ear) as seen by the camera, per side
        outward = rotation[:2, 0] / (np.linalg.norm(rotation[:2, 0]) + 1e-9)
        score = np.where(self.contour_valid, self.contour_side[:, None] * (pix @ outward), -np.inf)
        best = np.argmax(score, axis=1)
        points[self.contour_landmarks] = cand[np.arange(len(best)), best]
        return points, best

    def _landmark_basis(self, best: np.ndarray) -> np.ndarray:
        basis = self.basis.copy()
        basis[self.contour_index] = self.cand_basis[np.arange(len(best)), best].transpose(1, 0, 2)
        return basis

    def _residuals(self, points, rotation, translation, observed, camera, scale):
        cam = points @ rotation.T + translation
        proj = cam[:, :2] / cam[:, 2:] * camera.focal + np.array([camera.cx, camera.cy])
        return (proj - observed) / scale, cam

    def _cost(self, res, w, coeffs, prior, expression_l1):
        penalty = np.sum(prior * coeffs ** 2) + expression_l1 * np.sum(coeffs[self.n_id:])
        return np.sum(w[:, None] * res ** 2) + penalty

    def _robust_weights(self, res: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(res, axis=1)
        k = self.settings.huber
        return np.where(norm <= k, 1.0, k / np.maximum(norm, 1e-12))

    def _jacobian(self, cam, translation, rotation, basis, focal) -> np.ndarray:
        """(2L, 6 + S) derivative of the projected landmarks: rotation increment (left), translation, shape."""
        n = len(cam)
        x, y, z = cam.T
        rel = cam - translation
        jac = np.empty((n, 2, 6 + self.n_shape))
        inv_z, u, v = focal / z, x / z, y / z
        # d(cam)/d(rotation increment) = -[rel]_x; d(cam)/d(translation) = I
        d_rot = np.stack([np.stack([0 * z, rel[:, 2], -rel[:, 1]], 1),
                          np.stack([-rel[:, 2], 0 * z, rel[:, 0]], 1),
                          np.stack([rel[:, 1], -rel[:, 0], 0 * z], 1)], 1)    # (n, 3 cam axes, 3)
        jac[:, 0, :3] = inv_z[:, None] * (d_rot[:, 0] - u[:, None] * d_rot[:, 2])
        jac[:, 1, :3] = inv_z[:, None] * (d_rot[:, 1] - v[:, None] * d_rot[:, 2])
        jac[:, 0, 3:6] = np.stack([inv_z, 0 * z, -inv_z * u], 1)
        jac[:, 1, 3:6] = np.stack([0 * z, inv_z, -inv_z * v], 1)
        # the shape basis rotated into the camera frame, one row of the rotation at a time
        rb = (rotation @ basis.reshape(3, -1)).reshape(basis.shape)
        jac[:, 0, 6:] = inv_z[:, None] * (rb[0] - u[:, None] * rb[2])
        jac[:, 1, 6:] = inv_z[:, None] * (rb[1] - v[:, None] * rb[2])
        return jac.reshape(2 * n, -1)

    def _initial_pose(self, observed: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        ok, rvec, tvec = cv2.solvePnP(self.mean, observed, camera.matrix, None, flags=cv2.SOLVEPNP_SQPNP)
        rotation = cv2.Rodrigues(rvec)[0]
        if not ok or tvec[2, 0] <= 0:
            raise FitError("could not find an initial head pose for these landmarks")
        return rotation, tvec[:, 0]

    def fit(self, landmarks_px: np.ndarray, camera: Camera, identity: np.ndarray | None = None) -> FitResult:
        """Fit to (468, 2+) landmark pixels (Face Mesh order) seen by ``camera``.

        ``identity`` (n_identity,): hold the identity at these coefficients and solve only pose and
        expression (a video's one identity shared by all its frames)."""
        observed = np.ascontiguousarray(np.asarray(landmarks_px, np.float64)[:N_FACE_POINTS, :2])
        span = observed.max(0) - observed.min(0)
        scale = float(np.sqrt(span[0] * span[1]))
        if not (np.isfinite(scale) and scale > 1e-3):
            raise FitError(f"the landmarks are degenerate (they span {span[0]:.3g} x {span[1]:.3g} px)")
        n_id = self.n_id
        coeffs = np.zeros(self.n_shape)
        free = np.ones(6 + self.n_shape, bool)    # which of (rotation, translation, shape) are solved
        if identity is not None:
            coeffs[:n_id] = np.asarray(identity, np.float64)[:n_id]
            free[6:6 + n_id] = False
        rotation, translation = self._initial_pose(observed, camera)
        scale_prior = prior_scale(angles_from_rotation(rotation)[0])
        prior, expression_l1 = self.prior * scale_prior, self.settings.expression_l1 * scale_prior
        mu = 1e-3
        points, best = self._landmark_points(coeffs, rotation, translation, camera)
        res, cam = self._residuals(points, rotation, translation, observed, camera, scale)
        iterations = 0
        for iterations in range(1, self.settings.iterations + 1):
            w = self._robust_weights(res) * self.weights
            cost = self._cost(res, w, coeffs, prior, expression_l1)
            jac = self._jacobian(cam, translation, rotation, self._landmark_basis(best), camera.focal)
            jac /= scale
            wj = jac * np.repeat(w, 2)[:, None]
            hess = wj.T @ jac
            grad = wj.T @ res.ravel()
            hess[6:, 6:] += np.diag(prior)
            grad[6:] += prior * coeffs
            grad[6 + n_id:] += 0.5 * expression_l1
            damping = np.diag(hess) + 1e-9
            improved = False
            for _ in range(6):
                hess_mu = hess.copy()
                hess_mu[np.diag_indices_from(hess)] += mu * damping
                step = np.zeros_like(grad)
                step[free] = np.linalg.solve(hess_mu[np.ix_(free, free)], -grad[free])
                new_rot = cv2.Rodrigues(step[:3])[0] @ rotation
                new_t = translation + step[3:6]
                new_coeffs = coeffs + step[6:]
                new_coeffs[n_id:] = np.clip(new_coeffs[n_id:], 0.0, 1.0)
                new_points, new_best = self._landmark_points(new_coeffs, new_rot, new_t, camera)
                new_res, new_cam = self._residuals(new_points, new_rot, new_t, observed, camera, scale)
                new_cost = self._cost(new_res, w, new_coeffs, prior, expression_l1)
                if new_cost < cost and new_t[2] > 0:
                    rotation, translation, coeffs = new_rot, new_t, new_coeffs
                    best, res, cam = new_best, new_res, new_cam
                    improved = cost - new_cost > self.settings.tolerance * cost
                    mu = max(mu / 3, 1e-6)
                    break
                mu *= 4
            if not improved:
                break
        err = np.linalg.norm(res, axis=1)
        inner = ~self.is_contour
        if identity is None:
            identity = np.zeros(self.model.n_identity, np.float32)
            identity[:n_id] = coeffs[:n_id]
        return FitResult(
            identity=np.array(identity, np.float32), expression=coeffs[n_id:].astype(np.float32),
            rotation=rotation, translation=translation, camera=camera,
            residual_px=float(err[inner].mean() * scale), residual=float(err[inner].mean()),
            iterations=iterations)
