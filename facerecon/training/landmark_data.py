"""Training data for the landmark network: Face Mesh's 468 points where the ICT surface puts them.

Synthetic samples are the project's renders (``data.SyntheticFaces`` with ``framing="landmarks"``:
the crop the estimator's final pass takes, levelled and 1.5x the points' box, jittered) and the
target of point i is where dense surface point i (``landmarks.dense_surface_points``) of the
rendered head projects, visible or not (Wood et al. 2022): x, y in continuous crop pixels (0..S),
z the point's depth relative to the points' mean, in the same pixels. So a fine-tuned network
learns the head's identity and pose exactly, including near profile, with no silhouette sliding.

Real samples keep the network's behaviour on real photos: HELEN training faces (``helen_train``),
cropped as the estimator crops them and jittered, with the original network's own output on the
crop as the target (distillation; the plain net without the refiner, whose weights the training
starts from). Every ``real_every``-th index is a real sample. With ``marks`` on, a real face also
carries its 68 hand-marked points, which the loss compares with the 68 iBUG surface points as the
network's 468 place them (``marks_from_dense``: each a fixed affine combination of its nearest
dense points, fitted on projections of prior heads), and the teacher's targets then weigh less
(``RealMarks``). Every ``holdout_every``-th face keeps its marks out of training, so that what is
calibrated on helen_train afterwards (``scripts/calibrate_auto_method.py --every 4``) has faces
whose marks the network never saw.

Re-posed samples (``repose``): real photos fitted by the main job and rendered with their own skin
over their own background at a new pose, sometimes with a new identity; their targets are exact,
as on the renders. Index i is re-posed when ``i % repose.every == 1 % repose.every`` (and not real).

A sample is (image (3, S, S) float in [0, 1], target (468 * 3,) float32, exact (1,): 1 where the
target is the surface's own projection (renders, re-posed photos), 0 where it is the teacher's
(real crops), marks (68, 3): x, y in crop pixels and a weight, 0 where a sample has no hand-marked
point). Only exact targets train the uncertainty head: a teacher's points are not where the
surface points lie. Samples are a pure function of (seed, index).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..camera import rotation_from_angles
from ..detect import box_detection
from ..geometry import surface_points
from ..landmarks import (N_POINTS, LandmarkEstimator, Roi, crop_roi, dense_surface_points,
                         landmark_roi, mirror_points)
from ..load import load_image
from ..model import HeadModel, sample_identity
from .data import DataSettings, SyntheticFaces, colour_augment
from .identity_loss import IDENTITY_RIDGE, identity_error_matrix, identity_loss
from .repose import FittedPhoto, ReposeSettings, reposed_sample

# The uncertainty term's weight: its gradient reaches only the head, whose step Adam normalises, so
# this only keeps the logged loss comparable with a run without the head.
NLL_WEIGHT = 0.01


def landmark_targets(cam_vertices: np.ndarray, camera, flipped: bool) -> np.ndarray:
    """(468, 3) targets of a rendered head: continuous crop pixels x, y and relative depth z."""
    points = surface_points(cam_vertices, *dense_surface_points())
    xy = camera.project(points) + 0.5
    depth = points[:, 2]
    z = (depth - depth.mean()) * camera.focal / depth.mean()
    target = np.column_stack([xy, z])
    if flipped:
        target = mirror_points(target, camera.width)
    return target.astype(np.float32)


# each iBUG point's left-right partner
IBUG68_MIRROR = np.r_[16:-1:-1, 26:16:-1, 27:31, 35:30:-1, 45:41:-1, 47, 46, 39:35:-1, 41, 40,
                      54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]
N_MARKS = 68
JAW = np.arange(17)


@dataclass(frozen=True)
class RealMarks:
    """How real faces' hand-marked points train (config ``data.marks``; None: not at all)."""

    weight: float = 1.0           # of the 68 points' loss, as one term beside the 468 points'
    jaw_weight: float = 0.5       # the jaw line is marked on the silhouette, not on fixed skin
    teacher_weight: float = 0.5   # of the teacher's 468 targets on a face with marks
    holdout_every: int = 4        # face i (sorted by name) with i % holdout_every == 0 keeps its marks out

    @classmethod
    def from_config(cls, value) -> "RealMarks | None":
        if not value:
            return None
        return cls(**({} if value is True else dict(value)))


class RealFace(NamedTuple):
    photo: Path
    roi: Roi                    # the estimator's final crop
    marks: np.ndarray | None    # (68, 2) hand-marked points, continuous image pixels; None: held out


def real_faces(folder: Path, holdout_every: int = 0) -> list[RealFace]:
    """Every hand-marked face of ``folder`` (300-W layout) that the teacher finds, with its marks
    unless ``holdout_every`` holds them out (0: every face keeps them)."""
    from ..evaluation.datasets import ibug300w
    held_out = held_out_photos(folder, holdout_every)
    faces = []
    with LandmarkEstimator(refiner_file=None) as estimator:
        for sample in ibug300w(folder.parent, subsets=(folder.name,)):
            image = load_image(sample.image_path)
            found = estimator.estimate(image, box_detection(sample.box))
            if found is not None:
                faces.append(RealFace(sample.image_path, landmark_roi(found.points),
                                      None if sample.image_path in held_out else sample.points + 0.5))
    return faces


def held_out_photos(folder: Path, every: int) -> set[Path]:
    """The photos of ``folder`` (300-W layout) that training keeps out: every ``every``-th face,
    sorted by name (0: none). Their marks train nothing and they are never re-posed, so what is
    calibrated or validated on them afterwards has faces the network never saw."""
    from ..evaluation.datasets import ibug300w
    if not every:
        return set()
    return {s.image_path for s in ibug300w(folder.parent, subsets=(folder.name,))[::every]}


class MarkPlacement(NamedTuple):
    matrix: np.ndarray        # (68, 468) float32: each row an affine combination (sums to 1)
    residual_px: np.ndarray   # (68,) float32: its RMS error on the fitted projections, crop pixels

    def confidence(self) -> np.ndarray:
        """(68,) each mark's weight for its placement's error beside the marking's own
        (``MARK_SIGMA_PX``): 1 / (1 + residual^2 / sigma^2)."""
        return (1.0 / (1.0 + (self.residual_px / MARK_SIGMA_PX) ** 2)).astype(np.float32)


# a hand-marked point's scatter about its skin point, crop pixels (a guess at 300-W's marking)
MARK_SIGMA_PX = 1.5
# crop pixels per cm of face at the head's depth: the points' box (about 14 cm) is 1 / 1.5 of 192 px
CROP_PX_PER_CM = 9.0


def marks_from_dense(model: HeadModel, neighbours: int = 8, poses: int = 600,
                     seed: int = 0) -> MarkPlacement:
    """The 68 iBUG surface points' image positions as affine combinations (each row sums to 1,
    ``neighbours`` non-zero weights: the point's nearest dense points on the mean head) of the
    dense points' positions. Least squares over perspective projections of prior heads with random
    expressions at yaw within 60, pitch 25 and roll 15 degrees, with a weak pull toward
    inverse-distance weights where the projections leave them free. The rim's points (the jaw)
    are not determined by the dense points the way the inner ones are: their residuals say so."""
    from ..pipeline import load_landmarks68
    marks_at, dense_at = load_landmarks68(), dense_surface_points()
    mean = model.shape()
    gaps = np.linalg.norm(surface_points(mean, *marks_at)[:, None] - surface_points(mean, *dense_at)[None], axis=2)
    nearest = np.argsort(gaps, axis=1)[:, :neighbours]
    rng = np.random.default_rng(seed)
    dense_xy, marks_xy = [], []
    for _ in range(poses):
        expression = np.zeros(model.n_expression, np.float32)
        active = rng.choice(model.n_expression, size=3, replace=False)
        expression[active] = rng.uniform(0.0, 0.7, 3)
        vertices = model.shape(sample_identity(rng, model), expression)
        rotation = rotation_from_angles(rng.uniform(-60, 60), rng.uniform(-25, 25), rng.uniform(-15, 15))
        cam = vertices @ rotation.T + np.r_[0.0, 0.0, rng.uniform(30, 100)]
        for at, out in ((dense_at, dense_xy), (marks_at, marks_xy)):
            p = surface_points(cam, *at)
            out.append(CROP_PX_PER_CM * p[:, :2] / p[:, 2:] * p[:, 2:].mean())
    dense_xy, marks_xy = np.stack(dense_xy), np.stack(marks_xy)   # (P, 468, 2), (P, 68, 2)
    weights, residual = np.zeros((N_MARKS, N_POINTS)), np.zeros(N_MARKS)
    for j in range(N_MARKS):
        a = dense_xy[:, nearest[j]].transpose(0, 2, 1).reshape(-1, neighbours)   # rows: x and y of each pose
        b = marks_xy[:, j].reshape(-1)
        prior = 1.0 / (gaps[j, nearest[j]] + 1e-3)
        prior /= prior.sum()
        ridge = 1e-3 * np.trace(a.T @ a) / neighbours
        # minimise |a w - b|^2 + ridge |w - prior|^2 subject to sum(w) = 1 (KKT system)
        kkt = np.block([[2 * (a.T @ a + ridge * np.eye(neighbours)), np.ones((neighbours, 1))],
                        [np.ones((1, neighbours)), np.zeros((1, 1))]])
        rhs = np.r_[2 * (a.T @ b + ridge * prior), 1.0]
        weights[j, nearest[j]] = w = np.linalg.solve(kkt, rhs)[:neighbours]
        residual[j] = np.sqrt(2 * np.mean((a @ w - b) ** 2))
    return MarkPlacement(weights.astype(np.float32), residual.astype(np.float32))


@lru_cache(maxsize=1)
def _teacher():
    return LandmarkEstimator(refiner_file=None)


class LandmarkFaces(SyntheticFaces):
    """Index -> (image, target, weight); synthetic renders mixed with distilled real crops and
    re-posed real photos."""

    def __init__(self, textures: np.ndarray, settings: DataSettings, seed: int,
                 real: list[RealFace] = (), real_every: int = 0, length: int = 10 ** 9,
                 reposed: list[FittedPhoto] = (), repose: ReposeSettings = ReposeSettings(),
                 marks: RealMarks | None = None, identity_matrices: bool = False,
                 identity_ridge: float = IDENTITY_RIDGE):
        super().__init__(textures, settings, seed, length)
        self.real, self.real_every = list(real), real_every
        self.reposed, self.repose = list(reposed), repose
        self.marks = marks
        # each sample also carries identity_loss.identity_error_matrix (zeros where targets are not a render's)
        self.identity_matrices, self.identity_ridge = identity_matrices, identity_ridge

    def synthetic(self, index: int, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image, targets, the identity error matrix or None when the samples carry none)."""
        s = self.sample(index, extra=False, **kwargs)
        cam_vertices = s.vertices @ s.rotation.T + s.translation
        matrix = None
        if self.identity_matrices:
            cam_points = surface_points(cam_vertices, *dense_surface_points()).astype(np.float64)
            matrix = identity_error_matrix(self.model, s.rotation, cam_points, s.translation, s.camera, s.flipped,
                                           self.identity_ridge)
        return s.image, landmark_targets(cam_vertices, s.camera, s.flipped), matrix

    def real_sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A jittered real crop, the teacher's points on it and the face's marks ((68, 3) x, y in
        crop pixels and weight; all 0 when the marks do not train)."""
        st = self.settings
        rng = np.random.default_rng([self.seed, index, 1])
        face = self.real[rng.integers(len(self.real))]
        image = load_image(face.photo)
        side = face.roi.side * rng.uniform(*st.scale)
        centre = face.roi.centre + rng.uniform(-1, 1, 2) * st.translate * side
        jittered = Roi(centre, side, face.roi.angle + math.radians(rng.uniform(-st.rotate, st.rotate)))
        crop = crop_roi(image, jittered)
        flipped = rng.uniform() < st.flip
        if flipped:
            crop = np.ascontiguousarray(crop[:, ::-1])
        raw, _ = _teacher()._net.run(None, {"image": crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0})
        marks = np.zeros((N_MARKS, 3), np.float32)
        if self.marks is not None and face.marks is not None:
            to_image = jittered.to_image()
            marks[:, :2] = np.linalg.solve(to_image[:, :2], (face.marks - to_image[:, 2]).T).T
            marks[:, 2] = 1.0
            marks[JAW, 2] = self.marks.jaw_weight
            if flipped:
                marks = marks[IBUG68_MIRROR]
                marks[:, 0] = crop.shape[1] - marks[:, 0]
        return colour_augment(crop, rng, st), raw.reshape(N_POINTS, 3).astype(np.float32), marks

    def reposed_sample(self, index: int, **kwargs):
        """A re-posed real photo (``repose.Reposed``); keyword arguments as ``repose.reposed_sample``."""
        rng = np.random.default_rng([self.seed, index, 2])
        fitted = self.reposed[rng.integers(len(self.reposed))]
        return reposed_sample(fitted, load_image(fitted.photo), self.model, self.settings, self.repose, rng, **kwargs)

    def __getitem__(self, index: int):
        every, exact = self.repose.every, 1.0
        marks, matrix = np.zeros((N_MARKS, 3), np.float32), None
        if self.real and self.real_every and index % self.real_every == 0:
            image, target, marks = self.real_sample(index)
            exact = 0.0
        elif self.reposed and every and index % every == 1 % every:
            r = self.reposed_sample(index)
            image, target = r.image, r.target
        else:
            image, target, matrix = self.synthetic(index)
        image = np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255.0
        out = image, target.reshape(-1), np.full(1, exact, np.float32), marks
        if self.identity_matrices:
            out += (np.zeros((self.model.n_identity, 2 * N_POINTS), np.float32) if matrix is None else matrix,)
        return out

    def validation_set(self, count: int):
        """Fixed synthetic samples of another seed (no flip, occluder or colour change): images,
        targets and millimetres per crop pixel at the head."""
        val = LandmarkFaces(self.textures, self.settings, self.seed + 100_003)
        images, targets, mm_per_px = [], [], []
        for i in range(count):
            s = val.sample(i, flip=False, occlude=False, augment_colour=False, extra=False)
            cam_vertices = s.vertices @ s.rotation.T + s.translation
            images.append(s.image.transpose(2, 0, 1) / np.float32(255.0))
            targets.append(landmark_targets(cam_vertices, s.camera, False).reshape(-1))
            mm_per_px.append(10.0 * float(cam_vertices[:, 2].mean()) / s.camera.focal)
        return np.stack(images).astype(np.float32), np.stack(targets), np.array(mm_per_px)


def split_prediction(pred):
    """The network's (N, 468 * 3 [+ 468]) output -> (N, 468, 3) points and (N, 468) log sigma or None."""
    points = pred[:, :N_POINTS * 3].reshape(len(pred), N_POINTS, 3)
    return points, (pred[:, N_POINTS * 3:] if pred.shape[1] > N_POINTS * 3 else None)


def landmark_loss(pred, target, exact=None, marks=None, identity=None, *, placement: MarkPlacement | None = None,
                  real_marks: RealMarks | None = None, identity_weight: float = 0.0):
    """Smooth L1 in crop pixels on x, y, and on z about its mean (Face Mesh's z is relative); with an
    uncertainty head, plus the 2D Gaussian negative log-likelihood of each point's x, y error under
    its predicted sigma (the error taken as given, so that it trains the head alone), over the
    samples with exact targets. With ``real_marks`` and a ``placement``, plus the smooth L1 of the 68
    points the 468 place against the hand-marked ones, each weighted by its mark's weight and its
    placement's confidence, and the 468 targets of a sample with marks weigh
    ``real_marks.teacher_weight``. With ``identity`` (N, K, 936) matrices, plus ``identity_weight``
    times ``identity_loss.identity_loss`` (mm) over the renders that carry one."""
    import torch
    import torch.nn.functional as F
    pred, log_sigma = split_prediction(pred)
    target = target.view(len(target), N_POINTS, 3)
    per_sample = torch.ones(len(pred), dtype=pred.dtype, device=pred.device)
    marked = None
    if real_marks is not None and marks is not None:
        marks = marks.to(pred.dtype)
        marked = marks[..., 2] > 0
        per_sample = torch.where(marked.any(1), real_marks.teacher_weight, 1.0).to(pred.dtype)
    xy = (F.smooth_l1_loss(pred[..., :2], target[..., :2], reduction="none").mean((1, 2)) * per_sample).mean()
    z = (F.smooth_l1_loss(pred[..., 2] - pred[..., 2].mean(1, keepdim=True),
                          target[..., 2] - target[..., 2].mean(1, keepdim=True), reduction="none").mean(1)
         * per_sample).mean()
    loss = xy + 0.25 * z
    if marked is not None and bool(marked.any()):
        matrix, confidence = (torch.from_numpy(a).to(pred) for a in (placement.matrix, placement.confidence()))
        placed = torch.einsum("jk,nkc->njc", matrix, pred[..., :2])
        err = F.smooth_l1_loss(placed, marks[..., :2], reduction="none").sum(2) * marks[..., 2] * confidence
        loss = loss + real_marks.weight * err.sum() / (2 * N_MARKS * len(pred))
    if identity is not None and identity_weight:
        loss = loss + identity_weight * identity_loss(pred[..., :2], target[..., :2], identity.to(pred.dtype))
    if log_sigma is not None:
        err2 = (pred[..., :2].detach() - target[..., :2]).square().sum(-1)
        nll = (2 * log_sigma + 0.5 * err2 * torch.exp(-2 * log_sigma)).mean(1)
        mask = torch.ones_like(nll) if exact is None else exact.view(-1).to(nll.dtype)
        loss = loss + NLL_WEIGHT * (nll * mask).sum() / mask.sum().clamp(min=1)
    return loss


def _predict(net, images: np.ndarray):
    """The network's output on ``images`` (N, 3, S, S), in eval mode, 16 at a time on its device,
    returned on the CPU."""
    import torch
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(images[i:i + 16]).to(device)).cpu() for i in range(0, len(images), 16)])
    net.train()
    return pred


def evaluate_landmarks(net, images, targets, mm_per_px) -> tuple[float, float]:
    """(loss, mean 2D point error in mm at the head's depth) on the validation set."""
    import torch
    pred = _predict(net, images)
    target = torch.from_numpy(targets)
    loss = float(landmark_loss(pred, target))
    points, _ = split_prediction(pred)
    err = (points[..., :2] - target.view(-1, N_POINTS, 3)[..., :2]).norm(dim=2).mean(1).numpy()
    return loss, float(np.mean(err * mm_per_px))


def uncertainty_calibration(net, images, targets) -> tuple[float, float] | None:
    """How well the predicted sigmas match the errors on the validation set: the mean of
    |r|^2 / (2 sigma^2) over all points (1 for a calibrated 2D Gaussian) and the rank correlation of
    sigma with |r|. None for a network without the head."""
    import torch
    from scipy.stats import spearmanr
    points, log_sigma = split_prediction(_predict(net, images))
    if log_sigma is None:
        return None
    err = (points[..., :2] - torch.from_numpy(targets).view(-1, N_POINTS, 3)[..., :2]).norm(dim=2).numpy()
    sigma = np.exp(log_sigma.numpy())
    return float(np.mean(err ** 2 / (2 * sigma ** 2))), float(spearmanr(sigma.ravel(), err.ravel())[0])


def landmarks_only(module):
    """What the loss sees, as a module: the landmark output, and the uncertainty beside it when the
    network has that head ((N, 468 * 3 + 468))."""
    import torch

    class LandmarkHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = module

        def forward(self, x):
            out = self.net(x)
            return torch.cat([out[0], out[-1]], 1) if module.has_uncertainty else out[0]
    return LandmarkHead()
