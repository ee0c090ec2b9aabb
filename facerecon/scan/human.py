"""A person's scan -> the animatable ICT head: the head model fitted to the fused surface and to
every view's landmarks, with the scan's cameras.

1. Landmarks (:func:`landmark_views`): each view's face (the detector's best), its Face Mesh
   landmarks and a single-view fit with the scan's own camera intrinsics; a view without a face
   (the back of the head) only gives texture.
2. Placement (:func:`initial_placement`): each view's fit sees the head from its camera; the
   head's rotation in the scan's world is the views' mean, its origin the point nearest the views'
   rays through it, its scale (world units per cm) the median ratio of those distances.
3. ICP rounds (:func:`fit_to_surface`): the fused surface's points that depth maps confirm,
   carried into the model frame by the placement, matched to their closest points on the head's
   skin (face, head and neck), kept within a reach that shrinks round by round, where the normals
   agree; then one ``Fitter.fit_views`` solves identity (all the model's modes), the head's pose and
   expression against the surface (the point-to-plane term), the surface's scale (from the fourth
   round; this is the scan's metric scale unless a marker or a known length fixed it) and, in the
   first rounds, every landmark view's pose and expression.
4. Texture: every view whose camera faces the head, sampled with the head as the scan's camera
   sees it (``texture.view_samples``), fused by ``texture.fuse_textures``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..camera import Camera
from ..errors import ScanInputError
from ..fit import FitResult, FitSettings, Fitter, JointFit, SurfaceTarget
from ..geometry import Similarity, closest_on_surface, surface_points, vertex_normals
from ..model import FACE_AREA, HeadModel
from ..multiview.result import MultiViewReconstruction
from ..multiview.views import FAILED_RESIDUAL, View, view_weight
from ..texture import atlas_texels, fuse_textures, view_samples
from .cameras import ViewCamera
from .scale import Scale

# ``--subject auto`` takes a scan for a person's when the detector finds a face in more than this
# share of its views.
HUMAN_VIEW_SHARE = 0.5
SKIN_PARTS = ("face", "head_neck")


@dataclass(frozen=True)
class HeadFitSettings:
    rounds: int = 6                        # ICP rounds: match closest points, then one joint LM
    iterations: int = 8                    # LM iterations per round
    max_points: int = 4000                 # surface points matched per round (a fixed subsample)
    reach_cm: tuple[float, ...] = (2.0, 1.0, 0.5)        # matches farther than this are dropped (last repeats)
    # Of those within reach, the nearest share is kept (trimmed ICP). All: on 5 calibration heads
    # (12 views, 192 px) keeping 70 % gave identity errors of 4.45 mm on average, 85 % 3.87, all
    # 2.95 (the mean head 5.05); the shrinking reach and the Huber weights handle the outliers.
    keep_share: float = 1.0
    min_normal_cos: float = 0.3            # matches whose normals disagree more (or face away) are dropped
    # Of one matched point, against one landmark coordinate. With confirmed points only (min_support)
    # on calibration heads 500-503 (12 and 24 views): at 160 voxels 3 gave identity errors of 2.41 mm
    # on average, 10 gave 2.00; at 192 voxels 10 1.94, 20 1.95 (the mean head 4.63).
    surface_weight: float = 10.0
    huber_cm: float = 0.1                  # matched points farther off than this weigh less (Huber)
    # The first this many rounds fit the views' landmarks too, the rest the surface alone: the
    # landmarks bring the head onto the surface, then their own bias (where Face Mesh's points lie
    # on the ICT head) pulls the identity off it. On those heads: all 6 rounds 1.94 mm, the first
    # 3 1.52, the first only 1.75, none 1.73.
    landmark_rounds: int = 3
    # The head's parts the surface is matched to (the face alone: 3.71 mm on those heads)
    parts: tuple[str, ...] = SKIN_PARTS
    # Every block's expression prior (100x FitSettings'): the 53 shapes otherwise soak up identity
    # (a true neutral surface, no landmarks: identity error 2.3 mm, with this 1.4 mm; the mean head 6.0).
    expression_prior: float | None = 1.0
    # A free scale is held for the first rounds: with the head still far from the surface, shrinking
    # both shrinks the distances (in cm on the head), and the fit ran off (40 % in one round).
    scale_from_round: int = 3
    # Surface points only where this many depth maps confirm them (``fusion.vertex_support``): the
    # closed holes and the smoothing's bridges over gaps are unconfirmed, and far off the head (on
    # calibration heads a third of the vertices, median 6-8 mm off, against 0.7-1.1 mm confirmed).
    # On heads 500-503 at 192 voxels: 1 confirming map 1.99 mm, 2 1.94, 3 2.10.
    min_support: int = 2


@dataclass
class ScannedHead:
    """The fitted head: ``reconstruction`` is the multi-view head (its files and JSON); ``to_world``
    takes model-frame cm into the scan's world units."""

    reconstruction: MultiViewReconstruction
    to_world: Similarity
    surface_fit: FitResult              # the head's expression (its pose: model -> the last round's frame)
    matched: int                        # surface points matched in the last round
    distance_mm: float                  # their median point-to-plane distance
    landmark_views: int
    scale_fixed: bool                   # the scan's scale came from elsewhere (marker, known length)

    @property
    def cm_per_unit(self) -> float:
        return 1.0 / self.to_world.scale

    def as_json(self) -> dict:
        return {"files_stem": "head", "landmark_views": self.landmark_views, "matched_points": self.matched,
                "median_surface_distance_mm": round(self.distance_mm, 3),
                "model_to_world": {"scale_units_per_cm": self.to_world.scale,
                                   "rotation": self.to_world.rotation.round(8).tolist(),
                                   "translation": self.to_world.translation.round(8).tolist()},
                "scale_from_head": not self.scale_fixed}


def view_camera(camera: ViewCamera) -> Camera:
    """The pinhole intrinsics of a scan camera (square pixels: the mean of fx and fy)."""
    K = camera.K
    return Camera(float(K[0, 0] + K[1, 1]) / 2, float(K[0, 2]), float(K[1, 2]), camera.width, camera.height, "given")


def landmark_views(run, images: list[np.ndarray], names: list[str], cameras: list[ViewCamera],
                   fitter: Fitter) -> list[View]:
    """Per view: the best face's landmarks and its single-view fit with the scan's intrinsics
    (``run``: a Reconstructor, for its detector and landmark network)."""
    views = []
    for image, name, cam in zip(images, names, cameras):
        view = View(name, image=image, camera=view_camera(cam))
        views.append(view)
        found = run.detector.run(image, 1).faces
        marks = run.estimator.estimate(image, found[0]) if found else None
        if marks is None:
            view.status, view.reason = "skipped", "no face found"
            continue
        view.faces, view.detection, view.landmarks = len(found), found[0], marks
        view.solo = fitter.fit(marks.points, view.camera)
        if view.solo.residual > FAILED_RESIDUAL:
            view.status = "rejected"
            view.reason = f"landmarks failed: they fit the head model to {100 * view.solo.residual:.1f}% of the face size"
        else:
            view.weight = view_weight(view.solo)
    return views


def face_share(views: list[View]) -> float:
    return sum(v.usable for v in views) / max(len(views), 1)


def initial_placement(views: list[View], cameras: list[ViewCamera]) -> Similarity:
    """Model cm -> world from the views' single-view fits (see the module's step 2)."""
    used = [(v, c) for v, c in zip(views, cameras) if v.usable]
    w = np.array([v.weight for v, _ in used])
    rotation_sum = sum(wi * c.R.T @ v.solo.rotation for wi, (v, c) in zip(w, used))
    u, _, vt = np.linalg.svd(rotation_sum)
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    centres = np.array([c.centre for _, c in used])
    rays = np.array([c.R.T @ v.solo.translation for v, c in used])
    depth_cm = np.linalg.norm(rays, axis=1)
    rays /= depth_cm[:, None]
    # the point nearest every ray: sum_v w_v (I - d_v d_v^T) (p - C_v) = 0
    proj = np.eye(3)[None] - rays[:, :, None] * rays[:, None, :]
    origin = np.linalg.solve(np.einsum("v,vij->ij", w, proj), np.einsum("v,vij,vj->i", w, proj, centres))
    scale = float(np.median(np.linalg.norm(origin - centres, axis=1) / depth_cm))
    return Similarity(scale, rotation, origin)


def fit_to_surface(model: HeadModel, fitter: Fitter, views: list[View], cameras: list[ViewCamera],
                   vertices: np.ndarray, faces: np.ndarray, settings: HeadFitSettings = HeadFitSettings(),
                   units_per_cm: float | None = None, support: np.ndarray | None = None,
                   ) -> tuple[JointFit, Similarity, int, float]:
    """ICP rounds of the joint fit (the module's step 3) on the fused surface ``vertices`` (N, 3)
    world units, ``faces`` (F, 3). ``units_per_cm``: the scan's known scale (else solved).
    ``support`` (N,): the depth maps confirming each vertex (``fusion.vertex_support``), or None.
    Returns the last joint fit (its ``surface``: the head in the last round's frame), model cm ->
    world, the points matched in the last round and their median distance (mm)."""
    usable = [v for v in views if v.usable]
    placement = initial_placement(views, cameras)
    if units_per_cm is not None:
        placement = replace(placement, scale=units_per_cm)
    # the surface's frame: the world carried into the model frame by the placement (held); the
    # fit moves the head in it and scales it (exp(log_scale)) where the scale is not known
    to_frame = _inverse(placement)
    skin = model.triangles[np.isin(model.triangles, model.part_vertices(*settings.parts)).all(1)]
    rng = np.random.default_rng(0)
    scan = np.asarray(vertices, np.float64)
    candidates = np.arange(len(scan))
    if support is not None and np.count_nonzero(support >= settings.min_support) >= 50:
        candidates = candidates[support >= settings.min_support]
    pick = rng.choice(candidates, min(settings.max_points, len(candidates)), replace=False)
    points = to_frame.apply(scan[pick])
    point_normals = vertex_normals(scan, faces)[pick].astype(np.float64) @ to_frame.rotation.T
    face = model.neutral[FACE_AREA]
    face_cm = float(np.sqrt(np.prod(np.ptp(face[:, :2], axis=0))))
    start = FitResult(np.zeros(model.n_identity, np.float32), np.zeros(model.n_expression, np.float32),
                      np.eye(3), np.zeros(3), None, float("nan"), float("nan"))
    log_scale, starts = 0.0, [v.solo for v in usable]
    joint, matched, distance_mm = None, 0, float("nan")
    for k in range(settings.rounds):
        used = usable if k < settings.landmark_rounds else []
        starts = starts[:len(used)]
        # the head where the fit has it: exp(-log_scale) (R x + t) among the surface's points
        head = model.shape(start.identity, start.expression).astype(np.float64)
        placed = np.exp(-log_scale) * (head @ start.rotation.T + start.translation)
        corners, bary = closest_on_surface(points, placed, skin)
        near = surface_points(placed, corners, bary)
        normals = surface_points(vertex_normals(placed, skin), corners, bary)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        reach = settings.reach_cm[min(k, len(settings.reach_cm) - 1)]
        keep = (np.linalg.norm(near - points, axis=1) < reach) & \
               (np.sum(normals * point_normals, axis=1) > settings.min_normal_cos)
        if keep.sum() < 50:
            break
        if settings.keep_share < 1.0:
            gap = np.linalg.norm(near - points, axis=1)
            keep &= gap <= np.quantile(gap[keep], settings.keep_share)
        target = SurfaceTarget(points[keep], corners[keep], bary[keep], normals[keep],
                               np.full(int(keep.sum()), settings.surface_weight), face_cm, settings.huber_cm,
                               start, log_scale,
                               solve_scale=units_per_cm is None and k >= settings.scale_from_round)
        joint = fitter.fit_views([v.landmarks.points for v in used], [v.camera for v in used], starts,
                                 np.array([v.weight for v in used]), iterations=settings.iterations, surface=target,
                                 expression_prior=settings.expression_prior)
        start, starts, log_scale = joint.surface, joint.fits, joint.surface.extra["log_scale"]
        matched, distance_mm = int(keep.sum()), 10 * float(np.median(np.abs(joint.surface.extra["residuals_cm"])))
    if joint is None:
        raise ValueError("the head and the fused surface do not meet: no surface points near the placed head")
    scale = np.exp(-log_scale)
    to_world = Similarity(scale, start.rotation, scale * start.translation).then(placement)
    return joint, to_world, matched, distance_mm


def _inverse(s: Similarity) -> Similarity:
    return Similarity(1.0 / s.scale, s.rotation.T, -(s.rotation.T @ s.translation) / s.scale)


def head_in_camera(to_world: Similarity, camera: ViewCamera) -> tuple[np.ndarray, np.ndarray]:
    """(R, t): model cm -> the scan camera's frame in cm."""
    return camera.R @ to_world.rotation, (camera.R @ to_world.translation + camera.t) / to_world.scale


def scanned_head(run, images: list[np.ndarray], names: list[str], cameras: list[ViewCamera],
                 vertices: np.ndarray, faces: np.ndarray, views: list[View] | None = None,
                 settings: HeadFitSettings = HeadFitSettings(), units_per_cm: float | None = None,
                 texture_size: int = 1024, support: np.ndarray | None = None) -> ScannedHead:
    """The head fitted to a scan (the module's steps), textured from every view that faces it."""
    model = run.model
    fitter = Fitter(model, replace(FitSettings(), identity_modes=model.n_identity))
    views = views if views is not None else landmark_views(run, images, names, cameras, fitter)
    if not any(v.usable for v in views):
        raise ValueError("no view shows a face")
    joint, to_world, matched, distance_mm = fit_to_surface(model, fitter, views, cameras, vertices, faces,
                                                           settings, units_per_cm, support)
    expression = joint.surface.expression
    poses = []
    for view, cam in zip(views, cameras):
        rotation, translation = head_in_camera(to_world, cam)
        poses.append(FitResult(joint.identity, expression, rotation, translation, view.camera,
                               float("nan"), float("nan")))
        if view.usable:
            view.fit = replace(poses[-1], residual=view.solo.residual, residual_px=view.solo.residual_px)
            view.status = "used"
    used = [v for v in views if v.status == "used"]
    reference = min(used, key=lambda v: abs(v.fit.angles[0]))
    head = model.shape(joint.identity, expression)
    result = MultiViewReconstruction(model, views, joint.identity, views.index(reference), head,
                                     warnings=[f"{v.source}: {v.reason}" for v in views if v.reason])
    _texture(result, views, poses, texture_size)
    return ScannedHead(result, to_world, joint.surface, matched, distance_mm, len(used), units_per_cm is not None)


def _texture(result: MultiViewReconstruction, views: list[View], poses: list[FitResult], size: int) -> None:
    """Every view with the whole head in front of its camera, sampled with the scan's pose, fused."""
    model, head = result.model, result.vertices
    samples, names = [], []
    for view, pose in zip(views, poses):
        cam = head @ pose.rotation.T.astype(np.float32) + pose.translation.astype(np.float32)
        if np.all(cam[:, 2] > 0):
            samples.append(view_samples(view.image, cam, view.camera, model, size))
            names.append(view.source)
    reference = names.index(result.views[result.reference].source)
    baked, gains = fuse_textures(samples, model, size, reference=reference)
    result.texture, result.visibility = baked.image, baked.visibility
    result.texture_coverage = float((baked.visibility > 0.5).sum() / max(len(atlas_texels(model, size)), 1))
    result.gains = {n: [round(float(g), 4) for g in gain] for n, gain in zip(names, gains)}


def head_for_scan(images: list[np.ndarray], names: list[str], cameras: list[ViewCamera], vertices: np.ndarray,
                  faces: np.ndarray, subject: str, metres_per_unit: float | None, texture_size: int,
                  settings: HeadFitSettings = HeadFitSettings(), run=None,
                  support: np.ndarray | None = None) -> ScannedHead | None:
    """The scan's head where the subject is a person (``subject`` "human", or "auto" and a face in
    more than HUMAN_VIEW_SHARE of the views), else None. ``metres_per_unit``: the scan's known
    scale (marker, known length), or None to take it from the head. ``run``: a Reconstructor
    (detector, landmarks), else one is made here. ``support``: as :func:`fit_to_surface`'s."""
    from ..pipeline import Reconstructor
    if run is None:
        with Reconstructor(texture_size=texture_size) as own:
            return head_for_scan(images, names, cameras, vertices, faces, subject, metres_per_unit,
                                 texture_size, settings, own, support)
    fitter = Fitter(run.model, replace(FitSettings(), identity_modes=run.model.n_identity))
    views = landmark_views(run, images, names, cameras, fitter)
    share = face_share(views)
    if subject == "auto" and share <= HUMAN_VIEW_SHARE:
        return None
    if not any(v.usable for v in views):
        raise ScanInputError("--subject human: no view shows a face the landmarks fit; "
                             "--subject object gives the raw surface")
    units_per_cm = None if metres_per_unit is None else 0.01 / metres_per_unit
    try:
        return scanned_head(run, images, names, cameras, vertices, faces, views, settings, units_per_cm,
                            texture_size, support)
    except ValueError as exc:
        raise ScanInputError(f"--subject human: {exc}") from None


def head_scale(head: ScannedHead) -> Scale:
    """The scan's scale from the fitted head (the ICT model is metric)."""
    return Scale(0.01 / head.to_world.scale, "head",
                 "the ICT head fitted to the scan (the head model's metric size prior and shape)")
