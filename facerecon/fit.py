"""Reconstruct by fitting: the ICT head model fitted to dense 2D landmarks.

Unknowns: rotation and translation of the head in the camera frame (cm), 100 identity
coefficients (standard-normal prior) and 53 ARKit expression weights in [0, 1] (L1 sparsity prior).
The cost is the robust (Huber) reprojection error of the 468 Face Mesh points, normalised by the
face size so that the priors mean the same for any image size. It is minimised by
Levenberg-Marquardt on the analytic Jacobian, after a PnP start. Jaw and cheek contour points
slide along a strip of candidate vertices to wherever the head's silhouette is at the current
pose, which keeps large-yaw fits from pulling the far cheek out to the image contour.

The landmark -> surface correspondence is ``facerecon/data/mediapipe_ict.npz`` made by
``scripts/derive_correspondence.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .assets import PACKAGE_DATA
from .camera import Camera, angles_from_rotation
from .model import HeadModel

N_FACE_POINTS = 468  # the 10 iris points follow; eyeball rotation is not modelled, so they are unused


@dataclass(frozen=True)
class FitSettings:
    iterations: int = 12
    identity_prior: float = 2e-3      # weight of |identity|^2 against the normalised squared error
    expression_prior: float = 2e-4    # weight of |expression|^2
    expression_l1: float = 4e-4       # weight of sum(expression): most ARKit shapes stay at 0
    huber: float = 0.02               # residual (fraction of face size) beyond which weight falls off
    contour_weight: float = 0.5       # silhouette points are less precise than inner ones


@dataclass
class FitResult:
    """A fitted head. ``rotation``/``translation`` map model-frame cm to camera-frame cm."""

    identity: np.ndarray        # (100,) float32
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
    vertices: np.ndarray            # (478, 3) int32
    bary: np.ndarray                # (478, 3) float32
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

    def __init__(self, model: HeadModel, settings: FitSettings = FitSettings()):
        self.model, self.settings = model, settings
        corr = load_correspondence()
        n_id, n_ex = model.n_identity, model.n_expression
        self.n_shape = n_id + n_ex
        basis = np.concatenate([model.identity_basis, model.expression_basis], 0).astype(np.float64)
        bary = corr.bary[:N_FACE_POINTS, :, None]
        verts = corr.vertices[:N_FACE_POINTS]
        # (L, 3) mean and (L, 3, S) basis of each landmark's surface point
        self.mean = (bary * model.neutral[verts].astype(np.float64)).sum(1)
        self.basis = np.einsum("lk,slkc->lcs", bary[..., 0], basis[:, verts])
        self.contour_landmarks = corr.contour_landmarks
        cand = corr.contour_candidates
        self.contour_valid = cand >= 0
        self.cand_mean = model.neutral[np.where(self.contour_valid, cand, 0)].astype(np.float64)          # (C, K, 3)
        self.cand_basis = np.ascontiguousarray(                                       # (C, K, 3, S)
            np.moveaxis(basis[:, np.where(self.contour_valid, cand, 0)], 0, -1))
        self.cand_basis_2d = self.cand_basis.reshape(-1, self.n_shape)
        self.weights = np.ones(N_FACE_POINTS)
        self.weights[self.contour_landmarks] = settings.contour_weight
        self.prior = np.concatenate([np.full(n_id, settings.identity_prior),
                                     np.full(n_ex, settings.expression_prior)])

    # -- pieces of the model at the current shape ------------------------------------------
    def _landmark_model(self, coeffs: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                        camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """Landmark model points (L, 3) and their bases (L, 3, S) with contour points slid."""
        points = self.mean + (self.basis.reshape(-1, self.n_shape) @ coeffs).reshape(-1, 3)
        basis = self.basis.copy()
        cand = self.cand_mean + (self.cand_basis_2d @ coeffs).reshape(self.cand_mean.shape)
        cam = cand @ rotation.T + translation
        pix = cam[..., :2] / cam[..., 2:] * camera.focal
        # outward in the image: the model's x axis (ear to ear) as seen by the camera, per side
        side = np.sign(self.mean[self.contour_landmarks, 0])
        outward = rotation[:2, 0] / (np.linalg.norm(rotation[:2, 0]) + 1e-9)
        score = np.where(self.contour_valid, side[:, None] * (pix @ outward), -np.inf)
        best = np.argmax(score, axis=1)
        rows = np.arange(len(best))
        points[self.contour_landmarks] = cand[rows, best]
        basis[self.contour_landmarks] = self.cand_basis[rows, best]
        return points, basis

    def _residuals(self, points, rotation, translation, observed, camera, scale):
        cam = points @ rotation.T + translation
        proj = cam[:, :2] / cam[:, 2:] * camera.focal + np.array([camera.cx, camera.cy])
        return (proj - observed) / scale, cam

    def _cost(self, res, robust_w, coeffs, n_id):
        data = np.sum(robust_w[:, None] * self.weights[:, None] * res ** 2)
        prior = np.sum(self.prior * coeffs ** 2) + self.settings.expression_l1 * np.sum(coeffs[n_id:])
        return data + prior

    def _robust_weights(self, res: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(res, axis=1)
        k = self.settings.huber
        return np.where(norm <= k, 1.0, k / np.maximum(norm, 1e-12))

    def _jacobian(self, cam, translation, rotation, basis, focal) -> np.ndarray:
        """(2L, 6 + S) derivative of the projected landmarks: rotation increment (left), translation, shape."""
        n, n_shape = len(cam), basis.shape[2]
        d_cam = np.empty((n, 3, 6 + n_shape))
        rel = cam - translation
        d_cam[:, :, :3] = -_skew(rel)
        d_cam[:, :, 3:6] = np.eye(3)
        # rotate all basis vectors with one matrix product
        d_cam[:, :, 6:] = (rotation @ basis.transpose(1, 0, 2).reshape(3, -1)).reshape(3, n, n_shape).transpose(1, 0, 2)
        inv_z = (focal / cam[:, 2])[:, None]
        jac = np.empty((n, 2, 6 + n_shape))
        jac[:, 0] = inv_z * (d_cam[:, 0] - (cam[:, 0] / cam[:, 2])[:, None] * d_cam[:, 2])
        jac[:, 1] = inv_z * (d_cam[:, 1] - (cam[:, 1] / cam[:, 2])[:, None] * d_cam[:, 2])
        return jac.reshape(2 * n, -1)

    def _initial_pose(self, observed: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        ok, rvec, tvec = cv2.solvePnP(self.mean.astype(np.float64), observed.astype(np.float64),
                                      camera.matrix, None, flags=cv2.SOLVEPNP_SQPNP)
        rotation = cv2.Rodrigues(rvec)[0]
        if not ok or tvec[2, 0] <= 0:
            raise ValueError("could not find an initial head pose for these landmarks")
        return rotation, tvec[:, 0]

    def fit(self, landmarks_px: np.ndarray, camera: Camera) -> FitResult:
        """Fit to (478, 2+) landmark pixels (Face Mesh order) seen by ``camera``."""
        observed = np.asarray(landmarks_px, np.float64)[:N_FACE_POINTS, :2]
        span = observed.max(0) - observed.min(0)
        scale = float(np.sqrt(span[0] * span[1]))
        n_id = self.model.n_identity
        coeffs = np.zeros(self.n_shape)
        rotation, translation = self._initial_pose(observed, camera)
        mu = 1e-3
        robust_w = np.ones(N_FACE_POINTS)
        points, basis = self._landmark_model(coeffs, rotation, translation, camera)
        res, cam = self._residuals(points, rotation, translation, observed, camera, scale)
        cost = self._cost(res, robust_w, coeffs, n_id)
        iterations = 0
        for iterations in range(1, self.settings.iterations + 1):
            robust_w = self._robust_weights(res)
            cost = self._cost(res, robust_w, coeffs, n_id)
            w = robust_w * self.weights
            jac = self._jacobian(cam, translation, rotation, basis, camera.focal) / scale
            wr = np.repeat(w, 2)
            hess = jac.T @ (jac * wr[:, None])
            grad = jac.T @ (wr * res.ravel())
            hess[6:, 6:] += np.diag(self.prior)
            grad[6:] += self.prior * coeffs
            grad[6 + n_id:] += 0.5 * self.settings.expression_l1
            improved = False
            for _ in range(6):
                step = np.linalg.solve(hess + mu * np.diag(np.diag(hess) + 1e-9), -grad)
                new_rot = cv2.Rodrigues(step[:3])[0] @ rotation
                new_t = translation + step[3:6]
                new_coeffs = coeffs + step[6:]
                new_coeffs[n_id:] = np.clip(new_coeffs[n_id:], 0.0, 1.0)
                new_points, new_basis = self._landmark_model(new_coeffs, new_rot, new_t, camera)
                new_res, new_cam = self._residuals(new_points, new_rot, new_t, observed, camera, scale)
                new_cost = self._cost(new_res, robust_w, new_coeffs, n_id)
                if new_cost < cost and new_t[2] > 0:
                    rotation, translation, coeffs = new_rot, new_t, new_coeffs
                    points, basis, res, cam = new_points, new_basis, new_res, new_cam
                    improved = cost - new_cost > 1e-7 * cost
                    cost, mu = new_cost, max(mu / 3, 1e-6)
                    break
                mu *= 4
            if not improved:
                break
        err = np.linalg.norm(res, axis=1)
        inner = np.ones(N_FACE_POINTS, bool)
        inner[self.contour_landmarks] = False
        return FitResult(
            identity=coeffs[:n_id].astype(np.float32), expression=coeffs[n_id:].astype(np.float32),
            rotation=rotation, translation=translation, camera=camera,
            residual_px=float(err[inner].mean() * scale), residual=float(err[inner].mean()),
            iterations=iterations)
