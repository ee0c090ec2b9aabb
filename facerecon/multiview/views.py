"""The views of a multi-view reconstruction: every photo loaded, detected, its landmarks placed and
fitted alone, duplicates and failures marked, a face chosen where a photo shows several, and a
weight from how well its landmarks can be trusted; :func:`joint_fit_views` fits them together."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..camera import Camera
from ..detect import Detection
from ..errors import FaceReconError
from ..fit import Fitter, FitResult, JointFit, landmark_weight
from ..landmarks import Landmarks
from ..load import as_rgb8, load_image
from ..model import FACE_AREA, HeadModel
from ..pipeline import Reconstructor

MAX_FACES_PER_VIEW = 5
JOINT_ITERATIONS = 12
# A view's weight: 1 up to this single-view residual (fraction of the face size; good photos and
# renders fit to 0.005-0.015), falling as 1/residual^2 beyond it (the residual's noise variance).
RESIDUAL_REF = 0.015
# Single-view residual beyond which the landmarks have failed (they no longer look like a face).
FAILED_RESIDUAL = 0.05


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
    loo: float | None = None             # leave-one-out excess residual (checks.loo_excess), where tested
    candidates: list = field(default_factory=list, repr=False)   # (detection, landmarks, solo fit) per face

    @property
    def usable(self) -> bool:
        return self.solo is not None and self.status not in ("skipped", "rejected")


def view_weight(solo: FitResult) -> float:
    """Weight of a view: how well its landmarks fit alone, times their confidence at its yaw."""
    return float(min(1.0, (RESIDUAL_REF / max(solo.residual, 1e-9)) ** 2)) * landmark_weight(solo.angles[0])


def identity_distance_mm(model: HeadModel, a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance (mm) between two identities' neutral face areas (same topology, no alignment)."""
    diff = np.tensordot(np.asarray(a, np.float64) - np.asarray(b, np.float64),
                        model.identity_basis[:, FACE_AREA], axes=1)            # (F, 3) cm
    return float(np.sqrt(np.mean(np.sum(diff ** 2, axis=1))) * 10.0)


def joint_fit_views(fitter: Fitter, views: list[View], identity: np.ndarray | None = None,
                    expression_prior: float | None = None) -> JointFit:
    """``Fitter.fit_views`` of prepared views (their landmarks, cameras, single-view fits, weights)."""
    return fitter.fit_views([v.landmarks.points for v in views], [v.camera for v in views], [v.solo for v in views],
                            np.array([v.weight for v in views]), identity=identity, iterations=JOINT_ITERATIONS,
                            expression_prior=expression_prior)


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
                view.weight = view_weight(view.solo)
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
