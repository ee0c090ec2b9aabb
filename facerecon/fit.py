"""Reconstruct by fitting: the ICT head model fitted to dense 2D landmarks.

Unknowns: rotation and translation of the head in the camera frame (cm), the leading 40 of the 100
identity coefficients (standard-normal prior; the later PCA modes move the landmarks by well under a
pixel, and leaving them out halves the fit time) and 53 ARKit expression weights in [0, 1] (L1 sparsity prior).
The cost is the robust (Huber) reprojection error of the 468 Face Mesh points, normalised by the
face size so that the priors mean the same for any image size. It is minimised by
Levenberg-Marquardt on the analytic Jacobian, after a PnP start. Jaw and cheek contour points
slide along a strip of candidate vertices to wherever the head's silhouette is at the current
pose, which keeps large-yaw fits from pulling the far cheek out to the image contour.

One solver serves one photo and several photos of one person (:meth:`Fitter.fit_views`: one
identity, a pose and expression per view); a single photo is a one-view call of it.

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
# face's yaw: a MAP fit whose data term is |r|^2 / sigma^2, so every view's data term is weighted by
# (sigma(0) / sigma(yaw))^2, one view or several. When introduced: dense face RMSE 4.66 -> 4.28 mm
# on 8 synthetic heads at yaw 0..80 (80 degrees: 5.76 -> 4.91 mm), 68-point NME unchanged.
LANDMARK_NOISE_YAW = (0.0, 30.0, 60.0)
LANDMARK_NOISE = (0.0146, 0.0201, 0.0375)


def landmark_weight(yaw_deg: float) -> float:
    """(sigma(0) / sigma(yaw))^2: the relative weight of the landmarks of a face turned by ``yaw_deg``."""
    return float((LANDMARK_NOISE[0] / np.interp(abs(yaw_deg), LANDMARK_NOISE_YAW, LANDMARK_NOISE)) ** 2)


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


@dataclass
class JointFit:
    """Views fitted together by :meth:`Fitter.fit_views`."""

    identity: np.ndarray        # (n_identity,) float32, shared by every view
    fits: list[FitResult]       # per view: that identity with the view's pose and expression
    weights: np.ndarray         # (n,) the view weights used
    iterations: int
    cost: float
    surface: FitResult | None = None   # the surface term's pose (model -> its frame) and expression


@dataclass(frozen=True)
class SurfaceTarget:
    """A measured surface (a scan) for :meth:`Fitter.fit_views`' dense term: points matched to the
    head (closest points, found by the caller), pulled onto the head's tangent plane there
    (point-to-plane). The surface has its own frame: the fit solves the head's pose in it and its
    expression, beside the views' poses and expressions, with the one shared identity."""

    points: np.ndarray    # (P, 3) target points, cm (times exp(log_scale)), in the surface's frame
    corners: np.ndarray   # (P, 3) int: the head's triangle (vertex indices) each point matched
    bary: np.ndarray      # (P, 3) barycentric weights of the matched head point in it
    normals: np.ndarray   # (P, 3) unit head normals there, in the surface's frame
    weights: np.ndarray   # (P,) per-point weight against one landmark coordinate
    scale: float          # cm that normalise the distances (the face size, as the landmarks' is)
    huber_cm: float       # distance beyond which a point's weight falls off (Huber)
    start: FitResult      # the head's pose in the surface's frame and expression to start from
    log_scale: float = 0.0   # the surface's points are exp(log_scale) * points: its start ...
    solve_scale: bool = True  # ... and solved (a scan of arbitrary scale), else held


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
        # The Jacobian and its Gram matrix are built in float32 (a third of the float64 time on this
        # CPU; the normal equations are then solved in float64): on the 39 dense fits of eval/photos
        # the vertices moved by a median 0.2 micrometres, at most 0.11 mm, in the same iterations.
        self.basis32 = self.basis.astype(np.float32)
        self.contour_landmarks = corr.contour_landmarks
        cand = corr.contour_candidates
        self.contour_valid = cand >= 0
        cand = lookup[np.where(self.contour_valid, cand, used[0])]
        self.cand_mean = neutral[cand]                                                 # (C, K, 3)
        self.cand_basis = np.ascontiguousarray(np.moveaxis(basis[:, cand], 0, -1))     # (C, K, 3, S)
        self.cand_basis32 = self.cand_basis.astype(np.float32)
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
        """(3, L, S) float32 basis of the landmark points with the contour points slid."""
        if not len(best):
            return self.basis32
        basis = self.basis32.copy()
        basis[self.contour_index] = self.cand_basis32[np.arange(len(best)), best].transpose(1, 0, 2)
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
        """(2L, 6 + S) float32 derivative of the projected landmarks: rotation increment (left),
        translation, shape (``basis`` (3, L, S) float32), with ``focal`` the focal length over the face size
        that normalises the residuals."""
        n = len(cam)
        x, y, z = cam.astype(np.float32).T
        rel = (cam - translation).astype(np.float32)
        jac = np.empty((n, 2, 6 + self.n_shape), np.float32)
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
        rb = (rotation.astype(np.float32) @ basis.reshape(3, -1)).reshape(basis.shape)
        jac[:, 0, 6:] = inv_z[:, None] * (rb[0] - u[:, None] * rb[2])
        jac[:, 1, 6:] = inv_z[:, None] * (rb[1] - v[:, None] * rb[2])
        return jac.reshape(2 * n, -1)

    def _initial_pose(self, observed: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        ok, rvec, tvec = cv2.solvePnP(self.mean, observed, camera.matrix, None, flags=cv2.SOLVEPNP_SQPNP)
        rotation = cv2.Rodrigues(rvec)[0]
        if not ok or tvec[2, 0] <= 0:
            raise FitError("could not find an initial head pose for these landmarks")
        return rotation, tvec[:, 0]

    def fit(self, landmarks_px: np.ndarray, camera: Camera, identity: np.ndarray | None = None,
            expression_prior: float | None = None, point_weights: np.ndarray | None = None) -> FitResult:
        """Fit to (468, 2+) landmark pixels (Face Mesh order) seen by ``camera``: a one-view
        :meth:`fit_views` from a PnP pose, the view weighted by its landmark noise at that yaw.

        ``identity`` (n_identity,): hold the identity at these coefficients and solve only pose and
        expression (a video's one identity shared by all its frames). ``expression_prior``: instead
        of the settings' one. ``point_weights`` (468,): each landmark's weight (mean 1 keeps the
        balance against the priors), e.g. from its predicted uncertainty."""
        observed, _ = _observed(landmarks_px)
        rotation, translation = self._initial_pose(observed, camera)
        start_identity = np.zeros(self.model.n_identity, np.float32) if identity is None else identity
        start = FitResult(np.asarray(start_identity, np.float32), np.zeros(self.model.n_expression, np.float32),
                          rotation, translation, camera, residual_px=float("nan"), residual=float("nan"))
        weight = landmark_weight(angles_from_rotation(rotation)[0])
        return self.fit_views([observed], [camera], [start], np.array([weight]), identity=identity,
                              expression_prior=expression_prior,
                              point_weights=None if point_weights is None else [point_weights]).fits[0]

    def fit_views(self, landmarks: list[np.ndarray], cameras: list[Camera], start: list[FitResult],
                  weights: np.ndarray | None = None, identity: np.ndarray | None = None,
                  iterations: int | None = None, expression_prior: float | None = None,
                  surface: SurfaceTarget | None = None,
                  point_weights: list[np.ndarray | None] | None = None) -> JointFit:
        """Fit one identity and per-view pose and expression to several views' (468, 2+) landmarks.

        ``start``: per view, the pose and expression to start from; the start identity is their
        ``weights``-weighted mean. ``identity`` (n_identity,): hold the identity there and solve only
        the views' pose and expression. The cost is the sum over views of the view weight times the
        view's data term (robust, contour-weighted, normalised by the view's face size), plus the
        identity prior once and each view's expression prior. Levenberg-Marquardt on block-structured
        normal equations: the shared identity block plus one pose/expression block per view, solved
        by the Schur complement on the identity.

        ``surface``: a dense term too, a block like a view's (the head's pose in the surface's frame
        and an expression, and the surface's log scale): its robust point-to-plane distances,
        normalised by ``surface.scale``. Its points' weights count against one landmark coordinate
        of a view of weight 1. The result's ``surface`` fit carries ``extra["log_scale"]``.

        ``point_weights``: per view, (468,) weights of its landmarks (None: all alike), multiplying
        the contour weights.
        """
        s = self.settings
        n_id, n_views = self.n_id, len(landmarks)
        iterations = s.iterations if iterations is None else iterations
        weights = np.ones(n_views) if weights is None else np.asarray(weights, np.float64)
        observed, scales = zip(*(_observed(m) for m in landmarks)) if n_views else ((), ())
        fixed = identity is not None
        if fixed:
            given = np.array(identity, np.float32)
            coeffs_id = np.asarray(identity, np.float64)[:n_id]
        elif n_views:
            coeffs_id = np.average([f.identity[:n_id] for f in start], axis=0, weights=weights).astype(np.float64)
        else:
            coeffs_id = np.asarray(surface.start.identity, np.float64)[:n_id]
        # blocks: the views, then the surface (when given), each with a pose and an expression
        blocks = list(start) + ([surface.start] if surface is not None else [])
        n_blocks = len(blocks)
        rotations = [np.array(f.rotation, np.float64) for f in blocks]
        translations = [np.array(f.translation, np.float64) for f in blocks]
        expressions = [np.array(f.expression, np.float64) for f in blocks]
        log_scale = surface.log_scale if surface is not None else 0.0
        dense = self._surface_model(surface) if surface is not None else None
        id_prior = self.prior[:n_id]
        ex_prior = self.prior[n_id:] if expression_prior is None else np.full(self.model.n_expression, expression_prior)
        # columns of _jacobian: rotation (3), translation (3), identity (n_id), expression
        local = np.r_[0:6, 6 + n_id:6 + self.n_shape]
        ident = np.arange(6, 6 + n_id)
        # the surface block's columns: a view's, then the log scale where it is solved
        local_surface = np.r_[local, 6 + self.n_shape] if surface is not None and surface.solve_scale else local

        def evaluate(identity, rotations, translations, expressions, log_scale):
            """Per block: slid contour choice (views), residuals ((L, 2) or (P,)) and frame points."""
            out = []
            for v in range(n_views):
                coeffs = np.r_[identity, expressions[v]]
                points, best = self._landmark_points(coeffs, rotations[v], translations[v], cameras[v])
                res, cam = self._residuals(points, rotations[v], translations[v], observed[v], cameras[v], scales[v])
                out.append((best, res, cam))
            if dense is not None:
                coeffs = np.r_[identity, expressions[-1]]
                points = (dense[0] + (dense[1] @ coeffs).T) @ rotations[-1].T + translations[-1]
                # in the surface's own units (the head's frame over exp(log_scale)): measured in the
                # head's frame, shrinking the head and the surface together shrank every distance,
                # and the fitted heads came out 5-6 % small (docs/scan.md)
                res = np.sum(surface.normals * (np.exp(-log_scale) * points - surface.points), axis=1) / surface.scale
                out.append((None, res, points))
            return out

        point_scale = [self.weights if point_weights is None or point_weights[v] is None
                       else self.weights * np.asarray(point_weights[v], np.float64) for v in range(n_views)]

        def robust_weights(state):
            out = [self._robust_weights(res) * point_scale[v] for v, (_, res, _) in enumerate(state[:n_views])]
            if dense is not None:
                k = surface.huber_cm / surface.scale
                res = np.abs(state[-1][1])
                out.append(surface.weights * np.where(res <= k, 1.0, k / np.maximum(res, 1e-12)))
            return out

        def total_cost(state, robust, identity, expressions):
            cost = np.sum(id_prior * identity ** 2)
            for v, (_, res, _) in enumerate(state):
                data = np.sum(robust[v][:, None] * res ** 2) if v < n_views else np.sum(robust[v] * res ** 2)
                cost += (weights[v] if v < n_views else 1.0) * data
                cost += np.sum(ex_prior * expressions[v] ** 2) + s.expression_l1 * np.sum(expressions[v])
            return cost

        state = evaluate(coeffs_id, rotations, translations, expressions, log_scale)
        mu, iteration = 1e-3, 0
        for iteration in range(1, iterations + 1):
            robust = robust_weights(state)
            cost = total_cost(state, robust, coeffs_id, expressions)
            # Normal equations, block by block: H_ii (identity), H_il[v] (identity x block v), H_ll[v].
            h_ii = np.diag(id_prior).astype(np.float64)
            g_i = id_prior * coeffs_id
            h_il, h_ll, g_l = [], [], []
            for v, (best, res, cam) in enumerate(state):
                if v < n_views:
                    jac = self._jacobian(cam, translations[v], rotations[v], self._landmark_basis(best),
                                         np.float32(cameras[v].focal / scales[v]))
                    wj = jac * (weights[v] * np.repeat(robust[v], 2)).astype(np.float32)[:, None]
                else:
                    jac = self._surface_jacobian(cam, translations[v], rotations[v], dense[1], surface, log_scale)
                    wj = jac * robust[v][:, None]
                cols = local if v < n_views else local_surface
                hess = (wj.T @ jac).astype(np.float64)
                grad = (wj.T @ res.ravel().astype(np.float32)).astype(np.float64)
                h_ii += hess[np.ix_(ident, ident)]
                g_i += grad[ident]
                h_il.append(hess[np.ix_(ident, cols)])
                block = hess[np.ix_(cols, cols)]
                ex = slice(6, 6 + self.model.n_expression)
                block[ex, ex] += np.diag(ex_prior)
                h_ll.append(block)
                prior_grad = np.zeros(len(cols))
                prior_grad[ex] = ex_prior * expressions[v] + 0.5 * s.expression_l1
                g_l.append(grad[cols] + prior_grad)
            improved = False
            for _ in range(6):
                # Damped (Marquardt: scaled diagonal) blocks; eliminate the view blocks, solve identity.
                h_ii_mu = h_ii + mu * np.diag(np.diag(h_ii) + 1e-9)
                schur, rhs = h_ii_mu.copy(), -g_i.copy()
                solved = []
                for v in range(n_blocks):
                    h_ll_mu = h_ll[v] + mu * np.diag(np.diag(h_ll[v]) + 1e-9)
                    # [H_ll^-1 H_li, H_ll^-1 g_l] in one factorisation
                    sol = np.linalg.solve(h_ll_mu, np.column_stack([h_il[v].T, g_l[v]]))
                    schur -= h_il[v] @ sol[:, :-1]
                    rhs += h_il[v] @ sol[:, -1]
                    solved.append(sol)
                d_id = np.zeros(n_id) if fixed else np.linalg.solve(schur, rhs)
                new_id = coeffs_id + d_id
                new_rot, new_t, new_ex, new_scale = [], [], [], log_scale
                for v, sol in enumerate(solved):
                    d_local = -sol[:, -1] - sol[:, :-1] @ d_id
                    new_rot.append(cv2.Rodrigues(d_local[:3])[0] @ rotations[v])
                    new_t.append(translations[v] + d_local[3:6])
                    new_ex.append(np.clip(expressions[v] + d_local[6:6 + self.model.n_expression], 0.0, 1.0))
                    if v == n_views and len(d_local) > 6 + self.model.n_expression:
                        new_scale = log_scale + d_local[-1]
                new_state = evaluate(new_id, new_rot, new_t, new_ex, new_scale)
                new_cost = total_cost(new_state, robust, new_id, new_ex)
                if new_cost < cost and all(t[2] > 0 for t in new_t[:n_views]):
                    coeffs_id, rotations, translations, expressions, log_scale = new_id, new_rot, new_t, new_ex, new_scale
                    state = new_state
                    improved = cost - new_cost > s.tolerance * cost
                    mu = max(mu / 3, 1e-6)
                    break
                mu *= 4
            if not improved:
                break
        if fixed:
            full_identity = given
        else:
            full_identity = np.zeros(self.model.n_identity, np.float32)
            full_identity[:n_id] = coeffs_id
        inner = ~self.is_contour
        fits = []
        for v, (_, res, _) in enumerate(state[:n_views]):
            err = np.linalg.norm(res, axis=1)[inner].mean()
            fits.append(FitResult(full_identity, expressions[v].astype(np.float32), rotations[v], translations[v],
                                  cameras[v], residual_px=float(err * scales[v]), residual=float(err),
                                  iterations=iteration))
        surface_fit = None
        if dense is not None:
            err = float(np.average(np.abs(state[-1][1]), weights=surface.weights))
            residuals_cm = state[-1][1] * (surface.scale * np.exp(log_scale))   # in the head's frame
            surface_fit = FitResult(full_identity, expressions[-1].astype(np.float32), rotations[-1], translations[-1],
                                    surface.start.camera, residual_px=float("nan"), residual=err,
                                    iterations=iteration, extra={"residuals_cm": residuals_cm,
                                                                 "log_scale": float(log_scale)})
        return JointFit(full_identity, fits, weights, iteration,
                        float(total_cost(state, robust_weights(state), coeffs_id, expressions)), surface_fit)

    def _surface_model(self, surface: SurfaceTarget) -> tuple[np.ndarray, np.ndarray]:
        """The matched head points' (P, 3) mean and (3, P, S) basis (leading identity modes, expressions)."""
        bary = surface.bary.astype(np.float64)
        mean = np.einsum("pk,pkc->pc", bary, self.model.neutral[surface.corners].astype(np.float64))
        basis = np.concatenate([
            np.einsum("pk,spkc->cps", bary, self.model.identity_basis[:self.n_id, surface.corners].astype(np.float64)),
            np.einsum("pk,spkc->cps", bary, self.model.expression_basis[:, surface.corners].astype(np.float64))], 2)
        return mean, np.ascontiguousarray(basis)

    def _surface_jacobian(self, points, translation, rotation, basis, surface: SurfaceTarget,
                          log_scale: float) -> np.ndarray:
        """(P, 6 + S + 1) derivative of the point-to-plane distances (in the surface's units, as
        ``fit_views`` measures them): rotation increment (left), translation, shape, the surface's
        log scale."""
        n = surface.normals
        rel = points - translation
        rb = (rotation @ basis.reshape(3, -1)).reshape(basis.shape)        # (3, P, S)
        d_scale = -np.sum(n * points, axis=1)
        jac = np.concatenate([np.cross(rel, n), n, np.einsum("pc,cps->ps", n, rb), d_scale[:, None]], 1)
        return jac * (np.exp(-log_scale) / surface.scale)


def _observed(landmarks_px: np.ndarray) -> tuple[np.ndarray, float]:
    """The (468, 2) float64 landmark pixels and the face size (px) that normalises their residuals."""
    observed = np.ascontiguousarray(np.asarray(landmarks_px, np.float64)[:N_FACE_POINTS, :2])
    span = observed.max(0) - observed.min(0)
    scale = float(np.sqrt(span[0] * span[1]))
    if not (np.isfinite(scale) and scale > 1e-3):
        raise FitError(f"the landmarks are degenerate (they span {span[0]:.3g} x {span[1]:.3g} px)")
    return observed, scale
