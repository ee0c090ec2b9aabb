"""Several photos of one person -> one head: a joint fit and a fused texture.

1. Every photo: detect, place the Face Mesh landmarks and fit it alone (``Fitter.fit``). Photos
   that are pixel-for-pixel duplicates, show no face or whose landmarks fit badly are left out; of
   several faces in one photo, the one whose identity is closest to the other photos' is taken.
2. Joint fit (:func:`joint_fit`): one identity shared by all views, a rotation, translation and
   expression per view, by Levenberg-Marquardt on block-structured normal equations (the shared
   identity block plus one pose/expression block per view, solved by the Schur complement on the
   identity). Every view's jaw and cheek contour slides to that view's silhouette, so a side view's
   contour constrains the depth (nose and chin profile) a frontal view cannot see. Views are weighted by landmark confidence: Face Mesh gives
   none, so it comes from its measured error at the view's yaw and from the view's own residual.
3. A view that disagrees with the others (another person, landmarks on the wrong features) fits
   worse with the others' identity than with its own (leave-one-out): the worst such view is left
   out and the rest tested again. Independently, a warning says when reliable views' single-view
   identities are far apart (probably not one person). Both only catch clear disagreement: 2D
   landmarks carry little identity.
4. One texture (``texture.fuse_textures``): every view sampled with its own pose and expression,
   exposure-matched and blended per texel by how head-on each view sees it.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .blendshapes import arkit_weights
from .camera import Camera
from .detect import Detection
from .errors import FaceReconError, NoFaceError
from .export import export_mesh, mesh_info, write_image, write_json
from .fit import LANDMARK_NOISE, LANDMARK_NOISE_YAW, N_FACE_POINTS, Fitter, FitResult, load_correspondence
from .geometry import surface_points
from .gltf import Rig
from .landmarks import Landmarks
from .load import as_rgb8, load_image
from .model import PARTS, HeadModel
from .pipeline import Reconstructor, load_landmarks68
from .texture import fuse_textures, view_samples

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
FACE_AREA = np.arange(PARTS["face"][0], PARTS["face"][1] + 1)
MAX_FACES_PER_VIEW = 5
JOINT_ITERATIONS = 12
# A view's weight: 1 up to this single-view residual (fraction of the face size; good photos and
# renders fit to 0.005-0.015), falling as 1/residual^2 beyond it (the residual's noise variance).
RESIDUAL_REF = 0.015
# Single-view residual beyond which the landmarks have failed (they no longer look like a face).
FAILED_RESIDUAL = 0.05
# Leave-one-out test (:func:`loo_excess`): a view whose landmarks fit worse with the other views'
# identity than with its own, by more than LOO_MAX_EXCESS of the face size (residual difference),
# disagrees and is left out. A difference, not a ratio: a clean frontal view fits its own identity
# very tightly (residual 0.003-0.005), so a ratio flagged it. Measured on synthetic renders of 6
# heads (views at yaw 0/30/60 of one head; or 0/30 plus a view at 20 of another head, identity
# -1x or -2x): same-person views up to 0.0025, never rejected; other-person views -0.0024 to
# 0.0062, so 2D landmarks catch only gross differences (-2x: 3 of 6 sets). It is applied only where
# the other views' weights sum to at least LOO_MIN_WEIGHT, about one good near-frontal view: one
# turned view alone does not pin down an identity to test against (mvfnet's front photo, tested
# against its left or right photo's identity alone, weight 0.6: 0.0038, and left out).
LOO_MAX_EXCESS = 0.003
LOO_MIN_WEIGHT = 0.9
# The test runs with the expression prior it was measured with (FitSettings' default until the
# default rose 50x), single-view fits included: a stiffer expression leaves more of a view's misfit
# to the identity, which made a frontal view of the right person the odd one out (ratio 1.98) in a
# set with one view of another person, and mvfnet's front + right views disagree (1.41).
LOO_EXPRESSION_PRIOR = 2e-4
# RMS distance (mm, face area, neutral expression) between the single-view identities of views of
# weight >= 0.5 beyond which the views are probably not one person; same-person pairs measured
# 1.1-2.3 mm, different people 1.1-3.4 mm, so this too flags only gross differences.
SAME_PERSON_MM = 3.0


# ------------------------------------------------------------------------------- joint fit
@dataclass
class JointFit:
    identity: np.ndarray        # (n_identity,) float32, shared by every view
    fits: list[FitResult]       # per view: that identity with the view's pose and expression
    weights: np.ndarray         # (n,) the view weights used
    iterations: int
    cost: float


def view_weight(solo: FitResult) -> float:
    """Weight of a view from how well its landmarks fit alone."""
    return float(min(1.0, (RESIDUAL_REF / max(solo.residual, 1e-9)) ** 2))


def joint_fit(fitter: Fitter, landmarks: list[np.ndarray], cameras: list[Camera],
              init: list[FitResult], weights: np.ndarray | None = None,
              iterations: int = JOINT_ITERATIONS, identity: np.ndarray | None = None) -> JointFit:
    """Fit one identity and per-view pose and expression to several views' (468, 2+) landmarks.

    ``init``: single-view fits of the same views (start poses and expressions; the start identity is
    their weighted mean). ``identity`` (n_identity,): hold the identity there and solve only the views'
    pose and expression. The model, priors and settings are ``fitter``'s. The cost is the sum over
    views of the view weight times the single-view data term (robust, contour-weighted, normalised
    by the view's face size), plus the identity prior once and each view's expression prior.
    """
    s = fitter.settings
    n_id, n_views = fitter.n_id, len(landmarks)
    weights = np.ones(n_views) if weights is None else np.asarray(weights, np.float64)
    observed = [np.ascontiguousarray(np.asarray(m, np.float64)[:N_FACE_POINTS, :2]) for m in landmarks]
    scales = []
    for obs in observed:
        span = obs.max(0) - obs.min(0)
        scales.append(float(np.sqrt(span[0] * span[1])))
    fixed = identity is not None
    if fixed:
        identity = np.asarray(identity, np.float64)[:n_id]
    else:
        identity = np.average([f.identity[:n_id] for f in init], axis=0, weights=weights).astype(np.float64)
    rotations = [np.array(f.rotation, np.float64) for f in init]
    translations = [np.array(f.translation, np.float64) for f in init]
    expressions = [np.array(f.expression, np.float64) for f in init]
    id_prior = fitter.prior[:n_id]
    ex_prior = fitter.prior[n_id:]
    # columns of Fitter._jacobian: rotation (3), translation (3), identity (n_id), expression
    local = np.r_[0:6, 6 + n_id:6 + fitter.n_shape]
    ident = np.arange(6, 6 + n_id)

    def evaluate(identity, rotations, translations, expressions):
        """Per view: slid contour choice, residuals (L, 2) and camera-frame points."""
        out = []
        for v in range(n_views):
            coeffs = np.r_[identity, expressions[v]]
            points, best = fitter._landmark_points(coeffs, rotations[v], translations[v], cameras[v])
            res, cam = fitter._residuals(points, rotations[v], translations[v], observed[v], cameras[v], scales[v])
            out.append((best, res, cam))
        return out

    def total_cost(state, robust, identity, expressions):
        cost = np.sum(id_prior * identity ** 2)
        for v, (_, res, _) in enumerate(state):
            cost += weights[v] * np.sum(robust[v][:, None] * res ** 2)
            cost += np.sum(ex_prior * expressions[v] ** 2) + s.expression_l1 * np.sum(expressions[v])
        return cost

    state = evaluate(identity, rotations, translations, expressions)
    mu, iteration = 1e-3, 0
    for iteration in range(1, iterations + 1):
        robust = [fitter._robust_weights(res) * fitter.weights for _, res, _ in state]
        cost = total_cost(state, robust, identity, expressions)
        # Normal equations, block by block: H_ii (identity), H_il[v] (identity x view v), H_ll[v].
        h_ii = np.diag(id_prior).astype(np.float64)
        g_i = id_prior * identity
        h_il, h_ll, g_l = [], [], []
        for v, (best, res, cam) in enumerate(state):
            jac = fitter._jacobian(cam, translations[v], rotations[v], fitter._landmark_basis(best),
                                       cameras[v].focal) / scales[v]
            wj = jac * (weights[v] * np.repeat(robust[v], 2))[:, None]
            hess, grad = wj.T @ jac, wj.T @ res.ravel()
            h_ii += hess[np.ix_(ident, ident)]
            g_i += grad[ident]
            h_il.append(hess[np.ix_(ident, local)])
            block = hess[np.ix_(local, local)]
            block[6:, 6:] += np.diag(ex_prior)
            h_ll.append(block)
            g_l.append(grad[local] + np.r_[np.zeros(6), ex_prior * expressions[v] + 0.5 * s.expression_l1])
        improved = False
        for _ in range(6):
            # Damped (Marquardt: scaled diagonal) blocks; eliminate the view blocks, solve identity.
            h_ii_mu = h_ii + mu * np.diag(np.diag(h_ii) + 1e-9)
            schur, rhs = h_ii_mu.copy(), -g_i.copy()
            solved = []
            for v in range(n_views):
                h_ll_mu = h_ll[v] + mu * np.diag(np.diag(h_ll[v]) + 1e-9)
                # [H_ll^-1 H_li, H_ll^-1 g_l] in one factorisation
                sol = np.linalg.solve(h_ll_mu, np.column_stack([h_il[v].T, g_l[v]]))
                schur -= h_il[v] @ sol[:, :-1]
                rhs += h_il[v] @ sol[:, -1]
                solved.append(sol)
            d_id = np.zeros(n_id) if fixed else np.linalg.solve(schur, rhs)
            new_id = identity + d_id
            new_rot, new_t, new_ex = [], [], []
            for v, sol in enumerate(solved):
                d_local = -sol[:, -1] - sol[:, :-1] @ d_id
                new_rot.append(cv2.Rodrigues(d_local[:3])[0] @ rotations[v])
                new_t.append(translations[v] + d_local[3:6])
                new_ex.append(np.clip(expressions[v] + d_local[6:], 0.0, 1.0))
            new_state = evaluate(new_id, new_rot, new_t, new_ex)
            new_cost = total_cost(new_state, robust, new_id, new_ex)
            if new_cost < cost and all(t[2] > 0 for t in new_t):
                identity, rotations, translations, expressions = new_id, new_rot, new_t, new_ex
                state = new_state
                improved = cost - new_cost > s.tolerance * cost
                mu = max(mu / 3, 1e-6)
                break
            mu *= 4
        if not improved:
            break
    full_identity = np.zeros(fitter.model.n_identity, np.float32)
    full_identity[:n_id] = identity
    inner = ~fitter.is_contour
    fits = []
    for v, (_, res, _) in enumerate(state):
        err = np.linalg.norm(res, axis=1)[inner].mean()
        fits.append(FitResult(full_identity, expressions[v].astype(np.float32), rotations[v], translations[v],
                              cameras[v], residual_px=float(err * scales[v]), residual=float(err),
                              iterations=iteration))
    robust = [fitter._robust_weights(res) * fitter.weights for _, res, _ in state]
    return JointFit(full_identity, fits, weights, iteration, float(total_cost(state, robust, identity, expressions)))


# --------------------------------------------------------------------- views and their checks
@dataclass
class View:
    """One input photo and what became of it."""

    source: str
    image: np.ndarray | None = field(default=None, repr=False)
    camera: Camera | None = None
    detection: Detection | None = None
    landmarks: Landmarks | None = field(default=None, repr=False)
    solo: FitResult | None = None        # this view fitted alone
    fit: FitResult | None = None         # this view in the joint fit (shared identity)
    weight: float = 0.0
    status: str = "pending"              # used | rejected | skipped
    reason: str = ""                     # why it was skipped or rejected, or a note on a used view
    faces: int = 0                       # faces found in the photo
    loo: float | None = None             # leave-one-out excess residual (:func:`loo_excess`), where tested
    candidates: list = field(default_factory=list, repr=False)   # (detection, landmarks, solo fit) per face

    @property
    def usable(self) -> bool:
        return self.solo is not None and self.status not in ("skipped", "rejected")


def identity_distance_mm(model: HeadModel, a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance (mm) between two identities' neutral face areas (same topology, no alignment)."""
    diff = np.tensordot(np.asarray(a, np.float64) - np.asarray(b, np.float64),
                        model.identity_basis[:, FACE_AREA], axes=1)            # (F, 3) cm
    return float(np.sqrt(np.mean(np.sum(diff ** 2, axis=1))) * 10.0)


def pose_weight(solo: FitResult) -> float:
    """Relative landmark confidence of a view from its yaw: (sigma(0) / sigma(yaw))^2, where sigma
    is Face Mesh's mean landmark error (fraction of the face size) measured on synthetic renders."""
    sigma = np.interp(abs(solo.angles[0]), LANDMARK_NOISE_YAW, LANDMARK_NOISE)
    return float((LANDMARK_NOISE[0] / sigma) ** 2)


def _photo_hash(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


def prepare_views(run: Reconstructor, photos: list, names: list[str] | None = None) -> list[View]:
    """Load, detect, place landmarks and fit every photo alone; mark duplicates and failures."""
    views, seen = [], {}
    for k, photo in enumerate(photos):
        source = names[k] if names else (str(photo) if isinstance(photo, (str, Path)) else f"view{k}")
        view = View(source)
        views.append(view)
        try:
            image = load_image(photo) if isinstance(photo, (str, Path)) else as_rgb8(np.asarray(photo))
        except FaceReconError as exc:
            view.status, view.reason = "skipped", str(exc)
            continue
        digest = _photo_hash(image)
        if digest in seen:
            view.status, view.reason = "skipped", f"duplicate of {seen[digest]} (identical pixels)"
            continue
        seen[digest] = source
        view.image = image
        view.camera = run.camera_for(image, photo if isinstance(photo, (str, Path)) else None)
        found = run.detector.run(image, MAX_FACES_PER_VIEW).faces
        candidates = []
        for det in found:
            marks = run.estimator.estimate(image, det)
            if marks is not None:
                candidates.append((det, marks, run.fitter.fit(marks.points, view.camera)))
        view.faces = len(candidates)
        if not candidates:
            view.status, view.reason = "skipped", "no face found"
            continue
        view.detection, view.landmarks, view.solo = candidates[0]
        view.candidates = candidates     # several: resolved by _choose_faces
    _choose_faces(run.model, views)
    for view in views:
        view.candidates = []
        if view.solo is not None and view.status == "pending":
            if view.solo.residual > FAILED_RESIDUAL:
                view.status = "rejected"
                view.reason = (f"landmarks failed: they fit the head model to {100 * view.solo.residual:.1f}% of "
                               f"the face size (limit {100 * FAILED_RESIDUAL:.0f}%)")
            else:
                view.weight = view_weight(view.solo) * pose_weight(view.solo)
    return views


def _choose_faces(model: HeadModel, views: list[View]) -> None:
    """In photos with several faces, take the face whose identity is closest to the other photos'
    (the median identity of the single-face photos, or of every photo's best-scored face)."""
    crowded = [v for v in views if len(v.candidates) > 1]
    if not crowded:
        return
    single = [v.solo.identity for v in views if len(v.candidates) == 1]
    for view in crowded:
        others = single or [v.solo.identity for v in views if v is not view and v.solo is not None]
        if not others:
            view.reason = f"{view.faces} faces: took the highest-scored one (no other photo to compare with)"
            continue
        reference = np.median(others, axis=0)
        dist = [identity_distance_mm(model, c[2].identity, reference) for c in view.candidates]
        pick = int(np.argmin(dist))
        view.detection, view.landmarks, view.solo = view.candidates[pick]
        box = ", ".join(f"{x:.0f}" for x in view.detection.box)
        view.reason = (f"{view.faces} faces: took face {pick} (box {box}), whose identity is "
                       f"{dist[pick]:.2f} mm from the other photos' (others: "
                       + ", ".join(f"{d:.2f}" for i, d in enumerate(dist) if i != pick) + " mm)")


def loo_excess(fitter: Fitter, views: list[View], k: int) -> float:
    """Leave-one-out disagreement of view ``k``: its residual with the identity of the other views'
    joint fit minus its residual with its own identity (both refined by the same solver from the
    single-view fit), as a fraction of the face size. About 0 for the same person, larger otherwise."""
    rest = [v for i, v in enumerate(views) if i != k]
    identity = joint_fit_views(fitter, rest).identity
    alone = joint_fit_views(fitter, [views[k]]).fits[0].residual
    held = joint_fit_views(fitter, [views[k]], identity=identity).fits[0].residual
    return held - alone


def joint_fit_views(fitter: Fitter, views: list[View], identity: np.ndarray | None = None) -> JointFit:
    """:func:`joint_fit` of prepared views (their landmarks, cameras, single-view fits, weights)."""
    return joint_fit(fitter, [v.landmarks.points for v in views], [v.camera for v in views], [v.solo for v in views],
                     np.array([v.weight for v in views]), identity=identity)


def reject_disagreeing(fitter: Fitter, views: list[View]) -> None:
    """Leave out, one at a time, the view that disagrees most with the others (leave-one-out).
    The test refits every view with the check's own settings first (see LOO_EXPRESSION_PRIOR)."""
    if sum(v.usable for v in views) < 2:
        return
    check = _check_fitter(fitter)
    tested = {id(v): v if check is fitter else replace(v, solo=check.fit(v.landmarks.points, v.camera))
              for v in views if v.usable}
    while True:
        used = [v for v in views if v.usable]
        if len(used) < 2:
            return
        total = sum(v.weight for v in used)
        tested_here = [total - v.weight >= LOO_MIN_WEIGHT for v in used]
        excess = [loo_excess(check, [tested[id(u)] for u in used], k) if t else -np.inf
                  for k, t in enumerate(tested_here)]
        for v, e, t in zip(used, excess, tested_here):
            v.loo = e if t else None
        worst = int(np.argmax(excess))
        if excess[worst] <= LOO_MAX_EXCESS:
            return
        reason = (f"{100 * excess[worst]:.2f} % of the face size worse with the other views' identity than with "
                  f"its own (limit {100 * LOO_MAX_EXCESS:.1f} %); another person or failed landmarks?")
        if len(used) == 2:
            # Two views that disagree: which one is wrong cannot be told; keep the more reliable one.
            worst = int(np.argmin([v.weight for v in used]))
            reason = f"the two views disagree (a view's landmarks fit {reason}); kept the more reliable one"
        else:
            reason = f"disagrees with the other views: its landmarks fit {reason}"
        used[worst].status, used[worst].reason = "rejected", reason


def _check_fitter(fitter: Fitter) -> Fitter:
    """``fitter`` with the view check's expression prior (built once per fitter)."""
    if fitter.settings.expression_prior == LOO_EXPRESSION_PRIOR:
        return fitter
    if not hasattr(fitter, "_loo_fitter"):
        fitter._loo_fitter = Fitter(fitter.model, replace(fitter.settings, expression_prior=LOO_EXPRESSION_PRIOR))
    return fitter._loo_fitter


def identity_warning(model: HeadModel, views: list[View]) -> str | None:
    reliable = [v for v in views if v.usable and v.weight >= 0.5]
    pairs = [(a, b, identity_distance_mm(model, a.solo.identity, b.solo.identity))
             for i, a in enumerate(reliable) for b in reliable[i + 1:]]
    far = [(a, b, d) for a, b, d in pairs if d > SAME_PERSON_MM]
    if not far:
        return None
    a, b, d = max(far, key=lambda p: p[2])
    return (f"the photos may not show one person: single-view identities of {a.source} and {b.source} are "
            f"{d:.1f} mm apart (same-person photos are usually under {SAME_PERSON_MM:.0f} mm)")


# ------------------------------------------------------------------------------ the result
@dataclass
class MultiViewReconstruction:
    """One head from several photos. ``vertices`` (V, 3) cm in the model frame, with the expression
    of the reference view (the most frontal used view); ``texture`` fused from the used views."""

    model: HeadModel = field(repr=False)
    views: list[View]
    identity: np.ndarray
    reference: int                     # index into ``views`` of the view whose expression the head has
    vertices: np.ndarray = field(repr=False)
    texture: np.ndarray | None = field(default=None, repr=False)
    visibility: np.ndarray | None = field(default=None, repr=False)   # (S, S) fused direct-view weight
    texture_coverage: float = 0.0      # share of the atlas's texels seen directly by some view (w > 0.5)
    gains: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def used(self) -> list[View]:
        return [v for v in self.views if v.status == "used"]

    def view_vertices_camera(self, view: View) -> np.ndarray:
        """The head as that view sees it (its pose and expression), camera-frame cm."""
        return view.fit.to_camera(self.model.shape(self.identity, view.fit.expression))

    def overlay(self, view: View) -> np.ndarray:
        from .render.visualize import overlay
        corners, bary = load_landmarks68()
        verts = self.view_vertices_camera(view)
        return overlay(view.image, [verts], view.camera, self.model,
                       landmarks=view.camera.project(surface_points(verts, corners, bary)))

    def to_dict(self) -> dict:
        corners, bary = load_landmarks68()
        corr = load_correspondence()
        views = []
        for v in self.views:
            entry = {"source": v.source, "status": v.status, "reason": v.reason, "faces_found": v.faces,
                     "weight": round(v.weight, 4), "leave_one_out_excess": None if v.loo is None else round(v.loo, 5)}
            if v.fit is not None:
                yaw, pitch, roll = v.fit.angles
                entry.update({
                    "image_size": [v.camera.width, v.camera.height],
                    "box": [round(float(x), 2) for x in v.detection.box],
                    "pose": {"yaw_deg": round(yaw, 3), "pitch_deg": round(pitch, 3), "roll_deg": round(roll, 3),
                             "model_to_camera": v.fit.pose_matrix.round(6)},
                    "camera": {"focal_px": round(v.camera.focal, 3), "cx": v.camera.cx, "cy": v.camera.cy,
                               "fov_deg": round(v.camera.fov_deg, 3), "focal_source": v.camera.source},
                    "landmarks": {"ibug68": {"pixels": v.camera.project(
                        surface_points(self.view_vertices_camera(v), corners, bary)).round(2)}},
                    "blendshapes_arkit": arkit_weights(self.model.expression_names, v.fit.expression),
                    "fit": {"residual_px": round(v.fit.residual_px, 3), "residual_rel": round(v.fit.residual, 5),
                            "single_view_residual_rel": round(v.solo.residual, 5)}})
            views.append(entry)
        ref = self.views[self.reference]
        return {
            "views": views,
            "used": [v.source for v in self.used],
            "rejected": [{"source": v.source, "status": v.status, "reason": v.reason}
                         for v in self.views if v.status != "used"],
            "reference_view": ref.source,
            "identity": self.identity.round(5),
            "landmarks": {"ibug68": {"model_cm": surface_points(self.vertices, corners, bary).round(4)},
                          "facemesh468": {"model_cm": surface_points(self.vertices, corr.vertices, corr.bary).round(4)}},
            "blendshapes_arkit": arkit_weights(self.model.expression_names, ref.fit.expression),
            "texture": {"coverage": round(self.texture_coverage, 4), "gains": self.gains},
            "warnings": self.warnings,
            "convention": "per-view pose: X_cam = M @ [X_model, 1] (OpenCV camera axes, cm); model axes "
                          "x subject's left, y up, z out of the face. The head's vertices carry the "
                          "reference view's expression.",
            "units": "cm",
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }

    def save(self, out_dir: str | Path, stem: str = "head", formats: tuple[str, ...] = ("obj", "glb", "ply"),
             overlays: bool = True, turntable: bool = False, units: str = "m",
             morph_targets: bool = True) -> dict[str, Path]:
        """``<stem>.obj/.glb/.ply`` (+ texture; OBJ and PLY in ``units``, the GLB in metres and, with
        ``morph_targets``, posed as the reference view), ``<stem>.json``, ``overlay_<k>_<photo>.png``
        per used view and, on request, ``<stem>_turntable.gif/.mp4``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ref = self.views[self.reference]
        rig = Rig(self.identity, ref.fit.expression, ref.fit.pose_matrix, ref.camera) if morph_targets else None
        paths = export_mesh(out_dir, stem, self.vertices, self.texture, self.model, formats, units, rig)
        paths["json"] = write_json(out_dir / f"{stem}.json",
                                   {**self.to_dict(), "mesh_files": mesh_info(formats, units, rig, self.model)})
        if overlays:
            for k, view in enumerate(self.views):
                if view.status == "used":
                    name = f"overlay_{k}_{Path(view.source).stem}.png"
                    paths[f"overlay{k}"] = write_image(out_dir / name, self.overlay(view))
        if turntable:
            from .render.visualize import save_turntable, turntable_frames
            frames = turntable_frames(self.model, self.vertices, self.texture)
            save_turntable(frames, out_dir / f"{stem}_turntable.gif", out_dir / f"{stem}_turntable.mp4")
            paths["turntable"] = out_dir / f"{stem}_turntable.gif"
        return paths


def expand_photos(paths: list[Path]) -> list[Path]:
    """Photos given as files or folders (a folder: its images, sorted by name)."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


def reconstruct_same_person(run: Reconstructor, photos: list, names: list[str] | None = None,
                            with_texture: bool = True) -> MultiViewReconstruction:
    """One head from several photos of one person (paths or RGB arrays); see the module docstring.
    Raises NoFaceError when no photo gives a face."""
    t0 = time.perf_counter()
    views = prepare_views(run, photos, names)
    t1 = time.perf_counter()
    warnings = [f"{v.source}: {v.reason}; left out" for v in views if v.status in ("skipped", "rejected")]
    warnings += [f"{v.source}: {v.reason}" for v in views if v.usable and v.faces > 1]
    if not any(v.usable for v in views):
        raise NoFaceError("no usable face in any of the photos: " + "; ".join(warnings))
    before = {id(v) for v in views if v.usable}
    reject_disagreeing(run.fitter, views)
    warnings += [f"{v.source}: {v.reason}; left out" for v in views if id(v) in before and not v.usable]
    used = [v for v in views if v.usable]
    if len(used) >= 2:
        message = identity_warning(run.model, used)
        if message:
            warnings.append(message)
        joint = joint_fit_views(run.fitter, used)
        for v, fit in zip(used, joint.fits):
            v.fit = fit
        identity = joint.identity
    else:
        warnings.append(f"only one usable view ({used[0].source}): single-view reconstruction")
        used[0].fit, identity = used[0].solo, used[0].solo.identity
    for v in used:
        v.status = "used"
    t2 = time.perf_counter()
    reference = min(used, key=lambda v: abs(v.fit.angles[0]))
    result = MultiViewReconstruction(run.model, views, identity, views.index(reference),
                                     run.model.shape(identity, reference.fit.expression), warnings=warnings,
                                     timings_ms={"views": (t1 - t0) * 1000, "joint_fit": (t2 - t1) * 1000})
    if with_texture:
        add_fused_texture(result, run.texture_size)
        result.timings_ms["texture"] = (time.perf_counter() - t2) * 1000
    return result


def add_fused_texture(result: MultiViewReconstruction, size: int) -> None:
    """Sample every used view with its own pose and expression and fuse them (texture.fuse_textures)."""
    used = result.used
    samples = [view_samples(v.image, result.view_vertices_camera(v), v.camera, result.model, size) for v in used]
    reference = used.index(result.views[result.reference])
    baked, gains = fuse_textures(samples, result.model, size, reference=reference)
    result.texture, result.visibility = baked.image, baked.visibility
    covered = baked.visibility > 0.5
    result.texture_coverage = float(covered.sum() / max(np.count_nonzero(_atlas_mask(result.model, size)), 1))
    result.gains = {v.source: [round(float(g), 4) for g in gain] for v, gain in zip(used, gains)}


def _atlas_mask(model: HeadModel, size: int) -> np.ndarray:
    from .texture import _layout
    mask = np.zeros(size * size, bool)
    mask[_layout(model, size).texels] = True
    return mask


def same_person_command(photos: list[Path], out_dir: Path, formats: tuple[str, ...], texture_size: int,
                        overlays: bool, turntable: bool, warn, fov_deg: float | None = None,
                        units: str = "m", morph_targets: bool = True) -> int:
    """``facerecon reconstruct --same-person``: one head into ``out_dir``; each warning goes to
    ``warn`` as one line. Returns the exit code (0 written, 1 no usable face)."""
    photos = expand_photos(photos)
    if not photos:
        warn("error: --same-person found no photos (folders are searched for image files, not recursively)")
        return 1
    if len(photos) < 2:
        warn(f"warning: --same-person got {len(photos)} photo(s); a single-view head follows")
    with Reconstructor(texture_size=texture_size, fov_deg=fov_deg) as run:
        try:
            result = reconstruct_same_person(run, photos)
        except FaceReconError as exc:
            warn(f"error: {exc}")
            return 1
        for line in result.warnings:
            warn(f"warning: {line}")
        result.save(out_dir, formats=formats, overlays=overlays, turntable=turntable, units=units,
                    morph_targets=morph_targets)
    used = result.used
    poses = ", ".join(f"{Path(v.source).name} yaw {v.fit.angles[0]:+.0f}" for v in used)
    print(f"facerecon: one head from {len(used)}/{len(photos)} photos ({poses}) in {out_dir}; "
          f"texture covers {100 * result.texture_coverage:.0f}% of the atlas")
    return 0
